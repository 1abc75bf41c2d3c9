/**
 * The RetroMAE Trainer: an async loop that yields to the event loop between
 * steps (so a notebook shows live output), stops cleanly after the current
 * step when its AbortSignal fires, and continues from there on the next
 * `fit`. It writes a run directory (config.json, metrics.jsonl, checkpoints)
 * and resumes from a checkpoint to the same losses, bit for bit on the same
 * backend.
 */
import * as path from "path";
import * as tf from "../engine/tf";
import { info as backendInfo } from "../engine/backend";
import { Rng } from "../engine/rng";
import { RetroMAECollator } from "../masking/collator";
import { collateAhead } from "../masking/ahead";
import { loadCheckpoint, lossValuesOf, saveCheckpoint, stackLossValues } from "../model/retromae";
import type { RetroMAE, LossTensors, LossValues } from "../model/retromae";
import { computesNothing, DeviceFailure, freeGpuMemory, GPU_OUT_OF_MEMORY, isOutOfMemory, takeDeviceError, trimGpuPool } from "../engine/webgpu/backend";
import { copyInPlaceWebGPU } from "../engine/webgpu/optimizer";
import { StepRecorder, type RecordedSteps } from "../engine/webgpu/replay";
import { StepProfile, summarizeProfile } from "../engine/webgpu/profile";
import { DropoutSeeds } from "../engine/fused";
import type { RetroMAEBatch } from "../masking/batch";
import { LossChart, RunSeries } from "../plot/loss-chart";
import { currentSignal } from "../interrupt";
import type { BertTokenizer } from "../text/tokenizer";
import { BatchStream, DataPosition, PackedCorpus } from "./data";
import { LiveReport } from "./live";
import { AdamW, finiteStepGuard } from "./optim";
import { RunDirectory, resolveCheckpoint } from "./run-dir";
import { LrSchedule } from "./schedule";
import { readTrainingState, TrainerState, writeTrainingState } from "./state";
import { appendSettingsHistory, ChangeField, checkChange, ControllableRun, readSettingsHistory, RunEvent, SettingChange } from "./changes";
import { ControlPanel } from "./controls";

export interface TrainerOptions {
  model: RetroMAE;
  tokenizer: BertTokenizer;
  data: PackedCorpus;
  /** The run's generator: masks, dropout and data order draw from it. Default: new Rng(seed). */
  rng?: Rng;
  seed?: number;
  batchSize?: number;
  maxLength?: number;
  encoderMaskRatio?: number;
  decoderMaskRatio?: number;
  gradAccumulation?: number;
  lr?: number;
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  warmupRatio?: number;
  warmupSteps?: number;
  decay?: "linear" | "cosine" | "constant";
  maxGradNorm?: number;
  /** Steps the schedule spans. Default: the target of the first fit. */
  totalSteps?: number;
  /** Where config.json, metrics.jsonl and checkpoints go. None: nothing is written. */
  runDir?: string;
  /** Checkpoint every N optimizer steps (and at the end of each fit). 0: only at the end. */
  checkpointEvery?: number;
  keepLast?: number;
  /** Evaluation hooks, run every `every` steps; their metrics become "eval" events and chart points. */
  hooks?: TrainerHook[];
  /** A chart shared between trainers overlays their runs. Default: a chart of its own. */
  chart?: LossChart;
  /** Extra settings recorded in config.json and used to label the run on the chart. */
  settings?: Record<string, unknown>;
  /**
   * Setting changes to apply at their steps (a run's settings history,
   * readSettingsHistory(runDir)): a replay of an interactive run, with no panel.
   */
  changes?: SettingChange[];
  /**
   * On webgpu, record a step's GPU commands and replay them for the steps
   * after (lib/engine/webgpu/replay.ts): the host then issues a step in a
   * few microseconds per dispatch instead of tfjs's tens. Batches are then
   * padded to maxLength, and the masked positions to the most the collator
   * can mask (the collator's staticShapes), so that every step has the same
   * shapes. "tfjs": the same steps, every one run through tfjs (what a
   * replay must equal, bit for bit; for checking one). Default: true on
   * webgpu; ignored elsewhere.
   */
  recordSteps?: boolean | "tfjs";
}

export interface TrainerHook {
  every: number;
  name?: string;
  run: (trainer: Trainer) => Promise<Record<string, number>> | Record<string, number>;
}

/** One micro-batch of a step, with its dropout seeds where the backend draws them per step. */
type MicroBatch = { batch: RetroMAEBatch; seeds?: DropoutSeeds };

export interface StepInfo extends LossValues {
  type: "step";
  step: number;
  epoch: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  tokensPerSec: number;
  elapsedMs: number;
  stepMs: number;
  numTensors: number;
  stepInFit: number;
}

export interface EvalInfo {
  type: "eval";
  step: number;
  metrics: Record<string, number>;
}

/** A setting changed from this step on (the control panel, `change`, a replay). */
export interface ChangeInfo extends SettingChange {
  type: "change";
}

export type TrainerEvent = StepInfo | EvalInfo | ChangeInfo;

export interface FitOptions {
  /** Optimizer steps to take in this call ... */
  steps?: number;
  /** ... or passes over the data. */
  epochs?: number;
  /** Stop cleanly after the current step when this fires (the kernel passes its interrupt signal). */
  signal?: AbortSignal;
  onEvent?: (e: TrainerEvent) => void;
  /** Live chart and progress bar through the display interface. Default true. */
  live?: boolean;
  /** Minimum ms between live updates. Default 500. */
  liveIntervalMs?: number;
  /**
   * Queue each step before reading the last one's losses, so the device never
   * waits for the host. Default: on a GPU backend. An interrupt then stops
   * after the step already queued.
   */
  queueAhead?: boolean;
}

