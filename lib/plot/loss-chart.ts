/**
 * Loss charts built from training events, as pure Plotly data. One chart
 * overlays several runs; each run is labelled by what differs between their
 * settings (e.g. "enc 0.3 / dec 0.7"). Panels compare like with like:
 *
 * - the encoder's MLM loss, which RetroMAE and MLM-only runs share (their
 *   totals differ by the decoder term, so totals are not drawn);
 * - the decoder loss, for runs that have one;
 * - the probe's metrics per run, with baselines (the start, BM25, published
 *   figures) as labelled reference lines;
 * - the [CLS] geometry per run (geometryHook: anisotropy on the left axis,
 *   effective rank on the right), for runs that log it;
 * - the learning rate, small (or hidden).
 *
 * Losses are drawn raw (faint) and smoothed with TensorBoard's debiased EMA
 * (bold); a button switches the loss axes to log scale. Long series are
 * decimated: the newest points stay exact, older ones are averaged in
 * buckets, so each update's size stays flat as training goes on.
 */
import { GEOMETRY_METRICS } from "../probe/geometry";
import { PlotlyFigure } from "./figure";

const GEOMETRY_NAMES: readonly string[] = Object.values(GEOMETRY_METRICS);

export interface StepEvent {
  type: "step";
  step: number;
  loss: number;
  encoderLoss: number;
  decoderLoss: number;
  lr: number;
}

export interface EvalEvent {
  type: "eval";
  step: number;
  metrics: Record<string, number>;
}

/** A setting changed from `step` on (the control panel): marked on the chart at its step. */
export interface ChangeEvent {
  type: "change";
  step: number;
  field: string;
  old: number;
  new: number;
}

const CHANGE_LABELS: Record<string, string> = { encoderMaskRatio: "enc", decoderMaskRatio: "dec", lrScale: "lr ×" };

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

const SHORT_NAMES: Record<string, string> = {
  encoderMaskRatio: "enc",
  decoderMaskRatio: "dec",
  lr: "lr",
  batchSize: "bs",
  preset: "model",
  seed: "seed",
  bowLossWeight: "bow",
};

/**
 * Labels for runs from their settings: a run's own `name` when it has one,
 * else only the keys whose values differ between runs, short names first.
 * With one run, the mask ratios.
 */
export function labelRuns(settings: readonly Record<string, unknown>[]): string[] {
  const keys = [...new Set(settings.flatMap((s) => Object.keys(s)))].filter((k) => typeof settings[0]?.[k] !== "object");
  let differing = keys.filter((k) => new Set(settings.map((s) => JSON.stringify(s[k]))).size > 1);
  if (differing.length === 0) differing = ["encoderMaskRatio", "decoderMaskRatio"].filter((k) => keys.includes(k));
  differing.sort((a, b) => (a in SHORT_NAMES ? 0 : 1) - (b in SHORT_NAMES ? 0 : 1));
  return settings.map((s, i) => {
    if (typeof s.name === "string" && s.name) return s.name;
    const parts = differing.map((k) => `${SHORT_NAMES[k] ?? k} ${String(s[k])}`);
    return parts.length ? parts.join(" / ") : `run ${i + 1}`;
  });
}

export class RunSeries {
  readonly settings: Record<string, unknown>;
  readonly steps: number[] = [];
  readonly loss: number[] = [];
  readonly encoderLoss: number[] = [];
  readonly decoderLoss: number[] = [];
  readonly lr: number[] = [];
  /** Each eval metric's values, and the steps they were measured at (hooks report at their own steps). */
  readonly metrics: Record<string, number[]> = {};
  readonly metricSteps: Record<string, number[]> = {};
  /** Setting changes, each marked at its step. */
  readonly changes: ChangeEvent[] = [];

  constructor(settings: Record<string, unknown> = {}) {
    this.settings = settings;
  }

