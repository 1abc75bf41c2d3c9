/**
 * AdamW (Loshchilov & Hutter), with weight decay decoupled exactly as
 * PyTorch's torch.optim.AdamW:
 *
 *   p ← p − lr·wd·p
 *   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
 *   p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)
 *
 * No decay on biases and LayerNorm weights, as the HF Trainer groups them.
 * Plus global-norm gradient clipping as torch.nn.utils.clip_grad_norm_.
 */
import * as tf from "../engine/tf";
import { adamwInPlace } from "../engine/native";
import { adamwInPlaceWebGPU, AdamWUpdate, copyInPlaceWebGPU, globalNormWebGPU } from "../engine/webgpu/optimizer";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Names that get no weight decay. Default: biases and LayerNorm weights. */
  noDecay?: (name: string) => boolean;
}

export const defaultNoDecay = (name: string): boolean => name.endsWith(".bias") || name.includes("LayerNorm.") || name.endsWith("cls.predictions.bias");

export interface AdamWState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** One update's scalars, at the step count it was taken at (see AdamW.advance). */
export interface AdamWHyper {
  lr: number;
  /** lr / (1 − β1ᵗ) */
  stepSize: number;
  /** √(1 − β2ᵗ) */
  sqrtBc2: number;
  /** [1 − lr·weightDecay, stepSize, sqrtBc2] as float32: what the webgpu update reads from the device (a recorded step's input). */
  device: Float32Array;
}

/**
 * The guard of a step whose update must not apply unless it is finite (for
 * clipAndApply): the flag "loss and gradient norm finite, and every step
 * before too", decided on the device, so a GPU never waits for a read to
 * keep that promise. `healthy` (a bool scalar variable, true at the start)
 * keeps "every step before", updated in place where it can be, so a
 * recorded step keeps reading the same flag.
 */
export function finiteStepGuard(healthy: tf.Variable, loss: tf.Scalar): (norm: tf.Scalar) => tf.Scalar {
  return (norm) => {
    const ok = tf.tidy(() => tf.logicalAnd(tf.logicalAnd(tf.isFinite(loss), tf.isFinite(norm)), healthy)) as tf.Scalar;
    if (!copyInPlaceWebGPU(healthy, ok)) healthy.assign(ok);
    return ok;
  };
}

export class AdamW {
  readonly params: Map<string, tf.Variable>;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly decayMap: Map<string, boolean>;
  private m = new Map<string, tf.Variable>();
  private v = new Map<string, tf.Variable>();
  /** Updates taken so far (t in the bias corrections). */
  step = 0;

  constructor(params: Map<string, tf.Variable>, options: AdamWOptions = {}) {
    this.params = params;
    this.lr = options.lr ?? 1e-4;
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    for (const [k, val] of [["lr", this.lr], ["eps", this.eps], ["weightDecay", this.weightDecay]] as const) {
      if (!(val >= 0) || !Number.isFinite(val)) throw new Error(`AdamW ${k} must be a finite number >= 0, got ${val}.`);
    }
    for (const b of [this.beta1, this.beta2]) {
      if (!(b >= 0 && b < 1)) throw new Error(`AdamW betas must be in [0, 1), got [${this.beta1}, ${this.beta2}].`);
    }
    const noDecay = options.noDecay ?? defaultNoDecay;
    this.decayMap = new Map([...params.keys()].map((k) => [k, !noDecay(k)]));
    const zeros = (p: tf.Variable) => {
      const z = tf.zerosLike(p);
      const v = tf.variable(z, false);
      z.dispose(); // the variable keeps the data
      return v;
    };
    for (const [name, p] of params) {
      this.m.set(name, zeros(p));
      this.v.set(name, zeros(p));
    }
  }

  /** Whether a weight gets weight decay. */
  decays(name: string): boolean {
    return this.decayMap.get(name) ?? false;
  }

  /**
   * Apply one update with `grads` (HF names) at learning rate `lr` (default:
   * this.lr). With `ok` (a bool scalar on the device), the update is applied
   * only where it is true, decided on the device: a GPU never waits for a
   * read. The step count advances either way; the caller that finds `ok`
   * false later stops the run (see Trainer). With `coef` (a [1] tensor on the
   * device: clipping's coefficient), each gradient is multiplied by it first.
   */
  apply(grads: Map<string, tf.Tensor>, lr = this.lr, ok?: tf.Scalar, coef?: tf.Tensor, hyper?: AdamWHyper): void {
    // The native backend computes on the CPU: the flag is read there at no wait, and a
    // false step does nothing. Elsewhere the update is guarded on the device.
    const readFlag = ok !== undefined && tf.getBackend() === "native";
    const h = hyper ?? this.advance(lr);
    lr = h.lr;
    if (readFlag && !ok.dataSync()[0]) return;
    const guarded = ok && !readFlag ? ok : null;
    const { stepSize, sqrtBc2 } = h;
    tf.tidy(() => {
      const todo: (AdamWUpdate & { p: tf.Variable; m: tf.Variable; v: tf.Variable })[] = [];
      for (const [name, p] of this.params) {
        const g = grads.get(name);
        if (g) todo.push({ p, m: this.m.get(name)!, v: this.v.get(name)!, g, decays: this.decayMap.get(name)! && this.weightDecay > 0 });
      }
      const step = (decays: boolean) => ({ beta1: this.beta1, beta2: this.beta2, eps: this.eps, decay: decays ? 1 - lr * this.weightDecay : 1, stepSize, sqrtBc2 });
      // the native backend does the same arithmetic in one in-place pass per weight
      const left = guarded || coef ? todo : todo.filter((x) => !adamwInPlace(x.p, x.m, x.v, x.g, step(x.decays)));
      // webgpu: several weights per dispatch, the step's scalars read from the device (its dispatches are the same every step)
      const device = tf.getBackend() === "webgpu" ? tf.tensor1d(h.device) : null;
      const done = adamwInPlaceWebGPU(left, step(true), guarded, coef ?? null, device);
      left.forEach(({ p, m, v, g: g0, decays }, i) => {
        if (done[i]) return;
        const g = coef ? tf.mul(g0, coef) : g0;
        let w: tf.Tensor = p;
        if (decays) w = tf.mul(w, 1 - lr * this.weightDecay);
        const m1 = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const v1 = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const denom = tf.add(tf.div(tf.sqrt(v1), sqrtBc2), this.eps);
        const p1 = tf.sub(w, tf.mul(tf.div(m1, denom), stepSize));
        const keep = (next: tf.Tensor, old: tf.Tensor) => (guarded ? tf.where(guarded, next, old) : next);
        m.assign(keep(m1, m));
        v.assign(keep(v1, v));
        p.assign(keep(p1, p));
      });
    });
  }

