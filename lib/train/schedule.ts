/**
 * Learning-rate schedules as the HF Trainer's: linear warmup from 0, then
 * linear or cosine decay to 0 at the last step.
 */
export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  totalSteps: number;
  /** Warmup as a fraction of totalSteps (default 0.1) ... */
  warmupRatio?: number;
  /** ... or as a number of steps (wins over warmupRatio). */
  warmupSteps?: number;
  decay?: "linear" | "cosine" | "constant";
}

export class LrSchedule {
  readonly lr: number;
  readonly totalSteps: number;
  readonly warmupSteps: number;
  readonly decay: "linear" | "cosine" | "constant";

  constructor(o: ScheduleOptions) {
    if (!Number.isInteger(o.totalSteps) || o.totalSteps <= 0) throw new Error(`totalSteps must be a positive whole number, got ${o.totalSteps}.`);
    if (!(o.lr >= 0)) throw new Error(`lr must be >= 0, got ${o.lr}.`);
    const ratio = o.warmupRatio ?? 0.1;
    if (!(ratio >= 0 && ratio <= 1)) throw new Error(`warmupRatio must be in [0, 1], got ${ratio}.`);
    this.lr = o.lr;
    this.totalSteps = o.totalSteps;
    // HF: math.ceil(num_training_steps * warmup_ratio)
    this.warmupSteps = o.warmupSteps ?? Math.ceil(o.totalSteps * ratio);
    if (!Number.isInteger(this.warmupSteps) || this.warmupSteps < 0) throw new Error(`warmupSteps must be a whole number >= 0, got ${o.warmupSteps}.`);
    this.decay = o.decay ?? "linear";
  }

  /** Learning rate for the update with index `step` (0-based), as LambdaLR(last_epoch=step). */
  at(step: number): number {
    if (step < this.warmupSteps) return (this.lr * step) / Math.max(1, this.warmupSteps);
    if (this.decay === "constant") return this.lr;
    const progress = (step - this.warmupSteps) / Math.max(1, this.totalSteps - this.warmupSteps);
    if (this.decay === "linear") return this.lr * Math.max(0, 1 - progress);
    return this.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  }
}
