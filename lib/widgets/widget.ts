/**
 * Jupyter widgets, the kernel side of the widget messaging protocol 2.1.0
 * (ipywidgets 8, @jupyter-widgets/base 6; ipywidgets' packages/schema/
 * messages.md):
 * - a model opens one comm to the `jupyter.widget` target, with its full
 *   state and `metadata.version` "2.1.0";
 * - `update` carries changed state both ways; a front end's update is
 *   echoed to every front end as `echo_update` (answering its message), and
 *   not sent back as an `update` unless an observer changed it further;
 * - `request_state` is answered with the whole state;
 * - `custom` messages go both ways;
 * - binary values (Uint8Array, any typed array, DataView, ArrayBuffer) travel
 *   as buffers at `buffer_paths`, both ways;
 * - a widget inside another's state is the string "IPY_MODEL_<id>".
 * A widget is shown as application/vnd.jupyter.widget-view+json (version
 * 2.1) with a text/plain fallback, and outlives the cell that made it.
 */
import { Displayable, JUPYTER_DISPLAY, MimeBundle } from "../display";
import { BufferPath, HostedModel, WidgetEndpoint, widgetHost } from "./host";

export const PROTOCOL_VERSION = "2.1.0";
export const WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json";
const REF = "IPY_MODEL_";

/** What an observer gets, as traitlets' change dict. */
export interface Change<T = unknown> {
  name: string;
  old: T;
  new: T;
  owner: Widget;
  /** "kernel" when code here set it, "frontend" when a front end did. */
  source: "kernel" | "frontend";
}

export type Observer<T = unknown> = (change: Change<T>) => void;

/** Every live widget by id: references "IPY_MODEL_<id>" resolve through it, and update_states lists it. */
const live = new Map<string, Widget>();

/** The live widgets (for the control comm's update_states, and saved notebooks' widget state). */
export function liveWidgets(): Widget[] {
  return [...live.values()];
}

const isBinary = (v: unknown): v is ArrayBuffer | ArrayBufferView => v instanceof ArrayBuffer || ArrayBuffer.isView(v);
const toBytes = (v: ArrayBuffer | ArrayBufferView): Uint8Array => (v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength));

/** JSON-ready state: widgets become references, binary values are pulled out with their paths. */
export function serializeState(state: Record<string, unknown>): { state: Record<string, unknown>; bufferPaths: BufferPath[]; buffers: Uint8Array[] } {
  const bufferPaths: BufferPath[] = [];
  const buffers: Uint8Array[] = [];
  const walk = (v: unknown, path: BufferPath): unknown => {
    if (v instanceof Widget) return REF + v.id;
    if (isBinary(v)) {
      bufferPaths.push(path);
      buffers.push(toBytes(v));
      return undefined;
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i]) ?? null);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        const w = walk(x, [...path, k]);
        if (w !== undefined || !isBinary(x)) out[k] = w;
      }
      return out;
    }
    return v;
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(state)) {
    const w = walk(v, [k]);
    if (w !== undefined || !isBinary(v)) out[k] = w;
  }
  return { state: out, bufferPaths, buffers };
}

/** State from a front end: buffers put back at their paths (as Uint8Array), "IPY_MODEL_<id>" resolved to live widgets. */
export function deserializeState(state: Record<string, unknown>, bufferPaths: unknown, buffers: Uint8Array[]): Record<string, unknown> {
  const out = structuredClone(state);
  const paths = Array.isArray(bufferPaths) ? (bufferPaths as BufferPath[]) : [];
  paths.forEach((path, i) => {
    if (!Array.isArray(path) || path.length === 0 || i >= buffers.length) return;
    let obj = out as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) obj = (obj[key] ??= typeof key === "number" ? [] : {}) as Record<string | number, unknown>;
    obj[path[path.length - 1]] = buffers[i];
  });
  const resolve = (v: unknown): unknown => {
    if (typeof v === "string" && v.startsWith(REF)) return live.get(v.slice(REF.length)) ?? v;
    if (Array.isArray(v)) return v.map(resolve);
    if (v && typeof v === "object" && !(v instanceof Uint8Array)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
    return v;
  };
  return resolve(out) as Record<string, unknown>;
}

/** The model and view a widget is registered under in the front end. */
export interface ModelSpec {
  modelModule: string;
  modelModuleVersion: string;
  modelName: string;
  viewModule: string | null;
  viewModuleVersion: string;
  viewName: string | null;
}