  /**
   * Count one more update and give its scalars at learning rate `lr`. apply
   * calls it, unless given the result (a trainer that prepares a step's
   * inputs before the step: lib/engine/webgpu/replay.ts).
   */
  advance(lr = this.lr): AdamWHyper {
    this.step += 1;
    const t = this.step;
    const stepSize = lr / (1 - this.beta1 ** t);
    const sqrtBc2 = Math.sqrt(1 - this.beta2 ** t);
    return { lr, stepSize, sqrtBc2, device: Float32Array.of(1 - lr * this.weightDecay, stepSize, sqrtBc2) };
  }

  /**
   * One step as a trainer takes it: clip `grads` to a global norm of
   * `maxNorm` (as clipGradNorm; ≤ 0: no clipping), ask `guard(norm)` for the
   * step flag (a bool scalar on the device; e.g. loss and norm finite), and
   * apply the update where it is true. Takes the gradients (disposes them).
   * Returns the norm before clipping and the flag; the caller disposes both.
   *
   * On webgpu the norm, the coefficient and each weight's update are a few
   * dispatches that write in place (lib/engine/webgpu/optimizer.ts): about
   * k/3 + k/15 + 1 for k weights where the adapter binds 16 storage buffers
   * (k + k/7 + 1 at WebGPU's minimum of 8), where clipGradNorm and apply
   * compose some 6k.
   * Elsewhere it is clipGradNorm then apply, as before.
   */
  clipAndApply(grads: Map<string, tf.Tensor>, options: { maxNorm: number; lr?: number; guard?: (norm: tf.Scalar) => tf.Scalar; hyper?: AdamWHyper }): { norm: tf.Scalar; ok: tf.Scalar | null } {
    // on webgpu the coefficient stays on the device and AdamW applies it; elsewhere clipGradNorm scales the gradients
    const fused = globalNormWebGPU([...grads.values()], options.maxNorm);
    const { grads: clipped, norm } = fused ? { grads, norm: fused.norm } : clipGradNorm(grads, options.maxNorm);
    const coef = fused && options.maxNorm > 0 ? fused.coef : undefined;
    const ok = options.guard ? options.guard(norm) : null;
    this.apply(clipped, options.lr ?? this.lr, ok ?? undefined, coef, options.hyper);
    tf.dispose([...(fused ? [fused.coef] : []), ...clipped.values()]);
    return { norm, ok };
  }

  /** The moment tensors (m, then v), as they are on the device now. */
  stateTensors(): tf.Tensor[] {
    return [...this.m.values(), ...this.v.values()];
  }

  /** The moments, read from the device (awaited). */
  async getState(): Promise<AdamWState> {
    const read = async (src: Map<string, tf.Variable>) => {
      const out = new Map<string, Float32Array>();
      for (const [k, x] of src) out.set(k, (await x.data()) as Float32Array);
      return out;
    };
    return { step: this.step, m: await read(this.m), v: await read(this.v) };
  }

  setState(state: AdamWState): void {
    for (const [which, src] of [["m", state.m], ["v", state.v]] as const) {
      const dst = which === "m" ? this.m : this.v;
      for (const [name, x] of dst) {
        const data = src.get(name);
        if (!data || data.length !== x.size) {
          throw new Error(`Optimizer state has no matching "${which}" for weight "${name}"; the checkpoint belongs to another model.`);
        }
        tf.tidy(() => x.assign(tf.tensor(data, x.shape)));
      }
    }
    this.step = state.step;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/**
 * Scale gradients so their global L2 norm is at most maxNorm, as
 * torch.nn.utils.clip_grad_norm_ (coefficient maxNorm / (norm + 1e-6),
 * capped at 1), computed on the device: nothing is read back. Returns the
 * new gradients (the old ones are disposed) and the norm before clipping, a
 * scalar the caller reads (or disposes) when it likes. A coefficient of 1
 * leaves each gradient's bits as they were; maxNorm ≤ 0 turns clipping off.
 */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { grads: Map<string, tf.Tensor>; norm: tf.Scalar } {
  const norm = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))))) as tf.Scalar;
  if (!(maxNorm > 0)) return { grads, norm };
  const coef = tf.tidy(() => tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6))));
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) {
    out.set(k, tf.mul(g, coef));
    g.dispose();
  }
  coef.dispose();
  return { grads: out, norm };
}