export interface FitResult {
  status: "done" | "stopped";
  stepsTaken: number;
  step: number;
  lastLoss: LossValues | null;
  /** ms spent in the model step (forward, backward, clip, update) and in the whole loop. */
  modelMs: number;
  totalMs: number;
  checkpoint: string | null;
}

/** A step queued on the device, not yet read. */
interface PendingStep {
  step: number;
  epoch: number;
  /** The losses (stackLossValues), then the gradient norm and the step flag (1 or 0): one vector, one read. */
  values: tf.Tensor1D;
  /** Its read, started when the step was queued (see pending). */
  read: Promise<ArrayLike<number>>;
  bow: boolean;
  tokens: number;
  lr: number;
  started: number;
}

/**
 * A queued step's losses, norm and flag in one vector, with its read started
 * now. On webgpu a read copies the tensor after everything queued so far and
 * waits for that copy: started before the next step is queued, it waits for
 * this step's work only, so the device runs the next step while the host
 * reads this one's losses (started after, it would wait for the next step
 * too, and the device would idle while the host queued the one after).
 */
function pending(step: number, epoch: number, losses: LossTensors, norm: tf.Scalar, ok: tf.Scalar, tokens: number, lr: number, started: number): PendingStep {
  const flag = tf.cast(ok, "float32") as tf.Scalar;
  ok.dispose();
  const values = stackLossValues(losses, [norm, flag]);
  const read = values.data();
  read.catch(() => undefined); // (awaited by settle; a run that stops first drops it)
  return { step, epoch, values, read, bow: !!losses.bowLoss, tokens, lr, started };
}

/** a + b per name; both inputs disposed. */
function addInto(a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, x] of b) {
    out.set(name, tf.add(a.get(name)!, x));
    a.get(name)!.dispose();
    x.dispose();
  }
  return out;
}

/** x · c per name; inputs disposed. */
function scaleAll(xs: Map<string, tf.Tensor>, c: number): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [k, x] of xs) {
    out.set(k, tf.mul(x, c));
    x.dispose();
  }
  return out;
}

const entries = (l: LossTensors) => new Map(Object.entries(l) as [string, tf.Tensor][]);
const fromEntries = (m: Map<string, tf.Tensor>) => Object.fromEntries(m) as unknown as LossTensors;

export class TrainingStopped extends Error {}

export class Trainer implements ControllableRun {
  readonly model: RetroMAE;
  readonly tokenizer: BertTokenizer;
  readonly rng: Rng;
  readonly collator: RetroMAECollator;
  /**
   * Called with every micro-batch a step trains on, as it is taken (from the
   * collator, or made on the collating thread), and the step it belongs to:
   * to look at or save what a run saw. Keep what it is given as it is: the
   * step reads the same arrays.
   */
  onBatch: ((batch: RetroMAEBatch, step: number) => void) | null = null;
  /** Where the data stands after the batches being made ahead. */
  private aheadPosition: DataPosition | null = null;
  /** Steps whose batches the collating thread made. */
  private aheadSteps = 0;
  readonly optimizer: AdamW;
  readonly stream: BatchStream;
  readonly chart: LossChart;
  readonly series: RunSeries;
  readonly options: Required<Pick<TrainerOptions, "batchSize" | "maxLength" | "gradAccumulation" | "maxGradNorm" | "keepLast" | "checkpointEvery">> & TrainerOptions;
  readonly dataSeed: number;
  /** Optimizer steps taken. */
  step = 0;
  /** Multiplies the schedule's lr (the control panel's lr scale); 1 by default. */
  private scale = 1;
  /** Changes asked for, applied before the next step is queued. */
  private readonly requested: { field: ChangeField; value: number; source: string; time: string }[] = [];
  /** Changes to apply at given steps (a replay, or the rest of the history on resume). */
  private readonly scheduled: SettingChange[];
  private pauseRequested = false;
  private resumeWaiter: (() => void) | null = null;
  private stopRequested = false;
  private probeRequested = false;
  private checkpointRequested = false;
  private fitting = false;
  private readonly listeners = new Set<(e: RunEvent) => void>();
  private panel: ControlPanel | null = null;
  private schedule: LrSchedule | null = null;
  /** False on the device from the first non-finite step of a fit on: updates after it are not applied. */
  private readonly healthy = tf.variable(tf.scalar(true, "bool"), false);
  /** Recorded and replayed steps (webgpu with recordSteps), made at the first step. */
  private recorder: StepRecorder | null | undefined = undefined;
  private readonly hooks: TrainerHook[];
  private configWritten = false;
  /** The run directory's layout (config.json, metrics.jsonl, checkpoints); null without runDir. */
  readonly run: RunDirectory | null;