  add(e: StepEvent | EvalEvent | ChangeEvent): void {
    if (e.type === "change") {
      this.changes.push({ type: "change", step: e.step, field: e.field, old: e.old, new: e.new });
      return;
    }
    if (e.type === "step") {
      this.steps.push(e.step);
      this.loss.push(e.loss);
      this.encoderLoss.push(e.encoderLoss);
      this.decoderLoss.push(e.decoderLoss);
      this.lr.push(e.lr);
    } else {
      for (const [k, v] of Object.entries(e.metrics)) {
        (this.metrics[k] ??= []).push(v);
        (this.metricSteps[k] ??= []).push(e.step);
      }
    }
  }
}

/**
 * TensorBoard's scalar smoothing: an exponential moving average debiased
 * for its start (last = last·w + (1 − w)·v; shown = last / (1 − wⁿ)).
 * Non-finite values are carried over unchanged and do not enter the
 * average. weight 0 returns the values.
 */
export function emaSmooth(values: readonly number[], weight: number): number[] {
  if (!(weight >= 0 && weight < 1)) throw new Error(`smoothing must be in [0, 1), got ${weight}; TensorBoard's default is 0.6.`);
  let last = 0;
  let n = 0;
  return values.map((v) => {
    if (!Number.isFinite(v)) return v;
    last = last * weight + (1 - weight) * v;
    n++;
    return weight === 0 ? v : last / (1 - weight ** n);
  });
}

/**
 * At most `maxPoints` points: the newest maxPoints/2 exactly, the older ones
 * averaged in equal buckets (x: the bucket's last step). Returns the input
 * when it is short enough.
 */
export function decimate(xs: readonly number[], ys: readonly number[], maxPoints: number): { x: number[]; y: number[] } {
  const n = xs.length;
  if (n <= maxPoints) return { x: xs.slice(), y: ys.slice() };
  const recent = Math.floor(maxPoints / 2);
  const old = n - recent;
  const buckets = maxPoints - recent;
  const x: number[] = [];
  const y: number[] = [];
  for (let b = 0; b < buckets; b++) {
    const lo = Math.floor((b * old) / buckets);
    const hi = Math.floor(((b + 1) * old) / buckets);
    let sum = 0;
    let count = 0;
    for (let i = lo; i < hi; i++) {
      if (Number.isFinite(ys[i])) {
        sum += ys[i];
        count++;
      }
    }
    x.push(xs[hi - 1]);
    y.push(count ? +(sum / count).toPrecision(6) : NaN);
  }
  for (let i = old; i < n; i++) {
    x.push(xs[i]);
    y.push(ys[i]);
  }
  return { x, y };
}

export interface LossChartOptions {
  /** EMA weight for the loss curves, as TensorBoard's slider. Default 0.6; 0 draws raw values only. */
  smoothing?: number;
  /** Points per curve before old ones are decimated. Default 1,000. */
  maxPoints?: number;
  /** Draw the learning rate in a small panel. Default true. */
  showLr?: boolean;
  /** The top panel's title. Default "encoder MLM loss"; e.g. "contrastive loss" for a fine-tuning chart. */
  lossTitle?: string;
  /** Probe metrics drawn (hooks may report more). Default: NDCG@10 when a run reports it, else every metric but the geometry's. */
  probeMetrics?: string[];
  /**
   * Geometry metrics drawn in the geometry panel (GEOMETRY_METRICS' names;
   * "effective rank" goes on a right-hand axis). Default anisotropy and
   * effective rank.
   */
  geometryMetrics?: string[];
}

/** A horizontal line on the probe panel: a baseline's score. */
export interface ReferenceLine {
  name: string;
  metric: string;
  value: number;
}

export class LossChart {
  readonly runs: RunSeries[] = [];
  readonly references: ReferenceLine[] = [];
  title: string;
  smoothing: number;
  maxPoints: number;
  showLr: boolean;
  lossTitle: string;
  probeMetrics: string[] | null;
  geometryMetrics: string[];

