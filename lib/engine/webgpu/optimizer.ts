/// <reference types="@webgpu/types" />
/**
 * The optimizer step on webgpu in few dispatches.
 *
 * A tfjs-webgpu program writes one output, so through `runWebGPUProgram`
 * AdamW took three passes per weight (m, v, then the weight), and clipping
 * three more (square, sum, scale), plus the sums of the norms: about six
 * dispatches per weight, some 360 of a tiny model's 790 per training step.
 * On a GPU each dispatch costs the host tens of microseconds (tfjs's
 * bookkeeping, a bind group, a uniform buffer), which is most of a small
 * model's step. Here the shaders bind the buffers they write as
 * read_write and are recorded into tfjs's own command encoder, in order with
 * its programs:
 *
 * - the sum of squares of every gradient, several gradients per dispatch
 *   (as many as the adapter lets one shader bind), each gradient's
 *   elements split among a fixed number of workgroups that write one
 *   partial sum each;
 * - one dispatch that adds the partials in a fixed order: the global norm
 *   and clip_grad_norm_'s coefficient min(1, maxNorm / (norm + 1e-6));
 * - AdamW in place, several weights per dispatch (as many as the adapter
 *   lets one shader bind: three of them with 16 storage buffers, one with
 *   WebGPU's minimum of 8): the gradient times the coefficient, m, v and
 *   the weight, skipped on the device where the step flag is false.
 *
 * About k/3 + k/15 + 1 dispatches for k weights on an adapter that binds 16
 * storage buffers (k + k/7 + 1 at WebGPU's minimum of 8), where the
 * composition took about 6k. Every sum has a fixed order (the partials' split depends on the
 * sizes only), so the bits do not change from run to run, nor with the
 * adapter's limits.
 *
 * This reaches into tfjs-backend-webgpu 4.22's backend (its command
 * encoder, tensor map and buffer pool; the package is pinned), in the same
 * way its own `recordAndSubmit` does.
 */
import * as tf from "../tf";
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { AdamWStep } from "../native";
import { ROW_SUM_WGSL } from "./program";
import { deviceTensor, GROUP_INDEX, rawBackend, record } from "./raw";

const WG = 256;

/**
 * The workgroup index (GROUP_INDEX), then `j`, the tensor whose run of
 * workgroups holds it, and `run` (its uniform entry: .y its first group,
 * .z its groups); a workgroup past the last run returns.
 */
const RUN_OF_GROUP = (arity: number) => `${GROUP_INDEX}
  var j = 0u;
  for (var k = 1u; k < ${arity}u; k = k + 1u) { if (group >= u.runs[k].y) { j = k; } }
  let run = u.runs[j];
  if (group >= run.y + run.z) { return; }`;

/** Workgroups that share a gradient's sum of squares: about 8 elements per invocation, at most 256 groups. */
export function partialsFor(n: number): number {
  return Math.max(1, Math.min(256, Math.ceil(n / (WG * 8))));
}

/**
 * Σ g² of `arity` gradients, each over its own run of workgroups: group w of
 * gradient j writes out[base_j + w], its invocations striding the gradient
 * by the run's width. Uniform entry j: (n, first group, groups, base).
 */
function sumSquaresShader(arity: number): string {
  const inputs = Array.from({ length: arity }, (_, j) => `@group(0) @binding(${j + 1}) var<storage, read> g${j} : array<f32>;`).join("\n");
  const cases = Array.from({ length: arity }, (_, j) => `    case ${j}u: { return g${j}[i]; }`).join("\n");
  return `
@group(0) @binding(0) var<storage, read_write> out : array<f32>;
${inputs}
struct Uniforms { runs : array<vec4<u32>, ${arity}> };
@group(0) @binding(${arity + 1}) var<uniform> u : Uniforms;
${ROW_SUM_WGSL(WG)}
fn load(j : u32, i : u32) -> f32 {
  switch j {
${cases}
    default: { return 0.0; }
  }
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  ${RUN_OF_GROUP(arity)}
  let w = group - run.y;
  var acc = 0.0;
  for (var i = w * ${WG}u + tid; i < run.x; i = i + run.z * ${WG}u) {
    let x = load(j, i);
    acc = acc + x * x;
  }
  let total = rowReduce(i32(tid), acc, false);
  if (tid == 0u) { out[run.w + w] = total; }
}`;
}

