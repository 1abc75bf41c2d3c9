/**
 * Loss charts built from training events, as pure Plotly data. One chart
 * can overlay several runs; each run is labelled by what differs between
 * their settings (e.g. "enc 0.3 / dec 0.7"). The top panel holds the total,
 * encoder and decoder losses; the bottom panel the learning rate and, when
 * present, probe metrics (right axis).
 */
import { PlotlyFigure } from "./figure";

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
  readonly evalSteps: number[] = [];
  readonly metrics: Record<string, number[]> = {};

  constructor(settings: Record<string, unknown> = {}) {
    this.settings = settings;
  }

  add(e: StepEvent | EvalEvent): void {
    if (e.type === "step") {
      this.steps.push(e.step);
      this.loss.push(e.loss);
      this.encoderLoss.push(e.encoderLoss);
      this.decoderLoss.push(e.decoderLoss);
      this.lr.push(e.lr);
    } else {
      this.evalSteps.push(e.step);
      for (const [k, v] of Object.entries(e.metrics)) (this.metrics[k] ??= []).push(v);
    }
  }
}

export class LossChart {
  readonly runs: RunSeries[] = [];
  title: string;

  constructor(title = "RetroMAE pre-training") {
    this.title = title;
  }

  addRun(settings: Record<string, unknown> = {}): RunSeries {
    const r = new RunSeries(settings);
    this.runs.push(r);
    return r;
  }

  figure(): PlotlyFigure {
    const labels = labelRuns(this.runs.map((r) => r.settings));
    const data: Record<string, unknown>[] = [];
    this.runs.forEach((r, i) => {
      const color = PALETTE[i % PALETTE.length];
      const label = labels[i];
      const line = (dash: string) => ({ color, dash, width: dash === "solid" ? 2 : 1.3 });
      data.push({ type: "scatter", mode: "lines", name: `${label}: total`, legendgroup: label, x: r.steps, y: r.loss, line: line("solid") });
      data.push({ type: "scatter", mode: "lines", name: `${label}: encoder`, legendgroup: label, x: r.steps, y: r.encoderLoss, line: line("dash") });
      data.push({ type: "scatter", mode: "lines", name: `${label}: decoder`, legendgroup: label, x: r.steps, y: r.decoderLoss, line: line("dot") });
      data.push({ type: "scatter", mode: "lines", name: `${label}: lr`, legendgroup: label, x: r.steps, y: r.lr, xaxis: "x2", yaxis: "y2", line: { color, width: 1 }, showlegend: false });
      const symbols = ["circle", "square", "diamond", "triangle-up"];
      Object.entries(r.metrics).forEach(([name, values], j) => {
        data.push({
          type: "scatter",
          mode: "lines+markers",
          name: `${label}: ${name}`,
          legendgroup: label,
          x: r.evalSteps,
          y: values,
          xaxis: "x2",
          yaxis: "y3",
          marker: { symbol: symbols[j % symbols.length], size: 7 },
          line: { color, width: 1.5 },
        });
      });
    });
    const hasMetrics = this.runs.some((r) => Object.keys(r.metrics).length > 0);
    const layout: Record<string, unknown> = {
      title: { text: this.title },
      height: 560,
      legend: { orientation: "h", y: -0.15 },
      xaxis: { anchor: "y", domain: [0, 1], matches: "x2", showticklabels: false },
      yaxis: { title: { text: "loss" }, domain: [0.42, 1] },
      xaxis2: { anchor: "y2", domain: [0, 1], title: { text: "step" } },
      yaxis2: { title: { text: "lr" }, domain: [0, 0.34], exponentformat: "e" },
      margin: { t: 50, r: 60 },
    };
    if (hasMetrics) layout.yaxis3 = { title: { text: "probe" }, overlaying: "y2", side: "right", rangemode: "tozero" };
    const last = this.runs[this.runs.length - 1];
    const summary =
      last && last.steps.length
        ? `${this.title}: ${this.runs.length} run(s); ${labels[labels.length - 1]} step ${last.steps[last.steps.length - 1]} loss ${last.loss[last.loss.length - 1].toFixed(4)}`
        : `${this.title}: no steps yet`;
    return new PlotlyFigure(data, layout, summary);
  }
}