  constructor(title = "RetroMAE pre-training", options: LossChartOptions = {}) {
    this.title = title;
    this.smoothing = options.smoothing ?? 0.6;
    emaSmooth([], this.smoothing);
    this.maxPoints = options.maxPoints ?? 1000;
    this.showLr = options.showLr ?? true;
    this.lossTitle = options.lossTitle ?? "encoder MLM loss";
    this.probeMetrics = options.probeMetrics ?? null;
    this.geometryMetrics = options.geometryMetrics ?? [GEOMETRY_METRICS.anisotropy, GEOMETRY_METRICS.effectiveRank];
    const unknown = this.geometryMetrics.filter((m) => !GEOMETRY_NAMES.includes(m));
    if (unknown.length) throw new Error(`geometryMetrics: ${unknown.map((m) => `"${m}"`).join(", ")} is not a geometry metric; use some of ${GEOMETRY_NAMES.map((m) => `"${m}"`).join(", ")}.`);
  }

  addRun(settings: Record<string, unknown> = {}): RunSeries {
    const r = new RunSeries(settings);
    this.runs.push(r);
    return r;
  }

  /** A baseline's score (e.g. the starting encoder, BM25, a published figure) as a reference line on the probe panel. */
  addReference(name: string, value: number, metric = "NDCG@10"): this {
    if (!Number.isFinite(value)) throw new Error(`Reference "${name}" needs a finite score, got ${value}.`);
    this.references.push({ name, metric, value });
    return this;
  }