/** The partials added in a fixed order: norm[0] = √Σ, coef[0] = min(1, maxNorm / (norm + 1e-6)) (1 with maxNorm ≤ 0). */
const NORM_SHADER = `
@group(0) @binding(0) var<storage, read_write> norm : array<f32>;
@group(0) @binding(1) var<storage, read_write> coef : array<f32>;
@group(0) @binding(2) var<storage, read> partials : array<f32>;
struct Uniforms { count : u32, maxNorm : f32 };
@group(0) @binding(3) var<uniform> u : Uniforms;
${ROW_SUM_WGSL(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) tid : u32) {
  var acc = 0.0;
  for (var i = tid; i < u.count; i = i + ${WG}u) { acc = acc + partials[i]; }
  let total = rowReduce(i32(tid), acc, false);
  if (tid == 0u) {
    let n = sqrt(total);
    norm[0] = n;
    coef[0] = select(1.0, min(1.0, u.maxNorm / (n + 1e-6)), u.maxNorm > 0.0);
  }
}`;

/**
 * The global L2 norm of `grads` (a scalar) and clip_grad_norm_'s
 * coefficient for `maxNorm` (a [1] tensor; 1 where maxNorm ≤ 0), on the
 * device. Null off webgpu. One shader binds as many gradients as the
 * device's maxStorageBuffersPerShaderStage allows beside its output (at most 16).
 */
export function globalNormWebGPU(grads: tf.Tensor[], maxNorm: number): { norm: tf.Scalar; coef: tf.Tensor } | null {
  const b = rawBackend();
  const maxInputs = b ? b.device.limits.maxStorageBuffersPerShaderStage - 1 : 0;
  if (!b || grads.some((g) => g.dtype !== "float32") || maxInputs < 1) return null;
  const live = grads.filter((g) => g.size > 0);
  const counts = live.map((g) => partialsFor(g.size));
  const total = counts.reduce((a, c) => a + c, 0);
  const partials = deviceTensor(b, [Math.max(1, total)]);
  const arityMax = Math.min(maxInputs, 16);
  let base = 0;
  for (let start = 0; start < live.length; start += arityMax) {
    const chunk = live.slice(start, start + arityMax);
    const uniforms = new Uint32Array(chunk.length * 4);
    let first = 0;
    chunk.forEach((g, j) => {
      const groups = counts[start + j];
      uniforms.set([g.size, first, groups, base], j * 4);
      first += groups;
      base += groups;
    });
    record(b, `retromaeSumSquares_${chunk.length}`, () => sumSquaresShader(chunk.length), [partials as unknown as TensorInfo, ...(chunk as unknown as TensorInfo[])], uniforms.buffer, first);
  }
  const norm = deviceTensor(b, []) as tf.Scalar;
  const coef = deviceTensor(b, [1]);
  const u = new ArrayBuffer(8);
  new Uint32Array(u, 0, 1)[0] = total;
  new Float32Array(u, 4, 1)[0] = maxNorm;
  record(b, "retromaeGlobalNorm", () => NORM_SHADER, [norm, coef, partials] as unknown as TensorInfo[], u, 1);
  partials.dispose();
  return { norm, coef };
}

/** The most weights one AdamW dispatch updates (the uniforms hold one run per weight). */
const ADAMW_MAX_ARITY = 8;

