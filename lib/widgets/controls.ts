/**
 * The core Jupyter widgets, with the model names, module versions and
 * defaults of ipywidgets 8 (@jupyter-widgets/controls 2.0.0, base 2.0.0,
 * output 1.0.0; ipywidgets' packages/schema/jupyterwidgetmodels.latest.json),
 * so the standard front-end widget manager (JupyterLab, Notebook 7, VS Code,
 * the HTML embed manager) renders them. Each control owns a Layout model and
 * its style model, as ipywidgets' do.
 */
import type { MimeBundle } from "../display";
import { Observer, Widget } from "./widget";

const BASE = "@jupyter-widgets/base";
const CONTROLS = "@jupyter-widgets/controls";
const OUTPUT = "@jupyter-widgets/output";
const V2 = "2.0.0";

type State = Record<string, unknown>;

/** LayoutModel: CSS attributes, all null by default. */
export class Layout extends Widget<State> {
  constructor(css: Record<string, string | null> = {}) {
    super({ modelModule: BASE, modelModuleVersion: V2, modelName: "LayoutModel", viewModule: BASE, viewModuleVersion: V2, viewName: "LayoutView" }, css);
  }
}

/** A style model (SliderStyleModel, ButtonStyleModel, ...). */
export class Style extends Widget<State> {
  constructor(modelName: string, state: State = {}) {
    super({ modelModule: CONTROLS, modelModuleVersion: V2, modelName, viewModule: BASE, viewModuleVersion: V2, viewName: "StyleView" }, state);
  }
}

const STYLE_DEFAULTS: Record<string, State> = {
  SliderStyleModel: { description_width: "", handle_color: null },
  ButtonStyleModel: { button_color: null, font_family: null, font_size: null, font_style: null, font_variant: null, font_weight: null, text_color: null, text_decoration: null },
  ToggleButtonStyleModel: { description_width: "", font_family: null, font_size: null, font_style: null, font_variant: null, font_weight: null, text_color: null, text_decoration: null },
  CheckboxStyleModel: { background: null, description_width: "" },
  DescriptionStyleModel: { description_width: "" },
  TextStyleModel: { background: null, description_width: "", font_size: null, text_color: null },
  LabelStyleModel: { background: null, description_width: "", font_family: null, font_size: null, font_style: null, font_variant: null, font_weight: null, text_color: null, text_decoration: null },
  HTMLStyleModel: { background: null, description_width: "", font_size: null, text_color: null },
};

export interface DOMState extends State {
  _dom_classes: string[];
  layout: Layout;
  tabbable: boolean | null;
  tooltip: string | null;
}

/** Options every control takes: its attributes, CSS for its layout, and its style model's attributes (e.g. { description_width: "120px" }). */
export type Options<S> = Partial<Omit<S, "layout" | "style">> & { layout?: Record<string, string | null>; style?: Record<string, string | null> };

/** A widget with a view: its Layout (and style model, for controls that have one) made with it, closed with it. */
export class DOMWidget<S extends DOMState = DOMState> extends Widget<S> {
  constructor(modelName: string, viewName: string, defaults: Omit<S, "layout" | "style" | "_dom_classes" | "tabbable" | "tooltip">, options: Options<S> = {}, styleModel?: string, module = CONTROLS, version = V2) {
    // layout CSS and style attributes may come with the defaults (controls spread their options there) or apart
    const { layout: css1, style: style1, ...given } = defaults as Record<string, unknown> & Options<S>;
    const { layout: css2, style: style2, ...rest } = options as Options<S>;
    const layout = new Layout({ ...(css1 ?? {}), ...(css2 ?? {}) });
    const style = styleModel ? new Style(styleModel, { ...(STYLE_DEFAULTS[styleModel] ?? {}), ...(style1 ?? {}), ...(style2 ?? {}) }) : undefined;
    super(
      { modelModule: module, modelModuleVersion: version, modelName, viewModule: module, viewModuleVersion: version, viewName },
      { _dom_classes: [], tabbable: null, tooltip: null, ...given, ...rest, layout, ...(style ? { style } : {}) } as unknown as S,
    );
    this.onClose(() => {
      layout.close();
      style?.close();
    });
  }

  get layout(): Layout {
    return this.get("layout");
  }
}