const sameValue = (a: unknown, b: unknown): boolean => {
  if (a === b) return true;
  if (isBinary(a) && isBinary(b)) {
    const x = toBytes(a);
    const y = toBytes(b);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  if (a instanceof Widget || b instanceof Widget) return false;
  if (a && b && typeof a === "object" && typeof b === "object") return JSON.stringify(a) === JSON.stringify(b);
  return false;
};

/**
 * A widget model: state synchronised with every front end, observers on
 * its attributes, custom messages both ways. Subclasses give the model's
 * name and defaults (the core widgets in controls.ts, anywidget).
 */
export class Widget<S extends Record<string, unknown> = Record<string, unknown>> implements Displayable, HostedModel {
  readonly id: string;
  readonly spec: ModelSpec;
  private readonly state: Record<string, unknown>;
  private readonly endpoint: WidgetEndpoint;
  private readonly observers = new Map<string, Set<Observer>>();
  private readonly customHandlers = new Set<(content: unknown, buffers: Uint8Array[]) => void>();
  private readonly closeHandlers = new Set<() => void>();
  /** While a front end's update is applied: the values it sent, not to be sent back. */
  private lock: Record<string, unknown> | null = null;
  private holding: Record<string, unknown> | null = null;
  private closed = false;

  constructor(spec: ModelSpec, state: S) {
    this.spec = spec;
    this.state = {
      _model_module: spec.modelModule,
      _model_module_version: spec.modelModuleVersion,
      _model_name: spec.modelName,
      _view_module: spec.viewModule,
      _view_module_version: spec.viewModuleVersion,
      _view_name: spec.viewName,
      ...state,
    };
    this.endpoint = widgetHost().open(this);
    this.id = this.endpoint.id;
    live.set(this.id, this);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** One attribute's value. */
  get<K extends keyof S & string>(name: K): S[K] {
    return this.state[name] as S[K];
  }

  /** Every attribute (a copy), references as widgets and buffers as bytes. */
  getState(): S {
    return { ...this.state } as S;
  }

  /** Change attributes: observers run, and the changes go to the front ends in one update. */
  set(patch: Partial<S>): this {
    this.apply(patch as Record<string, unknown>, "kernel");
    return this;
  }

  /** Call `fn` when any of `names` changes (from code or from a front end); "*" for every attribute. */
  observe<K extends keyof S & string>(names: K | K[] | "*", fn: Observer<S[K]>): this {
    for (const n of Array.isArray(names) ? names : [names]) {
      if (!this.observers.has(n)) this.observers.set(n, new Set());
      this.observers.get(n)!.add(fn as Observer);
    }
    return this;
  }

  /** Remove an observer (every observer of those names without `fn`; of every name without `names`). */
  unobserve<K extends keyof S & string>(names?: K | K[] | "*", fn?: Observer<S[K]>): this {
    const list = names === undefined ? [...this.observers.keys()] : Array.isArray(names) ? names : [names];
    for (const n of list) {
      if (fn) this.observers.get(n)?.delete(fn as Observer);
      else this.observers.delete(n);
    }
    return this;
  }

  /** A custom message to the front ends' model (anywidget's `model.on("msg:custom")`). */
  send(content: unknown, buffers: (ArrayBuffer | ArrayBufferView)[] = []): void {
    this.checkOpen("send");
    this.endpoint.send({ method: "custom", content }, buffers.map(toBytes));
  }

  /** Call `fn` for each custom message from a front end (anywidget's `model.send`). */
  onMsg(fn: (content: unknown, buffers: Uint8Array[]) => void): this {
    this.customHandlers.add(fn);
    return this;
  }

  onClose(fn: () => void): this {
    this.closeHandlers.add(fn);
    return this;
  }

  /** Close the model everywhere (comm_close); its views disappear. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    live.delete(this.id);
    this.endpoint.close();
    for (const fn of this.closeHandlers) fn();
  }

  // --- HostedModel: what the host calls ---

  fullState(): { state: Record<string, unknown>; bufferPaths: BufferPath[]; buffers: Uint8Array[] } {
    return serializeState(this.state);
  }

  receive(data: Record<string, unknown>, buffers: Uint8Array[], parent: unknown): void {
    switch (data.method) {
      case "update":
      case "backbone": {
        const raw = data.state && typeof data.state === "object" ? (data.state as Record<string, unknown>) : {};
        // the model and view names are fixed at creation: a front end cannot change them
        const incoming = Object.fromEntries(Object.entries(deserializeState(raw, data.buffer_paths, buffers)).filter(([k]) => !k.startsWith("_model_") && !k.startsWith("_view_")));
        if (Object.keys(incoming).length === 0) return;
        // echo first, as ipywidgets 8 does, answering the front end's message so it can match its own update
        const echo = serializeState(incoming);
        this.endpoint.send({ method: "echo_update", state: echo.state, buffer_paths: echo.bufferPaths }, echo.buffers, parent);
        this.lock = incoming;
        try {
          this.apply(this.lock, "frontend");
        } finally {
          this.lock = null;
        }
        return;
      }
      case "request_state": {
        const full = this.fullState();
        this.endpoint.send({ method: "update", state: full.state, buffer_paths: full.bufferPaths }, full.buffers, parent);
        return;
      }
      case "custom":
        for (const fn of this.customHandlers) fn(data.content, buffers);
        return;
    }
  }

  closedByFrontEnd(): void {
    if (this.closed) return;
    this.closed = true;
    live.delete(this.id);
    for (const fn of this.closeHandlers) fn();
  }

  // --- display ---

  /** The text a notebook without the widget manager shows. */
  toString(): string {
    const shown = Object.entries(this.state).filter(([k, v]) => !k.startsWith("_") && k !== "layout" && k !== "style" && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0));
    const name = this.constructor.name && this.constructor.name !== "Widget" ? this.constructor.name : this.spec.modelName.replace(/Model$/, "");
    return `${name}(${shown.map(([k, v]) => `${k}=${v instanceof Widget ? v.toString() : JSON.stringify(v)}`).join(", ")})`;
  }

  toMimeBundle(): MimeBundle {
    return { [WIDGET_VIEW_MIME]: { model_id: this.id, version_major: 2, version_minor: 1 }, "text/plain": this.toString() };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return this.toMimeBundle();
  }

  // --- internals ---

  private checkOpen(what: string): void {
    if (this.closed) throw new Error(`This ${this.spec.modelName.replace(/Model$/, "")} widget is closed; make a new one to ${what}.`);
  }

  /** Set values, run observers, and send what changed (less what a front end just sent) in one update. */
  private apply(patch: Record<string, unknown>, source: Change["source"]): void {
    this.checkOpen("change it");
    const outer = this.holding === null;
    if (outer) this.holding = {};
    try {
      for (const [name, value] of Object.entries(patch)) {
        const old = this.state[name];
        if (sameValue(old, value)) continue;
        this.state[name] = value;
        this.holding![name] = value;
        const change: Change = { name, old, new: value, owner: this as unknown as Widget, source };
        for (const fn of [...(this.observers.get(name) ?? []), ...(this.observers.get("*") ?? [])]) fn(change);
      }
    } finally {
      if (outer) {
        const pending = this.holding!;
        this.holding = null;
        const lock = this.lock;
        const toSend = Object.fromEntries(Object.entries(pending).filter(([k]) => !(lock && k in lock && sameValue(lock[k], this.state[k]))).map(([k]) => [k, this.state[k]]));
        if (Object.keys(toSend).length && !this.closed) {
          const s = serializeState(toSend);
          this.endpoint.send({ method: "update", state: s.state, buffer_paths: s.bufferPaths }, s.buffers);
        }
      }
    }
  }
}

/** Keep two attributes equal, both ways (ipywidgets' link). Returns a function that unlinks them. */
export function link<A extends Widget, B extends Widget>(a: [A, string], b: [B, string]): () => void {
  const [wa, na] = a;
  const [wb, nb] = b;
  let busy = false;
  // copy one side's change to the other; `busy` stops the echo coming back
  const copyTo = (w: Widget, name: string): Observer => (c) => {
    if (busy) return;
    busy = true;
    try {
      w.set({ [name]: c.new } as never);
    } finally {
      busy = false;
    }
  };
  const ab = copyTo(wb, nb);
  const ba = copyTo(wa, na);
  wb.set({ [nb]: wa.get(na as never) } as never);
  wa.observe(na as never, ab);
  wb.observe(nb as never, ba);
  return () => {
    wa.unobserve(na as never, ab);
    wb.unobserve(nb as never, ba);
  };
}
