/**
 * A control panel for a training run, made of the core Jupyter widgets:
 * pause / resume, stop after the current step, the encoder and decoder mask
 * ratios and an lr scale (applied from the next step), "probe now" and
 * "checkpoint now", and a status line with the step and the latest losses.
 * It steers any ControllableRun (the Trainer) through `change`, `pause`, …
 * and hears it through `subscribe`, so it works during `fit`, whether the
 * fit runs in the cell that shows the panel or in a later one. Refused input
 * (a ratio outside [0, 1) from a stale front end, say) is answered with one
 * sentence in the panel, and the run goes on.
 */
import { escapeHtml } from "../util/html";
import type { ChangeField, ControllableRun, RunEvent } from "./changes";
import { Button, FloatLogSlider, FloatSlider, HBox, HTML, ToggleButton, VBox } from "../widgets/controls";
import type { Change } from "../widgets/widget";

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : "–");
const LABELS: Record<ChangeField, string> = { encoderMaskRatio: "encoder mask ratio", decoderMaskRatio: "decoder mask ratio", lrScale: "lr scale" };

export class ControlPanel extends VBox {
  readonly status: HTML;
  readonly message: HTML;
  readonly pauseButton: ToggleButton;
  readonly stopButton: Button;
  readonly probeButton: Button;
  readonly checkpointButton: Button;
  readonly encoderSlider: FloatSlider;
  readonly decoderSlider: FloatSlider;
  readonly lrScaleSlider: FloatLogSlider;
  private last: Extract<RunEvent, { type: "step" }> | null = null;
  private runState = "idle";
  private lastShown = -Infinity;
  private pendingStatus: ReturnType<typeof setTimeout> | null = null;
  private readonly unsubscribe: () => void;

  constructor(private readonly run: ControllableRun, options: { minIntervalMs?: number } = {}) {
    const status = new HTML({ value: "" });
    const message = new HTML({ value: "", layout: { min_height: "1.5em" } });
    const pauseButton = new ToggleButton({ description: "pause", icon: "pause", value: run.paused, tooltip: "hold the run after the current step" });
    const stopButton = new Button({ description: "stop after this step", icon: "stop", button_style: "warning" });
    const probeButton = new Button({ description: "probe now", icon: "search", disabled: !run.canProbe, tooltip: run.canProbe ? "run the evaluation hooks after the current step" : "this trainer has no hooks" });
    const checkpointButton = new Button({ description: "checkpoint now", icon: "save", disabled: !run.canCheckpoint, tooltip: run.canCheckpoint ? "save a checkpoint after the current step" : "this trainer has no runDir" });
    const slider = (description: string, value: number) =>
      new FloatSlider({ description, value, min: 0, max: Math.max(0.95, value), step: 0.01, continuous_update: false, readout_format: ".2f", layout: { width: "460px" }, style: { description_width: "110px" } });
    const encoderSlider = slider("encoder mask", run.encoderMaskRatio);
    const decoderSlider = slider("decoder mask", run.decoderMaskRatio);
    const lrScaleSlider = new FloatLogSlider({ description: "lr scale", value: run.lrScale, base: 10, min: -2, max: 1, step: 0.05, continuous_update: false, readout_format: ".3g", layout: { width: "460px" }, style: { description_width: "110px" } });
    super([status, new HBox([pauseButton, stopButton, probeButton, checkpointButton]), encoderSlider, decoderSlider, lrScaleSlider, message], { layout: { border: "1px solid #ddd", padding: "6px" } });
    this.status = status;
    this.message = message;
    this.pauseButton = pauseButton;
    this.stopButton = stopButton;
    this.probeButton = probeButton;
    this.checkpointButton = checkpointButton;
    this.encoderSlider = encoderSlider;
    this.decoderSlider = decoderSlider;
    this.lrScaleSlider = lrScaleSlider;
    const minInterval = options.minIntervalMs ?? 500;

    const sliders: [FloatSlider | FloatLogSlider, ChangeField][] = [
      [encoderSlider, "encoderMaskRatio"],
      [decoderSlider, "decoderMaskRatio"],
      [lrScaleSlider, "lrScale"],
    ];
    for (const [w, field] of sliders) {
      w.observe("value", (c: Change<number>) => {
        if (c.source !== "frontend") return;
        // a slider snaps to min + k·step in floating point (0.44999999999999996): keep the value the user meant
        const value = typeof c.new === "number" ? Math.round(c.new * 1e6) / 1e6 : c.new;
        try {
          run.change(field, value, "panel");
          if (value !== c.new) w.value = value;
          this.say(`${LABELS[field]} ${c.old} → ${value}: applies from step ${run.step + 1}.`);
        } catch (err) {
          w.value = run[field]; // the refused value goes back to the one in force
          this.say((err as Error).message, true);
        }
      });
    }
    pauseButton.onChange((down, c) => {
      if (c.source !== "frontend") return;
      if (down) run.pause();
      else run.resume();
    });
    stopButton.onClick(() => run.stopAfterStep());
    probeButton.onClick(() => this.attempt(() => run.probeNow(), "probing after the current step."));
    checkpointButton.onClick(() => this.attempt(() => run.checkpointNow(), "saving a checkpoint after the current step."));

    this.unsubscribe = run.subscribe((e) => {
      switch (e.type) {
        case "step":
          this.last = e;
          this.refresh(minInterval);
          return;
        case "change": {
          const w = sliders.find(([, f]) => f === e.field)?.[0];
          if (w && w.value !== e.new) w.value = e.new;
          this.say(`step ${e.step}: ${LABELS[e.field]} ${e.old} → ${e.new} (${e.source}).`);
          return;
        }
        case "eval":
          this.say(`step ${e.step}: ${Object.entries(e.metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}`);
          return;
        case "notice":
          this.say(e.text);
          return;
        case "state":
          this.runState = e.state;
          if (pauseButton.value !== (e.state === "paused")) pauseButton.value = e.state === "paused";
          this.refresh(0);
          return;
      }
    });
    this.onClose(() => {
      this.unsubscribe();
      if (this.pendingStatus) clearTimeout(this.pendingStatus);
      for (const w of [status, message, pauseButton, stopButton, probeButton, checkpointButton, encoderSlider, decoderSlider, lrScaleSlider]) w.close();
    });
    this.refresh(0);
  }

  /** The status line: at most one update per interval, the latest always shown in the end. */
  private refresh(minInterval: number): void {
    const now = performance.now();
    if (now - this.lastShown < minInterval) {
      this.pendingStatus ??= setTimeout(() => {
        this.pendingStatus = null;
        this.refresh(0);
      }, minInterval - (now - this.lastShown));
      return;
    }
    this.lastShown = now;
    if (this.isClosed) return;
    const total = this.run.totalSteps;
    const e = this.last;
    const losses = e ? ` · loss ${fmt(e.loss)} (enc ${fmt(e.encoderLoss)}${Number.isFinite(e.decoderLoss) ? `, dec ${fmt(e.decoderLoss)}` : ""}) · lr ${e.lr.toExponential(2)}` : "";
    this.status.value = `<b>step ${this.run.step}${total ? ` / ${total}` : ""}</b>${escapeHtml(losses)} · <i>${escapeHtml(this.runState)}</i>`;
  }

  private say(text: string, refused = false): void {
    if (!this.isClosed) this.message.value = refused ? `<span style="color:#b00">${escapeHtml(text)}</span>` : escapeHtml(text);
  }

  private attempt(fn: () => void, ok: string): void {
    try {
      fn();
      this.say(ok);
    } catch (err) {
      this.say((err as Error).message, true);
    }
  }
}