/** A control with a `value` and a `description`. */
export class ValueWidget<T, S extends DOMState & { value: T; description: string }> extends DOMWidget<S> {
  get value(): T {
    return this.get("value");
  }
  set value(v: T) {
    this.set({ value: v } as Partial<S>);
  }
  get description(): string {
    return this.get("description");
  }
  set description(d: string) {
    this.set({ description: d } as Partial<S>);
  }
  /** Call `fn` with each new value (from code or from a front end). */
  onChange(fn: (value: T, change: Parameters<Observer<T>>[0]) => void): this {
    return this.observe("value" as never, ((c: Parameters<Observer<T>>[0]) => fn(c.new, c)) as never);
  }
}

const describable = { description: "", description_allow_html: false };
const slider = { behavior: "drag-tap", continuous_update: true, disabled: false, orientation: "horizontal", readout: true };

export interface FloatSliderState extends DOMState {
  value: number;
  min: number;
  max: number;
  step: number;
  description: string;
  description_allow_html: boolean;
  behavior: string;
  continuous_update: boolean;
  disabled: boolean;
  orientation: "horizontal" | "vertical";
  readout: boolean;
  readout_format: string;
}

function checkRange(kind: string, s: { min?: unknown; max?: unknown; value?: unknown }): void {
  const { min, max, value } = s as { min: number; max: number; value: number };
  if (!(min <= max)) throw new Error(`${kind}: min (${min}) must not exceed max (${max}).`);
  if (!(value >= min && value <= max)) throw new Error(`${kind}: value ${value} is outside [${min}, ${max}]; pass a value in range or widen min/max.`);
}

/** A slider of floats (FloatSliderModel): value 0 in [0, 100], step 0.1, readout ".2f". */
export class FloatSlider extends ValueWidget<number, FloatSliderState> {
  constructor(options: Options<FloatSliderState> = {}) {
    const { layout, style, ...given } = options;
    const s = { value: 0, min: 0, max: 100, step: 0.1, ...describable, ...slider, readout_format: ".2f", ...given };
    checkRange("FloatSlider", s);
    super("FloatSliderModel", "FloatSliderView", s as never, { layout, style } as never, "SliderStyleModel");
  }
}

export type IntSliderState = FloatSliderState;

/** A slider of integers (IntSliderModel): value 0 in [0, 100], step 1. */
export class IntSlider extends ValueWidget<number, IntSliderState> {
  constructor(options: Options<IntSliderState> = {}) {
    const { layout, style, ...given } = options;
    const s = { value: 0, min: 0, max: 100, step: 1, ...describable, ...slider, readout_format: "d", ...given };
    checkRange("IntSlider", s);
    for (const k of ["value", "min", "max", "step"] as const) if (!Number.isInteger(s[k])) throw new Error(`IntSlider ${k} must be a whole number; got ${s[k]}.`);
    super("IntSliderModel", "IntSliderView", s as never, { layout, style } as never, "SliderStyleModel");
  }
}

export interface FloatLogSliderState extends FloatSliderState {
  base: number;
}

/** A slider on a log scale (FloatLogSliderModel): value = base^exponent, min and max are exponents. Default value 1 in [10^0, 10^4]. */
export class FloatLogSlider extends ValueWidget<number, FloatLogSliderState> {
  constructor(options: Options<FloatLogSliderState> = {}) {
    const { layout, style, ...given } = options;
    const s = { value: 1, min: 0, max: 4, step: 0.1, base: 10, ...describable, ...slider, readout_format: ".3g", ...given };
    const lo = s.base ** s.min;
    const hi = s.base ** s.max;
    if (!(s.value >= lo * (1 - 1e-12) && s.value <= hi * (1 + 1e-12))) throw new Error(`FloatLogSlider: value ${s.value} is outside [${lo}, ${hi}] (base ${s.base} to the powers min ${s.min} and max ${s.max}).`);
    super("FloatLogSliderModel", "FloatLogSliderView", s as never, { layout, style } as never, "SliderStyleModel");
  }
}

export interface ButtonState extends DOMState {
  description: string;
  button_style: "primary" | "success" | "info" | "warning" | "danger" | "";
  disabled: boolean;
  icon: string;
}