/**
 * AdamW in place over `arity` weights, each over its own run of workgroups
 * (as the sum of squares splits its gradients): weight j's p, m, v and g
 * bind at 4j … 4j + 3. Per weight: g times coef, then m, v and p (the
 * arithmetic of optim.ts's composition). With `fromTensor`, the step's
 * scalars (decay, step size, √bc2) come from a [3] tensor rather than the
 * uniforms, so every step's dispatch is the same (a recorded step's input).
 * Uniform run j: (n, first group, groups, whether it decays).
 */
function adamwShader(arity: number, guarded: boolean, scaled: boolean, fromTensor: boolean): string {
  const weights = Array.from({ length: arity }, (_, j) =>
    ["p", "m", "v"].map((x, k) => `@group(0) @binding(${4 * j + k}) var<storage, read_write> ${x}${j} : array<f32>;`).join("\n") +
    `\n@group(0) @binding(${4 * j + 3}) var<storage, read> g${j} : array<f32>;`).join("\n");
  let binding = 4 * arity;
  const coef = scaled ? `@group(0) @binding(${binding++}) var<storage, read> coef : array<f32>;` : "";
  const ok = guarded ? `@group(0) @binding(${binding++}) var<storage, read> ok : array<i32>;` : "";
  const hyper = fromTensor ? `@group(0) @binding(${binding++}) var<storage, read> hyper : array<f32>;` : "";
  const [decay, stepSize, sqrtBc2] = fromTensor ? ["hyper[0]", "hyper[1]", "hyper[2]"] : ["u.decay", "u.stepSize", "u.sqrtBc2"];
  const updates = Array.from({ length: arity }, (_, j) => `
fn update${j}(i : u32, decay : f32) {
  let gi = ${scaled ? `g${j}[i] * coef[0]` : `g${j}[i]`};
  let mi = m${j}[i] * u.beta1 + gi * u.oneMinusBeta1;
  let vi = v${j}[i] * u.beta2 + (gi * gi) * u.oneMinusBeta2;
  m${j}[i] = mi;
  v${j}[i] = vi;
  p${j}[i] = p${j}[i] * decay - (mi / (sqrt(vi) / ${sqrtBc2} + u.eps)) * ${stepSize};
}`).join("");
  const cases = Array.from({ length: arity }, (_, j) => `    case ${j}u: { update${j}(i, decay); }`).join("\n");
  return `
${weights}
${coef}
${ok}
${hyper}
struct Uniforms { beta1 : f32, oneMinusBeta1 : f32, beta2 : f32, oneMinusBeta2 : f32, eps : f32, decay : f32, stepSize : f32, sqrtBc2 : f32, runs : array<vec4<u32>, ${arity}> };
@group(0) @binding(${binding}) var<uniform> u : Uniforms;
${updates}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  ${guarded ? "if (ok[0] == 0) { return; }" : ""}
  ${RUN_OF_GROUP(arity)}
  let i = (group - run.y) * ${WG}u + tid;
  if (i >= run.x) { return; }
  let decay = select(1.0, ${decay}, run.w != 0u);
  switch j {
${cases}
    default: { }
  }
}`;
}

/** One weight's AdamW update: its weight, moments and gradient, and whether it takes weight decay. */
export interface AdamWUpdate {
  p: tf.Tensor;
  m: tf.Tensor;
  v: tf.Tensor;
  g: tf.Tensor;
  decays: boolean;
}

/**
 * AdamW on the device, in place, several weights per dispatch (as many as
 * the adapter lets one shader bind, at most 8): each gradient (times
 * \`coef[0]\` where given: clipping), then m, v and p, with optim.ts's
 * arithmetic. \`h.decay\` is 1 − lr·weightDecay, applied to the weights whose
 * \`decays\` is set. \`ok\`, a bool scalar, skips the update on the device
 * when false. With \`hyper\` (a float32 [3] tensor: 1 − lr·weightDecay, the
 * step size, √bc2), the step's scalars are read from it, not from \`h\`.
 * Returns, per update, whether it was done here: not off webgpu, nor where a
 * buffer is shared with another tensor or the shapes or dtypes differ (the
 * caller composes those).
 */