  figure(): PlotlyFigure {
    const labels = labelRuns(this.runs.map((r) => r.settings));
    const hasDecoder = this.runs.some((r) => r.decoderLoss.some(Number.isFinite));
    const reported = [...new Set(this.runs.flatMap((r) => Object.keys(r.metrics)))].filter((k) => !GEOMETRY_NAMES.includes(k));
    const geometry = (r: RunSeries) => Object.entries(r.metrics).filter(([k]) => this.geometryMetrics.includes(k));
    const hasGeometry = this.runs.some((r) => geometry(r).length > 0);
    const rankRight = this.runs.some((r) => geometry(r).some(([k]) => k === GEOMETRY_METRICS.effectiveRank));
    const leftGeometry = this.geometryMetrics.filter((m) => m !== GEOMETRY_METRICS.effectiveRank);
    const metrics = this.probeMetrics ?? (reported.includes("NDCG@10") || reported.length === 0 ? ["NDCG@10"] : reported);
    const shown = (r: RunSeries) => Object.entries(r.metrics).filter(([k]) => metrics.includes(k));
    const hasProbe = this.runs.some((r) => shown(r).length > 0) || this.references.length > 0;
    // Baselines (BM25 ~0.7) and early runs (~0.01) differ by orders of magnitude: the axis spans the runs
    // and the references near them; a reference far above is named at the panel's top edge instead.
    const runValues = this.runs.flatMap((r) => shown(r).flatMap(([, v]) => v)).filter(Number.isFinite);
    const refs = this.references.filter((ref) => metrics.includes(ref.metric));
    const runMax = runValues.length ? Math.max(...runValues) : Math.max(0, ...refs.map((r) => r.value));
    const near = (v: number) => !runValues.length || v <= 3 * runMax;
    const probeTop = Math.max(runMax, ...refs.filter((r) => near(r.value)).map((r) => r.value)) * 1.15 || 1;
    // panels top to bottom, with relative heights
    const panels: { key: "enc" | "dec" | "probe" | "geo" | "lr"; title: string; weight: number }[] = [
      { key: "enc", title: this.lossTitle, weight: 3 },
      ...(hasDecoder ? [{ key: "dec" as const, title: "decoder loss", weight: 2 }] : []),
      ...(hasProbe ? [{ key: "probe" as const, title: "probe", weight: 2 }] : []),
      ...(hasGeometry ? [{ key: "geo" as const, title: leftGeometry.join(", ") || "[CLS] geometry", weight: 1.6 }] : []),
      ...(this.showLr ? [{ key: "lr" as const, title: "lr", weight: 0.8 }] : []),
    ];
    const gap = 0.05;
    const total = panels.reduce((a, p) => a + p.weight, 0);
    const usable = 1 - gap * (panels.length - 1);
    const axis: Record<string, { x: string; y: string; n: number }> = {};
    let top = 1;
    const layout: Record<string, unknown> = {
      title: { text: this.title },
      height: 220 + 120 * panels.length,
      legend: { orientation: "h", y: -0.08 },
      margin: { t: 60, r: 30 },
      hovermode: "x unified",
    };
    panels.forEach((p, i) => {
      const n = i + 1;
      const h = (usable * p.weight) / total;
      const domain = [Math.max(0, top - h), top];
      top -= h + gap;
      const suffix = n === 1 ? "" : String(n);
      axis[p.key] = { x: `x${suffix}`, y: `y${suffix}`, n };
      const last = i === panels.length - 1;
      layout[`xaxis${suffix}`] = { anchor: `y${suffix}`, domain: [0, 1], showticklabels: last, ...(last ? { title: { text: "step" } } : {}), ...(n > 1 ? { matches: "x" } : {}) };
      const tickformat = p.key === "lr" ? ".1e" : ".3~f";
      const probeAxis = { range: [0, probeTop] };
      layout[`yaxis${suffix}`] = { title: { text: p.key === "probe" ? metrics.join(", ") : p.title }, domain, tickformat, ...(p.key === "probe" ? probeAxis : {}) };
    });
    // the effective rank (1 to H) shares the geometry panel's x axis, on an axis of its own at the right
    const rankAxis = axis.geo && rankRight ? { x: axis.geo.x, y: `y${panels.length + 1}` } : null;
    if (rankAxis) layout[`yaxis${panels.length + 1}`] = { title: { text: "effective rank" }, overlaying: axis.geo.y, side: "right", anchor: axis.geo.x, tickformat: ".3~f", showgrid: false };
    const lossAxes = ["enc", "dec"].filter((k) => axis[k]).map((k) => `yaxis${axis[k].n === 1 ? "" : axis[k].n}`);
    layout.updatemenus = [
      {
        type: "buttons",
        direction: "left",
        x: 1,
        xanchor: "right",
        y: 1.12,
        showactive: true,
        buttons: [
          { label: "linear", method: "relayout", args: [Object.fromEntries(lossAxes.map((a) => [`${a}.type`, "linear"]))] },
          { label: "log", method: "relayout", args: [Object.fromEntries(lossAxes.map((a) => [`${a}.type`, "log"]))] },
        ],
      },
    ];

    const data: Record<string, unknown>[] = [];
    const curve = (key: "enc" | "dec", r: RunSeries, values: number[], label: string, color: string, legend: boolean) => {
      const raw = decimate(r.steps, values, this.maxPoints);
      const a = axis[key];
      if (this.smoothing > 0) {
        data.push({ type: "scatter", mode: "lines", name: `${label} (raw)`, legendgroup: label, showlegend: false, hoverinfo: "skip", x: raw.x, y: raw.y, xaxis: a.x, yaxis: a.y, line: { color, width: 1 }, opacity: 0.25 });
      }
      const smooth = decimate(r.steps, emaSmooth(values, this.smoothing), this.maxPoints);
      data.push({ type: "scatter", mode: "lines", name: label, legendgroup: label, showlegend: legend, x: smooth.x, y: smooth.y, xaxis: a.x, yaxis: a.y, line: { color, width: 2 } });
    };
    const symbols = ["circle", "square", "diamond", "triangle-up"];
    this.runs.forEach((r, i) => {
      const color = PALETTE[i % PALETTE.length];
      const label = labels[i];
      curve("enc", r, r.encoderLoss, label, color, true);
      if (axis.dec && r.decoderLoss.some(Number.isFinite)) curve("dec", r, r.decoderLoss, label, color, false);
      if (axis.lr) {
        const lr = decimate(r.steps, r.lr, this.maxPoints);
        data.push({ type: "scatter", mode: "lines", name: `${label}: lr`, legendgroup: label, showlegend: false, x: lr.x, y: lr.y, xaxis: axis.lr.x, yaxis: axis.lr.y, line: { color, width: 1 } });
      }
      if (axis.geo) {
        geometry(r).forEach(([name, values], j) => {
          const a = name === GEOMETRY_METRICS.effectiveRank && rankAxis ? rankAxis : axis.geo;
          data.push({ type: "scatter", mode: "lines+markers", name: `${label}: ${name}`, legendgroup: label, showlegend: false, x: r.metricSteps[name], y: values, xaxis: a.x, yaxis: a.y, marker: { symbol: symbols[j % symbols.length], size: 6, color }, line: { color, width: 1.5, dash: name === GEOMETRY_METRICS.effectiveRank ? "dot" : "solid" } });
        });
      }
      if (axis.probe) {
        shown(r).forEach(([name, values], j) => {
          data.push({ type: "scatter", mode: "lines+markers", name: `${label}: ${name}`, legendgroup: label, showlegend: false, x: r.metricSteps[name], y: values, xaxis: axis.probe.x, yaxis: axis.probe.y, marker: { symbol: symbols[j % symbols.length], size: 7, color }, line: { color, width: 1.5 } });
        });
      }
    });
    if (axis.probe && this.references.length) {
      const yref = axis.probe.n === 1 ? "y" : `y${axis.probe.n}`;
      const xref = `${axis.probe.x} domain`;
      const inside = refs.filter((ref) => near(ref.value));
      const above = refs.filter((ref) => !near(ref.value));
      layout.shapes = inside.map((ref) => ({ type: "line", xref, x0: 0, x1: 1, yref, y0: ref.value, y1: ref.value, line: { color: "#555", width: 1, dash: "dash" } }));
      layout.annotations = [
        ...inside.map((ref) => ({ xref, x: 0, xanchor: "left", yref, y: ref.value, yanchor: "bottom", text: `${ref.name} ${ref.value.toFixed(3)}`, showarrow: false, font: { size: 10, color: "#555" } })),
        ...above.map((ref, k) => ({ xref, x: 1, xanchor: "right", yref: `${yref} domain`, y: 1 - 0.12 * k, yanchor: "top", text: `${ref.name} ${ref.value.toFixed(3)} (above)`, showarrow: false, font: { size: 10, color: "#555" } })),
      ];
    }
    // each setting change: a dotted line through the loss panels at its step, labelled on the top panel
    const marks = this.runs.flatMap((r, i) => r.changes.map((c) => ({ c, color: PALETTE[i % PALETTE.length] })));
    if (marks.length) {
      const lossPanels = (["enc", "dec"] as const).filter((k) => axis[k]);
      layout.shapes = [
        ...((layout.shapes as unknown[]) ?? []),
        ...marks.flatMap(({ c, color }) => lossPanels.map((k) => ({ type: "line", xref: axis[k].x, x0: c.step, x1: c.step, yref: `${axis[k].y} domain`, y0: 0, y1: 1, line: { color, width: 1, dash: "dot" } }))),
      ];
      layout.annotations = [
        ...((layout.annotations as unknown[]) ?? []),
        ...marks.map(({ c, color }, k) => ({ xref: axis.enc.x, x: c.step, yref: `${axis.enc.y} domain`, y: 1 - 0.09 * (k % 3), yanchor: "top", xanchor: "left", text: `${CHANGE_LABELS[c.field] ?? c.field} ${c.old}→${c.new}`, showarrow: false, font: { size: 10, color } })),
      ];
    }
    const last = this.runs[this.runs.length - 1];
    const summary =
      last && last.steps.length
        ? `${this.title}: ${this.runs.length} run(s); ${labels[labels.length - 1]} step ${last.steps[last.steps.length - 1]} encoder loss ${last.encoderLoss[last.encoderLoss.length - 1].toFixed(4)}`
        : `${this.title}: no steps yet`;
    return new PlotlyFigure(data, layout, summary);
  }
}