/** A button (ButtonModel). A click arrives as the custom message { event: "click" }. */
export class Button extends DOMWidget<ButtonState> {
  private readonly clicks = new Set<(b: Button) => void>();
  constructor(options: Options<ButtonState> = {}) {
    super("ButtonModel", "ButtonView", { description: "", button_style: "", disabled: false, icon: "", ...options } as never, {}, "ButtonStyleModel");
    this.onMsg((content) => {
      if ((content as { event?: string } | null)?.event === "click") this.click();
    });
  }
  /** Call `fn` on every click. */
  onClick(fn: (b: Button) => void): this {
    this.clicks.add(fn);
    return this;
  }
  /** Click it from code, as a front end would. */
  click(): void {
    for (const fn of this.clicks) fn(this);
  }
  get description(): string {
    return this.get("description");
  }
  set description(d: string) {
    this.set({ description: d });
  }
}

export interface ToggleButtonState extends DOMState {
  value: boolean;
  description: string;
  description_allow_html: boolean;
  button_style: ButtonState["button_style"];
  disabled: boolean;
  icon: string;
}

/** A button that stays down (ToggleButtonModel), value false by default. */
export class ToggleButton extends ValueWidget<boolean, ToggleButtonState> {
  constructor(options: Options<ToggleButtonState> = {}) {
    super("ToggleButtonModel", "ToggleButtonView", { value: false, ...describable, button_style: "", disabled: false, icon: "", ...options } as never, {}, "ToggleButtonStyleModel");
  }
}

export interface CheckboxState extends DOMState {
  value: boolean;
  description: string;
  description_allow_html: boolean;
  disabled: boolean;
  indent: boolean;
}

/** A checkbox (CheckboxModel), value false by default. */
export class Checkbox extends ValueWidget<boolean, CheckboxState> {
  constructor(options: Options<CheckboxState> = {}) {
    super("CheckboxModel", "CheckboxView", { value: false, ...describable, disabled: false, indent: true, ...options } as never, {}, "CheckboxStyleModel");
  }
}

export interface DropdownState extends DOMState {
  _options_labels: string[];
  index: number | null;
  description: string;
  description_allow_html: boolean;
  disabled: boolean;
}

/**
 * A drop-down (DropdownModel). As ipywidgets, the front end sees the labels
 * and the selected index; `value` is the selected option's value.
 */
export class Dropdown<T = string> extends DOMWidget<DropdownState> {
  private readonly values: T[];
  constructor(options: { options: readonly (T | readonly [string, T])[]; value?: T } & Options<Omit<DropdownState, "_options_labels" | "index">>) {
    const { options: opts, value, ...rest } = options;
    const pairs = opts.map((o) => (Array.isArray(o) ? (o as readonly [string, T]) : ([String(o), o as T] as const)));
    const index = value === undefined ? (pairs.length ? 0 : null) : pairs.findIndex(([, v]) => v === value);
    if (index === -1) throw new Error(`Dropdown: value ${JSON.stringify(value)} is not one of the options (${pairs.map(([l]) => l).join(", ")}).`);
    super("DropdownModel", "DropdownView", { _options_labels: pairs.map(([l]) => l), index, ...describable, disabled: false, ...rest } as never, {}, "DescriptionStyleModel");
    this.values = pairs.map(([, v]) => v);
  }
  get value(): T | null {
    const i = this.get("index");
    return i === null ? null : this.values[i];
  }
  set value(v: T | null) {
    const i = v === null ? null : this.values.indexOf(v as T);
    if (i === -1) throw new Error(`Dropdown: ${JSON.stringify(v)} is not one of the options (${this.get("_options_labels").join(", ")}).`);
    this.set({ index: i });
  }
  onChange(fn: (value: T | null) => void): this {
    return this.observe("index", () => fn(this.value));
  }
}

export interface TextState extends DOMState {
  value: string;
  placeholder: string;
  description: string;
  description_allow_html: boolean;
  continuous_update: boolean;
  disabled: boolean;
}

/** A one-line text box (TextModel). */
export class Text extends ValueWidget<string, TextState> {
  constructor(options: Options<TextState> = {}) {
    super("TextModel", "TextView", { value: "", placeholder: "\u200b", ...describable, continuous_update: true, disabled: false, ...options } as never, {}, "TextStyleModel");
  }
}

