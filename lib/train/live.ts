/**
 * Live output of a fit: the loss chart and the progress bar, updated in
 * place through lib's display interface at most every `minIntervalMs`
 * (about twice a second), with a final update at the end so a saved
 * notebook holds the final figure. In a terminal there is no chart, only a
 * progress line on stderr.
 */
import { display, DisplayHandle, isTerminal } from "../display";
import { LossChart, RunSeries, StepEvent, EvalEvent, ChangeEvent } from "../plot/loss-chart";
import { progressBundle, ProgressState, progressText } from "../plot/progress";

export interface LiveOptions {
  minIntervalMs?: number;
  /** Show the chart (default true in notebooks). */
  chart?: boolean;
  now?: () => number;
}

export class LiveReport {
  readonly chart: LossChart;
  readonly run: RunSeries;
  private readonly minIntervalMs: number;
  private readonly now: () => number;
  private readonly terminal: boolean;
  private chartHandle: DisplayHandle | null = null;
  private progressHandle: DisplayHandle | null = null;
  private lastUpdate = -Infinity;
  private dirty = false;
  progress: ProgressState;
  /** Updates sent to the display (charts and progress together). */
  updates = 0;

  constructor(chart: LossChart, run: RunSeries, totalSteps: number, options: LiveOptions = {}) {
    this.chart = chart;
    this.run = run;
    this.minIntervalMs = options.minIntervalMs ?? 500;
    this.now = options.now ?? (() => performance.now());
    this.terminal = isTerminal();
    this.progress = { step: 0, totalSteps, elapsedMs: 0, tokensPerSec: 0, loss: null, status: "running" };
    if (!this.terminal) {
      if (options.chart !== false) this.chartHandle = display(chart.figure());
      this.progressHandle = display(progressBundle(this.progress));
    }
  }

  /** Record an event; refresh the display if enough time has passed. */
  push(e: (StepEvent | EvalEvent | ChangeEvent) & { elapsedMs?: number; tokensPerSec?: number; stepInFit?: number }): void {
    this.run.add(e);
    if (e.type === "step") {
      this.progress = {
        ...this.progress,
        step: e.stepInFit ?? this.progress.step + 1,
        elapsedMs: e.elapsedMs ?? this.progress.elapsedMs,
        tokensPerSec: e.tokensPerSec ?? this.progress.tokensPerSec,
        loss: e.loss,
        encoderLoss: e.encoderLoss,
        decoderLoss: e.decoderLoss,
      };
    }
    this.dirty = true;
    const t = this.now();
    if (t - this.lastUpdate >= this.minIntervalMs) this.flush(t);
  }

  private flush(t: number): void {
    this.lastUpdate = t;
    this.dirty = false;
    this.updates++;
    if (this.terminal) {
      process.stderr.write(`\r${progressText(this.progress)}`);
      return;
    }
    this.chartHandle?.update(this.chart.figure());
    this.progressHandle?.update(progressBundle(this.progress));
  }

  /** Show a state ("paused", "running") on the progress bar now. */
  status(status: string): void {
    this.progress = { ...this.progress, status };
    this.flush(this.now());
  }

  /** The final update: always sent, so the saved notebook holds the end state. */
  finish(status: string): void {
    this.progress = { ...this.progress, status };
    this.flush(this.now());
    if (this.terminal) process.stderr.write("\n");
  }

  get pending(): boolean {
    return this.dirty;
  }
}