  constructor(options: TrainerOptions, restored?: { state: TrainerState }) {
    const o = {
      batchSize: 16,
      maxLength: 128,
      gradAccumulation: 1,
      maxGradNorm: 1.0,
      keepLast: 2,
      checkpointEvery: 0,
      ...options,
    };
    for (const k of ["batchSize", "maxLength", "gradAccumulation"] as const) {
      if (!Number.isInteger(o[k]) || o[k] <= 0) throw new Error(`Trainer ${k} must be a positive whole number, got ${o[k]}.`);
    }
    if (o.recordSteps !== undefined && o.recordSteps !== true && o.recordSteps !== false && o.recordSteps !== "tfjs") {
      throw new Error(`Trainer recordSteps must be true, false or "tfjs", got ${JSON.stringify(o.recordSteps)}.`);
    }
    o.model.checkLength(o.maxLength, "maxLength");
    o.model.checkTokenIds(o.tokenizer.vocab.size - 1, "The tokenizer");
    o.model.checkTokenIds(o.data.maxId, "The training corpus");
    this.options = o;
    this.run = o.runDir ? new RunDirectory(o.runDir) : null;
    this.model = o.model;
    this.tokenizer = o.tokenizer;
    this.rng = o.rng ?? new Rng(o.seed ?? 42);
    this.collator = new RetroMAECollator({
      tokenizer: o.tokenizer,
      rng: this.rng,
      maxLength: o.maxLength,
      encoderMaskRatio: o.encoderMaskRatio,
      decoderMaskRatio: o.decoderMaskRatio,
    });
    this.optimizer = new AdamW(this.model.weights, { lr: o.lr, weightDecay: o.weightDecay, betas: o.betas, eps: o.eps });
    this.dataSeed = restored ? restored.state.dataSeed : this.rng.uint32();
    this.stream = new BatchStream(o.data, o.batchSize, this.dataSeed);
    this.hooks = o.hooks ?? [];
    this.chart = o.chart ?? new LossChart();
    this.series = this.chart.addRun(this.labelSettings());
    this.scheduled = [...(o.changes ?? [])].sort((a, b) => a.step - b.step);
    for (const c of this.scheduled) {
      const bad = checkChange(c.field, c.new);
      if (bad || !Number.isInteger(c.step) || c.step < 1) throw new Error(`A recorded change cannot be replayed (${JSON.stringify(c)}): ${bad ?? "its step must be a whole number ≥ 1"}`);
    }
    if (restored) {
      const s = restored.state;
      this.step = s.step;
      this.rng.setState(s.rng);
      this.stream.position = s.position;
      if (s.totalSteps !== null) this.schedule = this.makeSchedule(s.totalSteps, s.warmupSteps ?? undefined);
      this.scale = (s.options as { lrScale?: number }).lrScale ?? 1;
      this.configWritten = true;
    }
  }

  /** Encoder mask ratio used from the next batch on. */
  get encoderMaskRatio(): number {
    return this.collator.encoderMaskRatio;
  }
  set encoderMaskRatio(r: number) {
    this.collator.encoderMaskRatio = r;
  }
  get decoderMaskRatio(): number {
    return this.collator.decoderMaskRatio;
  }
  set decoderMaskRatio(r: number) {
    this.collator.decoderMaskRatio = r;
  }

  /** The factor on the schedule's lr (the panel's lr scale). */
  get lrScale(): number {
    return this.scale;
  }

  get paused(): boolean {
    return this.pauseRequested;
  }

  get totalSteps(): number | null {
    return this.schedule?.totalSteps ?? this.options.totalSteps ?? null;
  }

  get canProbe(): boolean {
    return this.hooks.length > 0;
  }

  get canCheckpoint(): boolean {
    return this.run !== null;
  }

  /**
   * Change a setting from the next step on, recorded in metrics.jsonl and
   * the run directory's settings history (so resume and replay apply it at
   * the same step). Refused with one sentence when the value is not valid.
   */
  change(field: ChangeField, value: number, source = "code"): void {
    const bad = checkChange(field, value, this.current(field));
    if (bad) throw new Error(bad);
    this.requested.push({ field, value: Number(value), source, time: new Date().toISOString() });
  }

  /** Hold the run after the current step until resume(); an interrupt still stops it. */
  pause(): void {
    if (this.pauseRequested) return;
    this.pauseRequested = true;
    this.notify({ type: "state", state: "paused", step: this.step });
  }

  resume(): void {
    if (!this.pauseRequested) return;
    this.pauseRequested = false;
    this.resumeWaiter?.();
    this.notify({ type: "state", state: this.fitting ? "running" : "stopped", step: this.step });
  }

  /** End the running fit after the current step, as an interrupt does ("stopped"); the next fit goes on. */
  stopAfterStep(): void {
    if (!this.fitting) return;
    this.stopRequested = true;
    this.resumeWaiter?.();
    this.notify({ type: "state", state: "stopping", step: this.step });
  }

  /** Run the evaluation hooks (the probe) after the current step. */
  probeNow(): void {
    if (!this.canProbe) throw new Error("This trainer has no hooks to run; pass { hooks: [probeHook(set, every)] } to probe.");
    this.probeRequested = true;
    if (!this.fitting) void this.runRequests(null, {});
  }

  /** Save a checkpoint after the current step. */
  checkpointNow(): void {
    if (!this.run) throw new Error("This trainer has no runDir; pass { runDir } to save checkpoints.");
    this.checkpointRequested = true;
    if (!this.fitting) void this.runRequests(null, {});
  }