export interface LabelState extends DOMState {
  value: string;
  placeholder: string;
  description: string;
  description_allow_html: boolean;
}

/** Plain text (LabelModel). */
export class Label extends ValueWidget<string, LabelState> {
  constructor(options: Options<LabelState> | string = {}) {
    super("LabelModel", "LabelView", { value: "", placeholder: "\u200b", ...describable, ...(typeof options === "string" ? { value: options } : options) } as never, {}, "LabelStyleModel");
  }
}

/** HTML (HTMLModel): the value is rendered as HTML. */
export class HTML extends ValueWidget<string, LabelState> {
  constructor(options: Options<LabelState> | string = {}) {
    super("HTMLModel", "HTMLView", { value: "", placeholder: "\u200b", ...describable, ...(typeof options === "string" ? { value: options } : options) } as never, {}, "HTMLStyleModel");
  }
}

export interface OutputState extends DOMState {
  msg_id: string;
  outputs: Record<string, unknown>[];
}

/** An output area (OutputModel) whose outputs the kernel sets: text and rich output appended, cleared. */
export class Output extends DOMWidget<OutputState> {
  constructor(options: Options<OutputState> = {}) {
    super("OutputModel", "OutputView", { msg_id: "", outputs: [], ...options } as never, {}, undefined, OUTPUT, "1.0.0");
  }
  /** Append text as a stream output (stdout by default). */
  appendText(text: string, name: "stdout" | "stderr" = "stdout"): this {
    return this.set({ outputs: [...this.get("outputs"), { output_type: "stream", name, text }] });
  }
  /** Append a MIME bundle (a chart, a table) as display data. */
  appendDisplay(bundle: MimeBundle): this {
    return this.set({ outputs: [...this.get("outputs"), { output_type: "display_data", data: bundle, metadata: {} }] });
  }
  clear(): this {
    return this.set({ outputs: [] });
  }
}

export interface BoxState extends DOMState {
  children: Widget[];
  box_style: "success" | "info" | "warning" | "danger" | "";
}

/** A row of widgets (HBoxModel). */
export class HBox extends DOMWidget<BoxState> {
  constructor(children: Widget[] = [], options: Options<BoxState> = {}) {
    super("HBoxModel", "HBoxView", { children, box_style: "", ...options } as never);
  }
  get children(): Widget[] {
    return this.get("children");
  }
}

/** A column of widgets (VBoxModel). */
export class VBox extends DOMWidget<BoxState> {
  constructor(children: Widget[] = [], options: Options<BoxState> = {}) {
    super("VBoxModel", "VBoxView", { children, box_style: "", ...options } as never);
  }
  get children(): Widget[] {
    return this.get("children");
  }
}

/**
 * An anywidget (https://anywidget.dev): a widget of the front end's
 * `anywidget` module that renders ES module source (`esm`, exporting
 * `render`), with optional `css`, and any other state synced both ways.
 * `model.send` in the page reaches `onMsg` here; `send` here reaches
 * `model.on("msg:custom")` there.
 */
export class AnyWidget<S extends State = State> extends Widget<S & DOMState & { _esm: string; _css: string; _anywidget_id: string }> {
  constructor(options: { esm: string; css?: string; id?: string } & S, version = "*") {
    const { esm, css, id, ...state } = options;
    if (typeof esm !== "string" || !esm.trim()) throw new Error('anywidget needs `esm`: ES module source exporting render, e.g. anywidget({ esm: "export function render({ model, el }) { el.textContent = model.get(\'count\'); }" }).');
    const layout = new Layout();
    super(
      { modelModule: "anywidget", modelModuleVersion: version, modelName: "AnyModel", viewModule: "anywidget", viewModuleVersion: version, viewName: "AnyView" },
      { _dom_classes: [], tabbable: null, tooltip: null, layout, ...(state as unknown as S), _esm: esm, _css: css ?? "", _anywidget_id: id ?? "retromae.anywidget" } as never,
    );
    this.onClose(() => layout.close());
  }
}

/** `anywidget({ esm, css, ...state })`: an AnyWidget. */
export function anywidget<S extends State>(options: { esm: string; css?: string; id?: string } & S): AnyWidget<S> {
  return new AnyWidget<S>(options);
}