export function adamwInPlaceWebGPU(updates: AdamWUpdate[], h: AdamWStep, ok: tf.Tensor | null, coef: tf.Tensor | null = null, hyper: tf.Tensor | null = null): boolean[] {
  const b = rawBackend();
  const shared = [coef, ok, hyper].filter((t) => t !== null) as tf.Tensor[];
  const arityMax = b ? Math.min(ADAMW_MAX_ARITY, Math.floor((b.device.limits.maxStorageBuffersPerShaderStage - shared.length) / 4)) : 0;
  if (!b || arityMax < 1 || shared.some((t) => t.dtype !== "float32" && t !== ok) || (hyper && hyper.size !== 3)) return updates.map(() => false);
  const takes = (x: AdamWUpdate) =>
    [x.p, x.m, x.v, x.g].every((t) => t.dtype === "float32" && t.size === x.p.size) && [x.p, x.m, x.v].every((t) => b.tensorMap.get(t.dataId)?.refCount === 1);
  const taken = updates.map(takes);
  const live = updates.filter((x, i) => taken[i] && x.p.size > 0);
  const key = `retromaeAdamW_${ok ? "guarded" : "plain"}_${coef ? "scaled" : "unscaled"}_${hyper ? "tensor" : "uniform"}`;
  for (let start = 0; start < live.length; start += arityMax) {
    const chunk = live.slice(start, start + arityMax);
    const u = new ArrayBuffer(32 + 16 * chunk.length);
    // with hyper, the per-step scalars in the uniforms are fixed (0), so the dispatch is the same every step
    new Float32Array(u, 0, 8).set([h.beta1, 1 - h.beta1, h.beta2, 1 - h.beta2, h.eps, hyper ? 0 : h.decay, hyper ? 0 : h.stepSize, hyper ? 0 : h.sqrtBc2]);
    const runs = new Uint32Array(u, 32);
    let groups = 0;
    chunk.forEach((x, j) => {
      const n = Math.ceil(x.p.size / WG);
      runs.set([x.p.size, groups, n, x.decays ? 1 : 0], 4 * j);
      groups += n;
    });
    const tensors = [...chunk.flatMap((x) => [x.p, x.m, x.v, x.g]), ...shared] as unknown as TensorInfo[];
    record(b, `${key}_${chunk.length}`, () => adamwShader(chunk.length, !!ok, !!coef, !!hyper), tensors, u, groups);
    // A value read earlier stays cached on the CPU: the buffers changed under it.
    for (const x of chunk) for (const t of [x.p, x.m, x.v]) b.tensorMap.get(t.dataId)!.values = null;
  }
  return taken;
}

/**
 * dst's values := src's, in place on the device (a copy recorded in order
 * with tfjs's programs): dst keeps its buffer. For a flag a step updates,
 * such as the trainer's "all steps so far were finite". False (nothing
 * done) off webgpu, or where the two differ in size or dtype, or dst's
 * buffer is shared.
 */
export function copyInPlaceWebGPU(dst: tf.Tensor, src: tf.Tensor): boolean {
  const b = rawBackend();
  if (!b || dst.size !== src.size || dst.dtype !== src.dtype) return false;
  const d = b.tensorMap.get(dst.dataId);
  if (!d || d.refCount !== 1) return false;
  b.uploadToGPU(dst.dataId);
  b.uploadToGPU(src.dataId);
  const [to, from] = [d.resource, b.tensorMap.get(src.dataId)!.resource] as GPUBuffer[];
  if (!(to instanceof GPUBuffer) || !(from instanceof GPUBuffer)) return false;
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.commandEncoder!.copyBufferToBuffer(from, 0, to, 0, Math.min(from.size, to.size));
  b.commandQueueOwnedIds.add(dst.dataId);
  b.commandQueueOwnedIds.add(src.dataId);
  d.values = null;
  return true;
}