  /** Hear steps, evaluations, changes and state changes (the control panel does). Returns a function that stops it. */
  subscribe(fn: (e: RunEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * A control panel for this run (widgets): pause and resume, stop after the
   * current step, the mask ratios and an lr scale from the next step, probe
   * and checkpoint now, and the step and latest losses. It works during fit,
   * in the cell that shows it or in a later one; the same panel each call.
   */
  controls(): ControlPanel {
    if (!this.panel || this.panel.isClosed) this.panel = new ControlPanel(this);
    return this.panel;
  }

  private current(field: ChangeField): number {
    return field === "lrScale" ? this.scale : field === "encoderMaskRatio" ? this.collator.encoderMaskRatio : this.collator.decoderMaskRatio;
  }

  private notify(e: RunEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (err) {
        process.stderr.write(`A trainer listener failed: ${(err as Error).message}\n`);
      }
    }
  }

  /** Apply what is due before step `step` is queued: scheduled changes for it, then the requested ones. */
  private applyChanges(step: number, options: FitOptions, live: LiveReport | null): void {
    const due: { field: ChangeField; value: number; source: string; time?: string }[] = [];
    while (this.scheduled.length && this.scheduled[0].step <= step) {
      const c = this.scheduled.shift()!;
      if (c.step === step) due.push({ field: c.field, value: c.new, source: c.source === "resume" ? "resume" : c.source, time: c.time });
    }
    due.push(...this.requested.splice(0));
    for (const d of due) {
      const old = this.current(d.field);
      if (old === d.value) continue;
      if (d.field === "lrScale") this.scale = d.value;
      else if (d.field === "encoderMaskRatio") this.collator.encoderMaskRatio = d.value;
      else this.collator.decoderMaskRatio = d.value;
      const change: SettingChange = { step, field: d.field, old, new: d.value, source: d.source, ...(d.time ? { time: d.time } : {}) };
      if (this.run && d.source !== "resume") appendSettingsHistory(this.run.dir, change);
      this.emit({ type: "change", ...change }, options, live);
    }
  }

  /** Hooks (probes), between steps. */
  private async runHooks(hooks: TrainerHook[], live: LiveReport | null, options: FitOptions): Promise<void> {
    for (const hook of hooks) {
      const metrics = await hook.run(this);
      this.emit({ type: "eval", step: this.step, metrics }, options, live);
    }
  }

  /** Probe and checkpoint requests, between steps. */
  private async runRequests(live: LiveReport | null, options: FitOptions): Promise<void> {
    if (this.probeRequested) {
      this.probeRequested = false;
      await this.runHooks(this.hooks, live, options);
    }
    if (this.checkpointRequested) {
      this.checkpointRequested = false;
      const where = await this.saveCheckpoint();
      this.notify({ type: "notice", text: `saved ${where}` });
    }
  }

  private labelSettings(): Record<string, unknown> {
    return {
      encoderMaskRatio: this.collator.encoderMaskRatio,
      decoderMaskRatio: this.collator.decoderMaskRatio,
      lr: this.optimizer.lr,
      batchSize: this.options.batchSize,
      ...(this.options.settings ?? {}),
    };
  }

  private makeSchedule(totalSteps: number, warmupSteps?: number): LrSchedule {
    const o = this.options;
    return new LrSchedule({
      lr: this.optimizer.lr,
      totalSteps,
      warmupSteps: warmupSteps ?? o.warmupSteps,
      warmupRatio: o.warmupRatio,
      decay: o.decay,
    });
  }

  /** Every hyperparameter, the seed and the backend: what config.json records. */
  describe(): Record<string, unknown> {
    const o = this.options;
    return {
      model: this.model.config,
      seed: o.seed ?? null,
      dataSeed: this.dataSeed,
      batchSize: o.batchSize,
      maxLength: o.maxLength,
      gradAccumulation: o.gradAccumulation,
      encoderMaskRatio: this.collator.encoderMaskRatio,
      decoderMaskRatio: this.collator.decoderMaskRatio,
      bowLossWeight: this.model.bowLossWeight,
      decoderLossWeight: this.model.decoderLossWeight,
      optimizer: { name: "AdamW", lr: this.optimizer.lr, betas: [this.optimizer.beta1, this.optimizer.beta2], eps: this.optimizer.eps, weightDecay: this.optimizer.weightDecay },
      schedule: this.schedule
        ? { totalSteps: this.schedule.totalSteps, warmupSteps: this.schedule.warmupSteps, warmupRatio: o.warmupSteps !== undefined ? null : (o.warmupRatio ?? 0.1), decay: this.schedule.decay }
        : { warmupRatio: o.warmupRatio ?? 0.1, warmupSteps: o.warmupSteps ?? null, decay: o.decay ?? "linear" },
      maxGradNorm: o.maxGradNorm,
      data: { blocks: o.data.size, tokens: o.data.tokens },
      settings: o.settings ?? {},
      backend: backendInfo(),
    };
  }

  private writeConfig(): void {
    if (!this.run || this.configWritten) return;
    this.run.writeConfig(this.describe());
    this.configWritten = true;
  }

  /** Train. Resolves when the steps are done or the signal stopped it after a step. */
  async fit(options: FitOptions = {}): Promise<FitResult> {
    const o = this.options;
    const signal = currentSignal(options.signal);
    if (options.steps === undefined && options.epochs === undefined) throw new Error("fit needs { steps: N } or { epochs: N }.");
    const steps = options.steps ?? Math.ceil((options.epochs! * this.stream.batchesPerEpoch) / o.gradAccumulation);
    if (!Number.isInteger(steps) || steps <= 0) throw new Error(`fit steps must be a positive whole number, got ${steps}.`);
    const target = this.step + steps;
    if (!this.schedule) this.schedule = this.makeSchedule(o.totalSteps ?? target);
    else if (target > this.schedule.totalSteps) this.schedule = this.makeSchedule(target, this.schedule.warmupSteps);
    this.writeConfig();
    this.series.settings.encoderMaskRatio = this.collator.encoderMaskRatio;
    this.series.settings.decoderMaskRatio = this.collator.decoderMaskRatio;
    const live = options.live === false ? null : new LiveReport(this.chart, this.series, steps, { minIntervalMs: options.liveIntervalMs });

    const started = performance.now();
    let modelMs = 0;
    let tokensSeen = 0;
    let lastLoss: LossValues | null = null;
    let status: FitResult["status"] = "done";
    let checkpoint: string | null = null;
    let taken = 0;
    // On a GPU, steps are queued on the device and read one step behind: step
    // s+1 is queued before step s's losses are awaited (their read was started
    // as step s was queued: see pending), so the GPU never waits for the
    // chart. The update of a non-finite step is skipped on the device (a
    // sticky flag: once a step is bad, no later queued step updates either).
    // On the CPU backends a step is done when it is queued; nothing to overlap.
    const ahead = options.queueAhead ?? (tf.getBackend() === "webgpu" || backendInfo().device === "gpu");
    // What ran before this fit (a probe's top-k, a cell's own ops, another trainer's recorded step) may hold
    // GPU memory that no step of this one can use: it goes back first, so a batch that fits is not refused.
    freeGpuMemory(this.recorder ?? null);
    tf.tidy(() => {
      const yes = tf.scalar(true, "bool");
      if (!copyInPlaceWebGPU(this.healthy, yes)) this.healthy.assign(yes); // in place: a recorded step keeps reading the same flag
    });
    const inflight: PendingStep[] = [];
    const settle = async () => {
      const p = inflight.shift()!;
      const read = await p.read;
      p.values.dispose();
      const values = lossValuesOf(read, p.bow);
      const gradNorm = read[read.length - 2];
      const ok = read[read.length - 1] !== 0;
      trimGpuPool(); // a step's round ends: buffers of shapes it and the step before did not use go back to the GPU
      const deviceError = takeDeviceError();
      if (deviceError && isOutOfMemory(deviceError)) {
        // the device said so after the step was queued (where tfjs could not allocate while queuing, explain() says it)
        throw new TrainingStopped(`The run stopped at step ${p.step}: the GPU ran out of memory at batch size ${this.options.batchSize} × length ${this.options.maxLength} (${deviceError.replace(GPU_OUT_OF_MEMORY, "").replace(/[.\s]+$/, "")})${this.outOfMemoryFix()}.`);
      }
      if (deviceError) {
        const last = this.latestCheckpoint();
        throw new TrainingStopped(
          `The run stopped at step ${p.step}: ${deviceError.replace(/[.\s]+$/, "")}; the weights on the GPU may be damaged, so ${last ? `resume from the last good checkpoint, ${last}, with Trainer.resume` : "start again (this run saved no checkpoint)"}${this.recorder?.replayed ? ", with recordSteps: false if it happens again (every step issued through tfjs rather than replaying recorded ones)" : ""}.`,
        );
      }
      if (!ok && !computesNothing()) { // on Dawn's Null device no value is computed, so there is nothing to guard
        const what = Number.isFinite(values.loss)
          ? `The gradient norm became ${gradNorm} at step ${p.step} (loss ${values.loss})`
          : `Loss became ${values.loss} at step ${p.step} (encoder ${values.encoderLoss}, decoder ${values.decoderLoss})`;
        throw new TrainingStopped(this.stopMessage(what));
      }
      this.step = p.step;
      taken++;
      tokensSeen += p.tokens;
      lastLoss = values;
      const elapsedMs = performance.now() - started;
      const event: StepInfo = {
        type: "step",
        step: p.step,
        epoch: p.epoch,
        ...values,
        lr: p.lr,
        gradNorm,
        tokens: p.tokens,
        tokensPerSec: tokensSeen / (elapsedMs / 1000),
        elapsedMs,
        stepMs: performance.now() - p.started,
        // what a step leaves behind: the queued steps' vectors not counted
        numTensors: tf.memory().numTensors - inflight.length,
        stepInFit: taken,
      };
      this.emit(event, options, live);
    };
    this.fitting = true;
    this.stopRequested = false;
    this.notify({ type: "state", state: this.pauseRequested ? "paused" : "running", step: this.step });
    try {
      let queued = this.step;
      while (queued < target) {
        if (this.pauseRequested && !signal?.aborted && !this.stopRequested) {
          while (inflight.length) await settle();
          await this.runRequests(live, options);
          live?.status("paused");
          await new Promise<void>((resolve) => {
            this.resumeWaiter = resolve;
            signal?.addEventListener("abort", () => resolve(), { once: true });
          });
          this.resumeWaiter = null;
          live?.status("running");
        }
        if (signal?.aborted || this.stopRequested) {
          status = "stopped";
          break;
        }
        this.applyChanges(queued + 1, options, live);
        // The step's batches, from the collating thread where it made them; it then makes the next
        // step's while this one is issued (lib/masking/ahead.ts).
        const made = await this.takeAhead(queued + 1);
        if (made && queued + 1 < target) this.startAhead();
        const t0 = performance.now();
        inflight.push(this.queueStep(queued + 1, made));
        modelMs += performance.now() - t0;
        queued++;
        if (!made && queued < target) this.startAhead();
        // Hooks and checkpoints see the weights after this step: drain first.
        const due = this.hooks.some((h) => h.every > 0 && queued % h.every === 0) || (o.runDir && o.checkpointEvery > 0 && queued % o.checkpointEvery === 0 && queued < target) || this.probeRequested || this.checkpointRequested || this.pauseRequested || this.stopRequested;
        while (inflight.length > (ahead && !due && queued < target ? 1 : 0)) await settle();
        if (inflight.length === 0) {
          await this.runHooks(this.hooks.filter((h) => h.every > 0 && this.step % h.every === 0), live, options);
          if (o.runDir && o.checkpointEvery > 0 && this.step % o.checkpointEvery === 0 && this.step < target) {
            checkpoint = await this.saveCheckpoint();
          }
          await this.runRequests(live, options);
        }
        await new Promise((r) => setImmediate(r)); // let the kernel send output and see interrupts
      }
      while (inflight.length) await settle();
      if (o.runDir && taken > 0) checkpoint = await this.saveCheckpoint();
    } catch (err) {
      for (const p of inflight) p.values.dispose();
      trimGpuPool(true); // the pooled buffers go back to the GPU, so a run started again (smaller) has the memory
      live?.finish(err instanceof Error ? err.message.split(";")[0] : "error");
      this.fitting = false;
      this.notify({ type: "state", state: "error", step: this.step });
      throw this.explain(err);
    }
    this.fitting = false;
    this.stopRequested = false;
    live?.finish(status);
    this.notify({ type: "state", state: status, step: this.step });
    return { status, stepsTaken: taken, step: this.step, lastLoss, modelMs, totalMs: performance.now() - started, checkpoint };
  }

  /** The sentence that stops a run on a non-finite step: what happened, and the last good checkpoint. */
  private stopMessage(what: string): string {
    const last = this.latestCheckpoint();
    return `${what}; no update was applied${last ? `, and the last good checkpoint is ${last}` : ""}. Lower lr (now ${this.optimizer.lr}) or check the data.`;
  }

  /**
   * Queue optimizer step `step` on the device: forward and backward over
   * gradAccumulation micro-batches, clipping, and the update guarded by the
   * step's finiteness. Nothing is read back.
   */
  private queueStep(step: number, made: MicroBatch[] | null = null): PendingStep {
    const started = performance.now();
    const lr = this.schedule!.at(step - 1) * this.scale;
    const recorder = this.stepRecorder();
    if (!recorder) {
      const { losses, grads, tokens } = this.accumulate(this.microBatches(step));
      const epoch = this.stream.position.epoch;
      const { norm, ok } = this.optimizer.clipAndApply(grads, { maxNorm: this.options.maxGradNorm, lr, guard: finiteStepGuard(this.healthy, losses.loss) });
      return pending(step, epoch, losses, norm, ok!, tokens, lr, started);
    }
    // A recorded step: every host value it uploads is made first (the batches, the dropout
    // seeds, AdamW's scalars), then the step runs through tfjs (and is recorded) or is replayed.
    const micro = made ?? [...this.microBatches(step)];
    const epoch = this.stream.position.epoch;
    const hyper = this.optimizer.advance(lr);
    const inputs = [...micro.flatMap((m) => [...this.model.stepInputs(m.batch), ...(m.seeds ? [m.seeds.base] : [])]), hyper.device];
    const key = JSON.stringify([inputs.map((a) => a.byteLength), this.model.decoderLossWeight, this.model.bowLossWeight, this.options.maxGradNorm, this.optimizer.weightDecay]);
    // the loss parts the step computes, in a fixed order: the step's outputs, then the norm and the flag.
    // MLM-only's decoder parts are NaN constants made on the host, not outputs: a replay's outputs are
    // on the GPU (with them, every MLM-only step was refused and ran through tfjs).
    const decoder = this.model.decoderLossWeight > 0;
    const names: (keyof LossTensors)[] = ["loss", "encoderLoss", ...(decoder ? ["decoderLoss" as const] : []), "encoderAccuracy", ...(decoder ? ["decoderAccuracy" as const] : []), ...(this.model.bowLossWeight > 0 ? ["bowLoss" as const] : [])];
    const out = recorder.run(
      key,
      inputs,
      () => [...this.model.weights.values(), ...this.optimizer.stateTensors(), this.healthy],
      () => {
        const { losses, grads } = this.accumulate(micro);
        const { norm, ok } = this.optimizer.clipAndApply(grads, { maxNorm: this.options.maxGradNorm, lr, guard: finiteStepGuard(this.healthy, losses.loss), hyper });
        if (!decoder) tf.dispose([losses.decoderLoss, losses.decoderAccuracy]);
        return [...names.map((n) => losses[n]!), norm, ok!];
      },
    );
    const losses = Object.fromEntries(names.map((n, i) => [n, out[i]])) as unknown as LossTensors;
    if (!decoder) [losses.decoderLoss, losses.decoderAccuracy] = [tf.scalar(NaN), tf.scalar(NaN)];
    const tokens = micro.reduce((a, m) => a + m.batch.lengths.reduce((x, y) => x + y, 0), 0);
    return pending(step, epoch, losses, out[names.length] as tf.Scalar, out[names.length + 1] as tf.Scalar, tokens, lr, started);
  }

  /** The recorder, on webgpu with recordSteps; the collator then makes batches of one shape. */
  private stepRecorder(): StepRecorder | null {
    if (this.recorder === undefined) {
      this.recorder = tf.getBackend() === "webgpu" && this.options.recordSteps !== false ? new StepRecorder({ replay: this.options.recordSteps !== "tfjs" }) : null;
      if (this.recorder) this.collator.staticShapes = true;
    }
    return this.recorder;
  }

  /**
   * Where a training step's GPU time goes: every dispatch of one step timed
   * on the GPU, grouped by kernel and by kind of work (`formatProfile` makes
   * it a table). The step is a real one, as fit's are: it updates the
   * weights and counts in the schedule. Needs webgpu with recorded steps (the
   * default there) and an adapter with timestamp queries; where no step is
   * replayed yet, the steps it takes to record one (at most 4) run first,
   * through tfjs, and count too. `profile.step` is the step timed.
   */
  async profile(): Promise<StepProfile> {
    const recorder = tf.getBackend() === "webgpu" ? this.stepRecorder() : null;
    if (!recorder) throw new Error(`Trainer.profile times a step's GPU dispatches on webgpu with recorded steps; this trainer runs on ${tf.getBackend()}${tf.getBackend() === "webgpu" ? " with recordSteps: false" : ""} (use backend.use("webgpu") and the default recordSteps).`);
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    if (!device.features.has("timestamp-query")) throw new Error("Trainer.profile needs timestamp queries, and this WebGPU adapter does not offer them (retromae doctor names the adapter).");
    for (let tries = 0; tries < 5; tries++) {
      recorder.profileNext();
      await this.fit({ steps: 1, live: false });
      const times = recorder.takeProfile();
      if (times) {
        const wg = backendInfo().webgpu;
        if (wg?.backend === "null") {
          // Dawn's Null device runs nothing, and its timestamps are whatever its buffers held
          return summarizeProfile((await times).map((t) => ({ ...t, ms: 0 })), this.step, "Dawn's Null backend (it runs no GPU work: no times)");
        }
        const adapter = wg ? `${wg.description || wg.vendor || "an adapter"}${wg.software ? " (a software adapter: not GPU figures)" : ""}` : "webgpu";
        return summarizeProfile(await times, this.step, adapter);
      }
    }
    throw new Error(`Trainer.profile ran 5 steps and none was replayed, so none could be timed: ${recorder.refused ?? "recording was refused"}.`);
  }

  /** What recorded steps did: steps replayed and run through tfjs, dispatches per replayed step, and why replaying was refused (null if it was not). */
  get recordedSteps(): RecordedSteps | null {
    return this.recorder?.counts ?? null;
  }

  /**
   * Steps whose batches were made on the collating thread while the step
   * before them was issued (webgpu's recorded steps; lib/masking/ahead.ts),
   * and why none are, where the thread is off.
   */
  get collatedAhead(): { steps: number; off: string | null } {
    return { steps: this.aheadSteps, off: collateAhead().disabledReason };
  }

  /**
   * The micro-batches of one optimizer step, each collated when asked for
   * (so on the CPU backends the generator's draws interleave with dropout's
   * as they always did), with its dropout seeds where the backend draws
   * them on the device: drawn right after the batch, as many as the CPU
   * backends' dropout draws in its forward, so the next batch's masks are
   * the same on every backend.
   */
  private *microBatches(step: number): Generator<MicroBatch> {
    for (let i = 0; i < this.options.gradAccumulation; i++) {
      const batch = this.collator.collate(this.stream.next());
      this.onBatch?.(batch, step);
      yield { batch, seeds: DropoutSeeds.forStep(this.rng, this.model.dropoutCalls()) };
    }
  }

  /**
   * Everything the next step's batches depend on (the generator's state, the
   * data position, the ratios and shapes, the dropout seeds drawn after each
   * batch), or null where they are not made ahead: off webgpu's recorded
   * steps (there dropout draws from the generator in the forward), or where
   * the thread would not make what this one makes: a collator given another
   * generator, a generator or collator of a subclass, or a collate replaced
   * on the object (the thread runs RetroMAECollator's own).
   */
  private aheadKey(): string | null {
    const c = this.collator;
    if (!this.recorder || !DropoutSeeds.drawn() || c.rng !== this.rng) return null;
    if (Object.getPrototypeOf(c) !== RetroMAECollator.prototype || Object.getPrototypeOf(this.rng) !== Rng.prototype) return null;
    if (["collate", "sequence"].some((m) => Object.prototype.hasOwnProperty.call(c, m))) return null;
    const o = this.options;
    return JSON.stringify([this.rng.getState(), this.stream.position, this.stream.corpus.size, o.gradAccumulation, this.model.dropoutCalls(), c.encoderMaskRatio, c.decoderMaskRatio, c.staticShapes, c.maxLength, c.vocabSize]);
  }

  /** Start making the next step's batches on the collating thread (lib/masking/ahead.ts). */
  private startAhead(): void {
    const key = this.aheadKey();
    const ahead = collateAhead();
    if (key === null || !ahead.enabled) return;
    const at = this.stream.position;
    const examples = Array.from({ length: this.options.gradAccumulation }, () => this.stream.next());
    this.aheadPosition = this.stream.position;
    this.stream.position = at;
    const c = this.collator;
    const options = { maxLength: c.maxLength, vocabSize: c.vocabSize, staticShapes: c.staticShapes, encoderMaskRatio: c.encoderMaskRatio, decoderMaskRatio: c.decoderMaskRatio };
    ahead.start(this, key, { tokenizer: c.tokenizer, examples, rng: this.rng.getState(), options, seedCalls: this.model.dropoutCalls() });
  }

  /**
   * The next step's micro-batches from the collating thread, if it made them
   * from what this thread would make them from; the generator and the data
   * then move on as collating them here would have moved them.
   */
  private async takeAhead(step: number): Promise<MicroBatch[] | null> {
    const made = await collateAhead().take(this, this.aheadKey());
    if (!made) return null;
    this.aheadSteps++;
    this.rng.setState(made.rng);
    this.stream.position = this.aheadPosition!;
    for (const batch of made.batches) this.onBatch?.(batch, step);
    return made.batches.map((batch, i) => ({ batch, seeds: new DropoutSeeds(made.seeds![i]) }));
  }

  /** Forward and backward over gradAccumulation micro-batches; averaged gradients and loss parts, on the device. */
  private accumulate(micro: Iterable<MicroBatch>): { losses: LossTensors; grads: Map<string, tf.Tensor>; tokens: number } {
    const k = this.options.gradAccumulation;
    let sum: Map<string, tf.Tensor> | null = null;
    let lossSum: LossTensors | null = null;
    let tokens = 0;
    for (const { batch, seeds } of micro) {
      tokens += batch.lengths.reduce((a, b) => a + b, 0);
      const { grads, losses } = this.model.gradients(batch, { training: true, rng: this.rng, seeds });
      const counted = seeds ? this.model.dropoutCalls() : 0;
      if (seeds && seeds.callsMade !== counted) {
        tf.dispose([...grads.values(), ...Object.values(losses)]);
        throw new Error(`The forward made ${seeds.callsMade} dropout calls where RetroMAE.dropoutCalls() counts ${counted}; update dropoutCalls to the model's structure (a bug in this package).`);
      }
      sum = sum === null ? grads : addInto(sum, grads);
      lossSum = lossSum === null ? losses : fromEntries(addInto(entries(lossSum), entries(losses)));
    }
    if (k === 1) return { losses: lossSum!, grads: sum!, tokens };
    return { losses: fromEntries(scaleAll(entries(lossSum!), 1 / k)), grads: scaleAll(sum!, 1 / k), tokens };
  }

  private emit(e: TrainerEvent, options: FitOptions, live: LiveReport | null): void {
    if (e.type === "step" && this.run) {
      const { type: _type, ...row } = e;
      this.run.appendMetrics(row);
    }
    if (e.type === "eval" && this.run) this.run.appendMetrics({ step: e.step, eval: e.metrics });
    if (e.type === "change" && this.run) {
      const { type: _type, step, ...change } = e;
      this.run.appendMetrics({ step, change });
    }
    live?.push(e);
    if (!live) this.series.add(e);
    options.onEvent?.(e);
    if (this.listeners.size) {
      if (e.type === "step") this.notify({ type: "step", step: e.step, loss: e.loss, encoderLoss: e.encoderLoss, decoderLoss: e.decoderLoss, lr: e.lr });
      else this.notify(e);
    }
  }

  private explain(err: unknown): Error {
    if (err instanceof TrainingStopped || err instanceof DeviceFailure) return err; // a hook's probe says what failed and what to change
    const msg = err instanceof Error ? err.message : String(err);
    // What the device recorded beside a thrown error is the same failure: taken here, so that a run
    // started again (with a smaller batch) does not stop at its first step on this one's error.
    const deviceError = takeDeviceError();
    if (isOutOfMemory(msg) || (deviceError !== null && isOutOfMemory(deviceError))) {
      return new Error(`The ${tf.getBackend()} backend ran out of memory at batch size ${this.options.batchSize} × length ${this.options.maxLength}${this.outOfMemoryFix()}.`);
    }
    return err instanceof Error ? err : new Error(msg);
  }

  /** What to change after running out of memory (from "; lower batchSize"), and on a GPU where to start again. */
  private outOfMemoryFix(): string {
    const b = this.options.batchSize;
    // on a GPU, steps are queued ahead and part of the failed one may have run: the weights there are suspect
    const last = this.latestCheckpoint();
    const restart = tf.getBackend() === "webgpu" ? `, and start again ${last ? `from the last good checkpoint, ${last}, with Trainer.resume` : "(this run saved no checkpoint)"}: the weights on the GPU may be damaged` : "";
    return `; lower batchSize (e.g. ${Math.max(1, Math.floor(b / 2))}) and raise gradAccumulation to keep the effective batch, or lower maxLength${restart}`;
  }

  /** Checkpoint folders in the run directory, oldest first. */
  checkpoints(): string[] {
    return this.run?.checkpoints() ?? [];
  }

  latestCheckpoint(): string | null {
    return this.run?.latest() ?? null;
  }

  /**
   * Save model, optimizer moments and trainer state as runDir/checkpoint-STEP.
   * The folder is written under a temporary name and renamed, so a crash
   * never leaves a half-written checkpoint; older ones beyond keepLast go.
   */
  async saveCheckpoint(): Promise<string> {
    if (!this.run) throw new Error("This trainer has no runDir; pass { runDir } to save checkpoints.");
    const { tmp, commit } = this.run.beginCheckpoint(this.step);
    await saveCheckpoint(this.model, tmp, {
      vocab: this.tokenizer.vocab,
      retromae: { encoder_mask_ratio: this.collator.encoderMaskRatio, decoder_mask_ratio: this.collator.decoderMaskRatio, seed: this.options.seed ?? null, step: this.step },
    });
    const shapes = new Map([...this.model.weights].map(([name, w]) => [name, w.shape]));
    writeTrainingState(tmp, await this.optimizer.getState(), shapes, {
      step: this.step,
      rng: this.rng.getState(),
      dataSeed: this.dataSeed,
      position: this.stream.position,
      totalSteps: this.schedule?.totalSteps ?? null,
      warmupSteps: this.schedule?.warmupSteps ?? null,
      options: this.serializableOptions(),
    });
    const final = commit();
    this.run.prune(this.options.keepLast);
    return final;
  }

  private serializableOptions(): Record<string, unknown> {
    const o = this.options;
    return {
      seed: o.seed,
      batchSize: o.batchSize,
      maxLength: o.maxLength,
      encoderMaskRatio: this.collator.encoderMaskRatio,
      decoderMaskRatio: this.collator.decoderMaskRatio,
      gradAccumulation: o.gradAccumulation,
      lr: this.optimizer.lr,
      weightDecay: this.optimizer.weightDecay,
      betas: [this.optimizer.beta1, this.optimizer.beta2],
      eps: this.optimizer.eps,
      warmupRatio: o.warmupRatio,
      warmupSteps: o.warmupSteps,
      decay: o.decay,
      lrScale: this.scale,
      maxGradNorm: o.maxGradNorm,
      checkpointEvery: o.checkpointEvery,
      keepLast: o.keepLast,
      bowLossWeight: this.model.bowLossWeight,
      decoderLossWeight: this.model.decoderLossWeight,
      settings: o.settings,
    };
  }

  /**
   * Continue a run from a checkpoint folder, or from a run directory's
   * latest checkpoint: model weights, optimizer moments, schedule step, the
   * generator's state and the data position. The corpus must be the same.
   */
  static resume(location: string, args: { tokenizer: BertTokenizer; data: PackedCorpus } & Partial<TrainerOptions>): Trainer {
    const ckpt = resolveCheckpoint(location);
    const { state, optimizer } = readTrainingState(ckpt);
    const { model } = loadCheckpoint(ckpt);
    const { bowLossWeight, decoderLossWeight, lrScale: _lrScale, ...saved } = state.options as Partial<TrainerOptions> & { bowLossWeight?: number; decoderLossWeight?: number; lrScale?: number };
    model.bowLossWeight = bowLossWeight ?? 0;
    model.decoderLossWeight = decoderLossWeight ?? 1;
    const runDir = args.runDir ?? path.dirname(ckpt);
    // the changes made after this checkpoint are applied again at their steps (those before are in its settings)
    const later = readSettingsHistory(path.dirname(ckpt)).filter((c) => c.step > state.step).map((c) => ({ ...c, source: "resume" }));
    const trainer = new Trainer({ ...saved, ...args, model, runDir, rng: new Rng(0), changes: [...later, ...(args.changes ?? [])] } as TrainerOptions, { state });
    trainer.optimizer.setState(optimizer);
    return trainer;
  }

  dispose(): void {
    this.panel?.close();
    collateAhead().forget(this);
    this.recorder?.dispose();
    this.optimizer.dispose();
    this.healthy.dispose();
  }
}
