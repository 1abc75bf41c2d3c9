/**
 * Fused ops. On the native backend each is one C++ kernel: the
 * cross-entropy pieces make no [N, V] temporaries (a decoder batch's logits
 * are about 1,900 × 30,522 floats, 230 MB), and GELU is one pass forward and
 * one backward instead of five and a dozen. Elsewhere they are the tfjs ops
 * they stand for. Same values either way: the native test checks them
 * against these compositions.
 */
import * as tf from "./tf";
import { HeadStrides, headsSideBySide, headsStacked, headStrideValues, takesTiledMatMul, transposedHeads } from "./webgpu/matmul";

/** Kernel names, registered by the native backend only. */
export const LOG_SUM_EXP_ROWS = "RetroMAELogSumExpRows";
export const SOFTMAX_MINUS_ONE_HOT = "RetroMAESoftmaxMinusOneHot";
export const LOG_SUM_EXP_ARG_MAX = "RetroMAELogSumExpArgMax";
export const SOFTMAX_MINUS_ONE_HOT_COL_SUM = "RetroMAESoftmaxMinusOneHotColSum";
export const GELU = "RetroMAEGelu";
export const GELU_GRAD = "RetroMAEGeluGrad";
export const PICK_LABELS = "RetroMAEPickLabels";

// GELU's gradient, for whichever backend has the GELU kernel: the native GeluGrad kernel
tf.registerGradient({
  kernelName: GELU,
  inputsToSave: ["x"],
  gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel(GELU_GRAD, { x: saved[0], dy: dy as tf.Tensor }, {}) as tf.Tensor }),
});

function nativeKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** log Σⱼ exp(z[r, j]) for each row. z [N, V] -> [N] */
export function logSumExpRows(z: tf.Tensor2D): tf.Tensor1D {
  if (nativeKernel(LOG_SUM_EXP_ROWS)) return tf.engine().runKernel(LOG_SUM_EXP_ROWS, { x: z }, {}) as tf.Tensor1D;
  return tf.logSumExp(z, -1) as tf.Tensor1D;
}

/**
 * z[i, y[i]] for each row (no gradient: for the cross-entropies' own
 * backward passes). z [N, V], y [N] int32 -> [N]
 *
 * Elsewhere a gather from the flattened logits at row·V + label, whose
 * int32 arithmetic is exact there. webgpu has a kernel of its own: tfjs-webgpu
 * 4.22 adds int32s and reads gather indices as float32, which hold integers
 * exactly only up to 2²⁴ (16,777,216), and a decoder batch of 16 × 128 has
 * 2,016 × 30,522 = 61.5 million logits (its gather with batchDims, which
 * would avoid the large indices, left a disposed tensor behind in recorded
 * steps; tfjs-wasm's gather with batchDims reads the wrong memory).
 */
export function pickLabels(z: tf.Tensor2D, y: tf.Tensor1D): tf.Tensor1D {
  if (nativeKernel(PICK_LABELS)) return tf.engine().runKernel(PICK_LABELS, { x: z, labels: y }, {}) as tf.Tensor1D;
  const [N, V] = z.shape;
  return tf.tidy(() => tf.gather(z.reshape([N * V]), tf.add(tf.range(0, N * V, V, "int32"), y))) as tf.Tensor1D;
}

/** Registered by the webgpu backend only: meanNllAndAccuracy's sums in one dispatch. */
export const MEAN_NLL_ACCURACY = "RetroMAEMeanNllAccuracy";

/**
 * The mean cross-entropy and accuracy of N rows from each row's parts:
 * nll = lse − picked, hit = (predicted = label). With `weights` (1 for a
 * labelled row, 0 for padding), each mean is Σ w·x / max(Σ w, 1), and that
 * divisor is returned as `rowCount`; without, the means are over N and
 * `rowCount` is null. On webgpu one dispatch, a workgroup adding the rows in
 * a fixed order (tfjs took eleven: the comparison, the casts, the products,
 * three sums and three divisions); elsewhere those tfjs ops.
 * lse [N], picked [N], predicted [N] int32, labels [N] int32, weights [N] -> scalars
 */
export function meanNllAndAccuracy(lse: tf.Tensor1D, picked: tf.Tensor1D, predicted: tf.Tensor1D, labels: tf.Tensor1D, weights?: tf.Tensor1D): { loss: tf.Scalar; accuracy: tf.Scalar; rowCount: tf.Scalar | null } {
  if (nativeKernel(MEAN_NLL_ACCURACY) && lse.size > 0 && predicted.dtype === "int32" && labels.dtype === "int32") {
    const inputs: Record<string, tf.Tensor> = { lse, picked, predicted, labels, ...(weights ? { weights } : {}) };
    const [loss, accuracy, rowCount] = tf.engine().runKernel(MEAN_NLL_ACCURACY, inputs, {}) as tf.Scalar[];
    return { loss, accuracy, rowCount: rowCount ?? null };
  }
  const [loss, accuracy, rowCount] = tf.tidy(() => {
    const hits = tf.cast(tf.equal(predicted, labels), "float32"); // [N]
    const nll = tf.sub(lse, picked); // [N]
    if (!weights) return [tf.mean(nll), tf.mean(hits)];
    const count = tf.maximum(tf.sum(weights), 1); // rows that count
    return [tf.div(tf.sum(tf.mul(nll, weights)), count), tf.div(tf.sum(tf.mul(hits, weights)), count), count];
  }) as tf.Scalar[];
  return { loss, accuracy, rowCount: rowCount ?? null };
}

/** softmax(z) − onehot(y): the gradient of summed cross-entropy. z [N, V], y [N] int32 -> [N, V] */
export function softmaxMinusOneHot(z: tf.Tensor2D, y: tf.Tensor1D): tf.Tensor2D {
  if (nativeKernel(SOFTMAX_MINUS_ONE_HOT)) return tf.engine().runKernel(SOFTMAX_MINUS_ONE_HOT, { x: z, labels: y }, {}) as tf.Tensor2D;
  return tf.tidy(() => tf.sub(tf.softmax(z), tf.oneHot(y, z.shape[1], 1, 0, "float32"))) as tf.Tensor2D;
}

/** logSumExpRows and each row's argmax from one read of z. z [N, V] -> [N] float32, [N] int32 */
export function logSumExpArgMax(z: tf.Tensor2D): [tf.Tensor1D, tf.Tensor1D] {
  if (nativeKernel(LOG_SUM_EXP_ARG_MAX)) return tf.engine().runKernel(LOG_SUM_EXP_ARG_MAX, { x: z }, {}) as [tf.Tensor1D, tf.Tensor1D];
  return [logSumExpRows(z), tf.argMax(z, -1) as tf.Tensor1D];
}

/**
 * softmaxMinusOneHot and its column sums (the tied decoder's bias gradient)
 * from one pass. With `w`, each row times its weight first (0 for a padded
 * row: static shapes), so the sums count the weighted rows only.
 * z [N, V], y [N] int32, w [N] -> [N, V], [V]
 */
export function softmaxMinusOneHotColSum(z: tf.Tensor2D, y: tf.Tensor1D, w?: tf.Tensor1D): [tf.Tensor2D, tf.Tensor1D] {
  if (nativeKernel(SOFTMAX_MINUS_ONE_HOT_COL_SUM) && (!w || WEIGHTED_CE_BACKENDS.has(tf.getBackend()))) {
    return tf.engine().runKernel(SOFTMAX_MINUS_ONE_HOT_COL_SUM, { x: z, labels: y, ...(w ? { weights: w } : {}) }, {}) as [tf.Tensor2D, tf.Tensor1D];
  }
  return tf.tidy(() => {
    const dz = w ? tf.mul(softmaxMinusOneHot(z, y), w.reshape([-1, 1])) : softmaxMinusOneHot(z, y);
    return [dz, tf.sum(dz, 0)];
  }) as [tf.Tensor2D, tf.Tensor1D];
}

/** Backends whose SOFTMAX_MINUS_ONE_HOT_COL_SUM kernel takes row weights. */
const WEIGHTED_CE_BACKENDS = new Set(["webgpu"]);

/** Backends whose fused matmul adds the bias as it writes the rows. */
const FUSED_DENSE_BACKENDS = new Set(["native", "webgpu"]);

/**
 * x·Wᵀ + b, a dense layer (W [out, in], as HF stores nn.Linear) and the tied
 * MLM decoder (W the word embeddings). x [N, in], W [out, in], b [out] -> [N, out].
 * On native and webgpu, one fused matmul (the bias added as the rows are
 * written); on the other backends, a matmul and an add (wasm's fused matmul
 * has no fast transposed path). On webgpu the gradient takes W's and b's
 * from one pass over dy (linearWebGPU).
 */
export function linear(x: tf.Tensor2D, W: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  if (tf.getBackend() === "webgpu") return linearWebGPU(x, W, bias, webgpuDenseLayout() === "transposed");
  if (FUSED_DENSE_BACKENDS.has(tf.getBackend())) return tf.fused.matMul({ a: x, b: W, transposeB: true, bias }) as tf.Tensor2D;
  return tf.tidy(() => tf.add(tf.matMul(x, W, false, true), bias)) as tf.Tensor2D;
}

/**
 * How `linear` multiplies on webgpu, from RETROMAE_WEBGPU_DENSE:
 * - "xwt" (the default): x·Wᵀ, tfjs-webgpu's matmul with B transposed,
 *   which runs its scalar program (it takes its vec4 program only when B is
 *   not transposed);
 * - "transposed": Wᵀ made in the step (one transpose), then x·(Wᵀ), its
 *   vec4 program. The gradients are the same two products either way.
 * Which is faster is the GPU's to say: `bench gpu` times steps with each
 * (`ms_per_step_dense_transposed`) on a hardware adapter.
 */
export function webgpuDenseLayout(): "xwt" | "transposed" {
  const v = process.env.RETROMAE_WEBGPU_DENSE;
  if (v === undefined || v === "" || v === "xwt") return "xwt";
  if (v === "transposed") return "transposed";
  throw new Error(`RETROMAE_WEBGPU_DENSE is "${v}"; set it to xwt (the default) or transposed, or unset it.`);
}

/** Registered by the webgpu backend only: a dense layer's weight and bias gradients, dyᵀ·x and Σ_rows dy, from one pass over dy where its matmul is split along the rows. */
export const DENSE_WEIGHT_GRADS = "RetroMAEDenseWeightGrads";

/**
 * x·Wᵀ + b on webgpu, tfjs-webgpu's fused matmul (with `transposed`, Wᵀ
 * made first: its vec4 program), with the gradient tfjs gives x·Wᵀ + b
 * (dx = dy·W, dW = dyᵀ·x, db = Σ_rows dy) but dW and db from one kernel
 * (DENSE_WEIGHT_GRADS): where dyᵀ·x is split along the rows (a small
 * model's weights over its tokens), the bias gradient comes from the same
 * pass over dy, and both are added up in one more dispatch, two in all
 * where separately they took four.
 */
function linearWebGPU(x: tf.Tensor2D, W: tf.Tensor2D, bias: tf.Tensor1D, transposed: boolean): tf.Tensor2D {
  const op = tf.customGrad((xIn, wIn, bIn, save) => {
    const [xs, Ws] = [xIn as tf.Tensor2D, wIn as tf.Tensor2D];
    const value = denseWebGPU(xs, Ws, bIn as tf.Tensor1D, transposed); // [N, out]
    (save as tf.GradSaveFunc)([xs, Ws]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xSaved, wSaved] = saved as [tf.Tensor2D, tf.Tensor2D];
        const d = dy as tf.Tensor2D;
        return [tf.matMul(d, wSaved), ...denseWeightGrads(d, xSaved)]; // [N, in], [out, in], [out]
      },
    };
  });
  return op(x, W, bias) as tf.Tensor2D;
}

/** x·Wᵀ + b on webgpu: tfjs-webgpu's fused matmul (with `transposed`, Wᵀ made first: its vec4 program). x [N, in], W [out, in], b [out] -> [N, out] */
function denseWebGPU(x: tf.Tensor2D, W: tf.Tensor2D, bias: tf.Tensor1D, transposed: boolean): tf.Tensor2D {
  return (transposed ? tf.tidy(() => tf.fused.matMul({ a: x, b: tf.transpose(W), bias })) : tf.fused.matMul({ a: x, b: W, transposeB: true, bias })) as tf.Tensor2D;
}

/** A dense layer's weight and bias gradients, dyᵀ·x and Σ_rows dy: DENSE_WEIGHT_GRADS where the backend has it. dy [N, out], x [N, in] -> [out, in], [out] */
function denseWeightGrads(dy: tf.Tensor2D, x: tf.Tensor2D): [tf.Tensor2D, tf.Tensor1D] {
  return (nativeKernel(DENSE_WEIGHT_GRADS) ? tf.engine().runKernel(DENSE_WEIGHT_GRADS, { dy, x }, {}) : [tf.matMul(dy, x, true, false), tf.sum(dy, 0)]) as [tf.Tensor2D, tf.Tensor1D];
}

/** Registered by the webgpu backend only: x·Wᵀ + b and x itself (its buffer, no copy), for a residual connection to take (linearAndInput). */
export const DENSE_AND_INPUT = "RetroMAEDenseAndInput";

tf.registerGradient({
  kernelName: DENSE_AND_INPUT,
  inputsToSave: ["x", "W"],
  gradFunc: (dys, saved) => {
    const [dy, dInput] = dys as tf.Tensor2D[]; // [N, out], [N, in]: the residual's gradient of x
    const [x, W] = saved as [tf.Tensor2D, tf.Tensor2D];
    const [dW, db] = denseWeightGrads(dy, x); // [out, in], [out]: one kernel
    // dy·W with the residual's gradient added as the product is written (the same sum, in one pass)
    return { x: () => tf.fused.matMul({ a: dy, b: W, bias: dInput }), W: () => dW, bias: () => db };
  },
});

/**
 * x·Wᵀ + b, and x again for the residual connection around the sub-layer
 * this dense layer starts (Q, K and V's projection, the feed-forward's
 * first layer): [y, input], where `input` is to be used in x's place by
 * the residual. On webgpu while the tape records, one kernel with both
 * outputs, `input` x's own buffer (DENSE_AND_INPUT): its gradient adds the
 * residual's gradient of x into dx = dy·W as the product is written, where
 * tfjs would add x's two gradients in a pass of its own (a [N, in] read
 * twice and written once, per sub-layer). The sum is the same, so the same
 * bits. Elsewhere, [linear(x, W, bias), x].
 * x [N, in], W [out, in], b [out] -> [N, out], [N, in]
 */
export function linearAndInput(x: tf.Tensor2D, W: tf.Tensor2D, bias: tf.Tensor1D): [tf.Tensor2D, tf.Tensor2D] {
  if (nativeKernel(DENSE_AND_INPUT) && tf.engine().isTapeOn() && x.size > 0 && W.size > 0 && [x, W, bias].every((t) => t.dtype === "float32")) {
    return tf.engine().runKernel(DENSE_AND_INPUT, { x, W, bias }, { transposed: webgpuDenseLayout() === "transposed" }) as [tf.Tensor2D, tf.Tensor2D];
  }
  return [linear(x, W, bias), x];
}

/** Registered by the webgpu backend only: the input gradient of GELU(pre)·Wᵀ + b, (dy·W) ⊙ GELU′(pre), GELU′ applied as the product is written (feedForward). */
export const GELU_LINEAR_DX = "RetroMAEGeluLinearDx";

/**
 * The feed-forward block's dense layers (BertIntermediate, then BertOutput's
 * dense): GELU(x·W1ᵀ + b1)·W2ᵀ + b2, and x again for the residual
 * connection around it (see linearAndInput). On webgpu while the tape
 * records, the first layer is linearAndInput's and the second takes the
 * pre-activation: its input's gradient is (dy·W2) ⊙ GELU′(pre), GELU′
 * applied as the product is written (GELU_LINEAR_DX), where the tape ran
 * the product and then GELU's gradient, a [N, I] pass more. Elsewhere,
 * the dense layer with GELU (linearGelu: one dispatch for inference on
 * webgpu), the second dense layer, and x.
 * x [N, H], W1 [I, H], b1 [I], W2 [H, I], b2 [H] -> [N, H], [N, H]
 */
export function feedForward(x: tf.Tensor2D, W1: tf.Tensor2D, b1: tf.Tensor1D, W2: tf.Tensor2D, b2: tf.Tensor1D): [tf.Tensor2D, tf.Tensor2D] {
  if (!nativeKernel(GELU_LINEAR_DX) || !tf.engine().isTapeOn() || [x, W1, b1, W2, b2].some((t) => t.dtype !== "float32" || t.size === 0)) return [linear(linearGelu(x, W1, b1), W2, b2), x];
  const [pre, input] = linearAndInput(x, W1, b1); // [N, I], [N, H]
  return [geluLinearWebGPU(pre, W2, b2, webgpuDenseLayout() === "transposed"), input];
}

/** GELU(pre)·Wᵀ + b on webgpu, the input's gradient through GELU_LINEAR_DX. pre [N, in], W [out, in], b [out] -> [N, out] */
function geluLinearWebGPU(pre: tf.Tensor2D, W: tf.Tensor2D, bias: tf.Tensor1D, transposed: boolean): tf.Tensor2D {
  const op = tf.customGrad((preIn, wIn, bIn, save) => {
    const [ps, Ws] = [preIn as tf.Tensor2D, wIn as tf.Tensor2D];
    const h = gelu(ps) as tf.Tensor2D; // [N, in]
    const value = denseWebGPU(h, Ws, bIn as tf.Tensor1D, transposed); // [N, out]
    (save as tf.GradSaveFunc)([ps, Ws, h]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [pSaved, wSaved, hSaved] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const d = dy as tf.Tensor2D;
        const dPre = tf.engine().runKernel(GELU_LINEAR_DX, { dy: d, W: wSaved, pre: pSaved }, {}) as tf.Tensor2D; // (dy·W) ⊙ GELU′(pre)
        return [dPre, ...denseWeightGrads(d, hSaved)]; // [N, in], [out, in], [out]
      },
    };
  });
  return op(pre, W, bias) as tf.Tensor2D;
}

/** The tied MLM decoder: x·Eᵀ + b. x [N, H], E [V, H], b [V] -> [N, V] */
export function tiedLogits(x: tf.Tensor2D, E: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  return linear(x, E, bias);
}

/** Exact GELU: x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), with its gradient. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (nativeKernel(GELU)) return tf.engine().runKernel(GELU, { x }, {}) as tf.Tensor;
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

/**
 * Dropout with its mask drawn on the device from a counter-based hash:
 * element i of a call with seed s is kept when
 * hash(hash(s) ^ i) ≥ rate · 2³² (32-bit integer arithmetic, the same bits on
 * every backend), and scaled by fround(1 / (1 − rate)). One pass forward;
 * the gradient is the same kernel on dy with the same seed (the mask is
 * recomputed, never stored). The webgpu backend registers it: tfjs's own
 * dropout draws its uniform noise on the CPU (about 135 M values/s here)
 * and uploads it, which for base at 32 × 512 is some 1.7 G values a step.
 * Other backends keep tfjs's dropout (their results stay as published)
 * unless `registerCounterDropout` gives them this one (tests compare
 * backends with it).
 */
export const DROPOUT = "RetroMAEDropout";

tf.registerGradient({
  kernelName: DROPOUT,
  gradFunc: (dy, _saved, attrs) => ({ x: () => tf.engine().runKernel(DROPOUT, { x: dy as tf.Tensor }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor }),
});

/** The 32-bit integer hash behind DROPOUT (lowbias32, C. Wellons): x ↦ well-mixed u32. */
export function hash32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The attributes of one DROPOUT call: the keep threshold on the hash and the scale. */
export function dropoutAttrs(rate: number, seed: number): { seed: number; threshold: number; scale: number } {
  if (!(rate >= 0 && rate < 1)) throw new Error(`Dropout rate must be in [0, 1), got ${rate}.`);
  return { seed: hash32(seed >>> 0), threshold: Math.min(2 ** 32 - 1, Math.round(rate * 2 ** 32)) >>> 0, scale: Math.fround(1 / (1 - rate)) };
}

/** DROPOUT in JavaScript, for any backend that reads its values on the CPU (cpu, native, wasm). */
export const counterDropoutKernel = (backendName: string): tf.KernelConfig => ({
  kernelName: DROPOUT,
  backendName,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, base } = inputs as { x: tf.TensorInfo; base?: tf.TensorInfo };
    const attr = attrs as unknown as { seed: number; threshold: number; scale: number };
    const { threshold, scale } = attr;
    const read = (t: tf.TensorInfo) => (backend as unknown as { readSync(id: object): Float32Array | Int32Array }).readSync(t.dataId);
    const seed = base ? hash32((read(base)[0] ^ attr.seed) >>> 0) : attr.seed;
    const values = read(x);
    const out = new Float32Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = hash32((seed ^ i) >>> 0) >= threshold ? Math.fround(values[i] * scale) : 0;
    return (backend as unknown as { makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo }).makeTensorInfo(x.shape, "float32", out);
  },
});

/** Registered by the webgpu backend only: a 0/1 byte matrix, four bytes to an int32 word, widened to an additive mask. */
export const ADDITIVE_MASK_OF_BYTES = "RetroMAEAdditiveMaskOfBytes";

/**
 * A byte array as int32 words, four bytes to a word in memory order (little
 * endian, as WebGPU reads them): the bytes' own memory where it starts on a
 * multiple of 4 and its length is one, else a copy padded with zeros.
 */
export function bytesAsWords(bytes: Uint8Array): Int32Array {
  if (bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
  padded.set(bytes);
  return new Int32Array(padded.buffer);
}

/**
 * The additive attention mask of a 0/1 byte matrix: 0 where a byte is set
 * (visible), `value` where it is 0 (as (1 − visible) · value gives it).
 * `words` holds the bytes (bytesAsWords), `shape` their shape, of at most
 * 4 · words.length elements. -> float32 of `shape`
 *
 * On webgpu the words are what goes up, a quarter of the bytes of int32s
 * and no host copy (a decoder mask at 32 × 512 is 8.4 million entries), and
 * one kernel widens them. Elsewhere the host writes the floats.
 */
export function additiveMaskOfBytes(words: Int32Array, shape: number[], value: number): tf.Tensor {
  const n = shape.reduce((a, d) => a * d, 1);
  if (n > 4 * words.length) throw new Error(`A mask of shape [${shape.join(", ")}] needs ${n} bytes and was given ${4 * words.length}; pass bytesAsWords of all its bytes.`);
  if (nativeKernel(ADDITIVE_MASK_OF_BYTES)) {
    return tf.tidy(() => tf.engine().runKernel(ADDITIVE_MASK_OF_BYTES, { words: tf.tensor1d(words, "int32") }, { shape, value }) as tf.Tensor);
  }
  const bytes = new Uint8Array(words.buffer, words.byteOffset, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) if (bytes[i] === 0) out[i] = value;
  return tf.tensor(out, shape, "float32");
}

/** Give `backendName` (default: the current one) the counter-based dropout, so its masks are webgpu's. */
export function registerCounterDropout(backendName = tf.getBackend()): void {
  if (tf.getKernel(DROPOUT, backendName)) tf.unregisterKernel(DROPOUT, backendName);
  tf.registerKernel(counterDropoutKernel(backendName));
}

/**
 * Inverted dropout of x at `rate` with one seed: the counter-based kernel
 * where the backend has it (webgpu), tfjs's dropout elsewhere. With `base`
 * (an int32 [1] tensor, the counter kernel only), the mask's seed is
 * hash(base ^ hash(seed)), drawn on the device: `seed` is then the call's
 * index in its step (see DropoutSeeds).
 */
export function dropoutWithSeed(x: tf.Tensor, rate: number, seed: number, base?: tf.Tensor): tf.Tensor {
  const attrs = dropoutAttrs(rate, seed) as unknown as tf.NamedAttrMap; // checks the rate on every path
  if (!nativeKernel(DROPOUT) || x.dtype !== "float32") {
    if (base) throw new Error("Dropout seeded on the device needs the counter-based dropout kernel; this backend has none.");
    return tf.dropout(x, rate, undefined, seed);
  }
  if (!base) return tf.engine().runKernel(DROPOUT, { x }, attrs) as tf.Tensor;
  // The gradient is the same mask on dy, from the same base: kept for the backward pass (a registered
  // gradient sees attributes only). The base leads to no weight, so tfjs never uses a gradient for it.
  const run = (t: tf.Tensor, b: tf.Tensor) => tf.engine().runKernel(DROPOUT, { x: t, base: b }, attrs) as tf.Tensor;
  return tf.customGrad((xIn, bIn, save) => {
    (save as tf.GradSaveFunc)([bIn as tf.Tensor]);
    return { value: run(xIn as tf.Tensor, bIn as tf.Tensor), gradFunc: (dy, saved) => [run(dy as tf.Tensor, saved[0]), saved[0]] };
  })(x, base);
}

/**
 * One step's dropout seeds, from a single value drawn on the host: call i of
 * the step masks with hash(base ^ hash(i)). The base is the step's only
 * random input, so a recorded step (lib/engine/webgpu/replay.ts) replays
 * with new masks by uploading one number. Only where the counter-based
 * kernel runs (`DropoutSeeds.forStep` gives undefined elsewhere).
 *
 * The step draws from the run's generator as many values as the other
 * backends draw for the same forward (one `seed()` per dropout call, see
 * bert.ts's dropout), and the base is the first of them, so the masking
 * that follows draws the same values on every backend: the same seed masks
 * the same tokens on webgpu as on the CPU (dropout's own masks differ).
 */
export class DropoutSeeds {
  /** The step's base seed: an input of the step. */
  readonly base: Int32Array;
  private calls = 0;
  private tensor: tf.Tensor1D | null = null;

  constructor(seed: number) {
    this.base = Int32Array.of(seed | 0);
  }

  /**
   * A step's seeds where the backend has the counter-based dropout, else
   * undefined (nothing drawn). `calls` is how many dropout calls the step's
   * forward makes (RetroMAE.dropoutCalls): that many values are drawn from
   * `rng`, none when it is 0.
   */
  static forStep(rng: { seeds(count: number): number }, calls: number): DropoutSeeds | undefined {
    return DropoutSeeds.drawn() ? new DropoutSeeds(rng.seeds(calls)) : undefined;
  }

  /** Whether the backend in use masks with seeds drawn per step (forStep gives seeds), or draws dropout's masks on the host. */
  static drawn(): boolean {
    return nativeKernel(DROPOUT);
  }

  /** How many calls have masked with these seeds. */
  get callsMade(): number {
    return this.calls;
  }

  /** Inverted dropout of x at `rate`: this step's next call. */
  apply(x: tf.Tensor, rate: number): tf.Tensor {
    const call = this.next(rate);
    return dropoutWithSeed(x, rate, call.seed, call.base);
  }

  /** This step's next call at `rate`, for a kernel that drops out its own input or output (addLayerNorm's and scaledMaskedSoftmax's `dropout`). */
  next(rate: number): DropoutCall {
    // made on the first call, inside the step's scope, from the same array every time (a recorded input)
    if (!this.tensor || this.tensor.isDisposed) this.tensor = tf.tensor1d(this.base, "int32");
    return { rate, seed: this.calls++, base: this.tensor };
  }
}

/**
 * One dropout call of a step (DropoutSeeds.next) for a fused kernel to apply
 * as it reads or writes: its rate, its index in the step and the step's
 * base seed. The mask is DROPOUT's, bit for bit.
 */
export interface DropoutCall {
  readonly rate: number;
  readonly seed: number;
  readonly base: tf.Tensor;
}

/** A dropout call's attributes (dropoutAttrs) under the names a fused kernel takes them by, beside its own. */
function dropoutCallAttrs(call: DropoutCall): { dropSeed: number; dropThreshold: number; dropScale: number } {
  const { seed, threshold, scale } = dropoutAttrs(call.rate, call.seed);
  return { dropSeed: seed, dropThreshold: threshold, dropScale: scale };
}

/** A dropout call applied on its own: where no fused kernel takes it. */
function dropoutCall(x: tf.Tensor, call: DropoutCall): tf.Tensor {
  return dropoutWithSeed(x, call.rate, call.seed, call.base);
}

/** Registered by the webgpu backend only: an embedding table's gradient, the deterministic segment sum with the rows of one id left out. */
export const EMBEDDING_GRAD = "RetroMAEEmbeddingGrad";

/**
 * A lookup's gradient for its [V, H] table: each id's rows of dy summed, in
 * order, leaving out the rows whose id is `skip` (PyTorch's padding_idx:
 * the padding's row gets no gradient from the lookup). On webgpu one
 * segment sum that skips them; elsewhere the rows times a 0/1 mask, then
 * tf.unsortedSegmentSum (the sums the published CPU runs made).
 * dy [N, H], ids [N] int32 -> [V, H]
 */
export function embeddingGrad(dy: tf.Tensor2D, ids: tf.Tensor1D, V: number, skip: number): tf.Tensor2D {
  if (nativeKernel(EMBEDDING_GRAD) && dy.dtype === "float32") return tf.engine().runKernel(EMBEDDING_GRAD, { x: dy, segmentIds: ids }, { numSegments: V, skip }) as tf.Tensor2D;
  return tf.tidy(() => {
    const keep = tf.cast(tf.notEqual(ids, skip), "float32").reshape([-1, 1]); // [N, 1]
    return tf.unsortedSegmentSum(tf.mul(dy, keep), ids, V) as tf.Tensor2D;
  });
}

/**
 * Row `row` of `table`, to be added at each of L positions (the token type
 * of inputs that have none). With no gradient recorded, and on webgpu, the
 * row itself, [1, H], which the add broadcasts: its gradient is dy summed
 * over every position in one reduction. While a gradient is recorded on the
 * other backends, the row gathered L times, [L, H], whose gradient sums in
 * the order the published CPU runs did. (Gathering it for each position in
 * encoding made webgpu compute [L, H] on the CPU, as tfjs does small ops on
 * host tensors, and upload it every batch.) table [V, H] -> [L or 1, H]
 */
export function repeatedRow(table: tf.Tensor2D, row: number, L: number): tf.Tensor2D {
  if (!tf.engine().isTapeOn() || tf.getBackend() === "webgpu") return tf.slice(table, [row, 0], [1, table.shape[1]]);
  return tf.gather(table, tf.fill([L], row, "int32")) as tf.Tensor2D;
}

/** Registered by the webgpu backend only: its fused matmul with a GELU epilogue. */
export const DENSE_GELU = "RetroMAEDenseGelu";

/**
 * GELU(x·Wᵀ + b): the feed-forward's first dense layer and the MLM head's
 * transform. On webgpu, when no gradient is being recorded (encoding, the
 * probe), one matmul whose epilogue adds the bias and applies GELU as it
 * writes the rows. Elsewhere, and whenever the tape records (GELU's gradient
 * needs the pre-activation), the dense layer then GELU.
 * x [N, in], W [out, in], b [out] -> [N, out]
 */
export function linearGelu(x: tf.Tensor2D, W: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  if (nativeKernel(DENSE_GELU) && !tf.engine().isTapeOn() && [x, W, bias].every((t) => t.dtype === "float32")) {
    return tf.engine().runKernel(DENSE_GELU, { x, W, bias }, {}) as tf.Tensor2D;
  }
  return gelu(linear(x, W, bias)) as tf.Tensor2D;
}

export const ADD_LAYER_NORM = "RetroMAEAddLayerNorm";
export const LAYER_NORM_GRAD = "RetroMAELayerNormGrad";
export const SCALED_MASKED_SOFTMAX = "RetroMAEScaledMaskedSoftmax";
export const SCALED_SOFTMAX_GRAD = "RetroMAEScaledSoftmaxGrad";
/** Registered by the webgpu backend only: ADD_LAYER_NORM of x dropped out (a DropoutCall's mask, drawn in the kernel; its `base` an input). */
export const DROPOUT_ADD_LAYER_NORM = "RetroMAEDropoutAddLayerNorm";
/** Registered by the webgpu backend only: ADD_LAYER_NORM of x alone, then y dropped out (BertEmbeddings' order), the mask drawn as y is written. */
export const LAYER_NORM_DROPOUT = "RetroMAELayerNormDropout";
/** Registered by the webgpu backend only: SCALED_MASKED_SOFTMAX, then dropout (a DropoutCall) in the same pass; outputs [dropped, probabilities]. */
export const DROPOUT_SOFTMAX = "RetroMAEScaledMaskedSoftmaxDropout";
export const ATTENTION = "RetroMAEAttention";

/**
 * LAYER_NORM_GRAD of dy: [ds, dγ, dβ], from the normalized rows and 1/σ the
 * forward kernel kept; with a step's dropout (its saved base and the call's
 * attributes) of x, also dx (ds under x's mask), or of y, dy read under y's
 * mask (webgpu draws the masks again in the kernel).
 */
function layerNormGrads(dy: tf.Tensor, xhat: tf.Tensor, rstd: tf.Tensor, gamma: tf.Tensor, dropped?: { base: tf.Tensor; attrs: unknown; at: "x" | "y" }): tf.Tensor[] {
  if (!dropped) return tf.engine().runKernel(LAYER_NORM_GRAD, { dy, xhat, rstd, gamma }, {}) as tf.Tensor[];
  const { dropSeed, dropThreshold, dropScale } = dropped.attrs as ReturnType<typeof dropoutCallAttrs>;
  const attrs = { dropSeed, dropThreshold, dropScale, ...(dropped.at === "y" ? { dropOutput: true } : {}) };
  return tf.engine().runKernel(LAYER_NORM_GRAD, { dy, xhat, rstd, gamma, base: dropped.base }, attrs) as tf.Tensor[];
}

// LayerNorm's gradient: one native pass gives the gradient of the sum (x and
// residual alike), of gamma and of beta, from the normalized rows and 1/σ the
// forward kernel kept.
tf.registerGradient({
  kernelName: ADD_LAYER_NORM,
  inputsToSave: ["gamma"],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved) => {
    const [gamma, xhat, rstd] = saved;
    const dy = (dys as tf.Tensor[])[0];
    const [ds, dgamma, dbeta] = layerNormGrads(dy, xhat, rstd, gamma);
    return { x: () => ds, residual: () => tf.clone(ds), gamma: () => dgamma, beta: () => dbeta };
  },
});

// With x dropped out: the residual's gradient is ds, x's is ds under the same mask (the LayerNorm's
// gradient kernel writes both, the mask drawn again from the saved base).
tf.registerGradient({
  kernelName: DROPOUT_ADD_LAYER_NORM,
  inputsToSave: ["gamma", "base"],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [gamma, base, xhat, rstd] = saved;
    const dy = (dys as tf.Tensor[])[0];
    const [ds, dgamma, dbeta, dx] = layerNormGrads(dy, xhat, rstd, gamma, { base, attrs, at: "x" });
    // (the base leads to no weight: tfjs never asks for its gradient)
    return { x: () => dx, residual: () => ds, gamma: () => dgamma, beta: () => dbeta, base: () => tf.zerosLike(base) };
  },
});

// With y dropped out: the LayerNorm's gradient of dy under the same mask (the gradient kernel
// draws it again as it reads dy, for ds and for γ's and β's sums alike).
tf.registerGradient({
  kernelName: LAYER_NORM_DROPOUT,
  inputsToSave: ["gamma", "base"],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [gamma, base, xhat, rstd] = saved;
    const dy = (dys as tf.Tensor[])[0];
    const [ds, dgamma, dbeta] = layerNormGrads(dy, xhat, rstd, gamma, { base, attrs, at: "y" });
    return { x: () => ds, gamma: () => dgamma, beta: () => dbeta, base: () => tf.zerosLike(base) };
  },
});

/**
 * LayerNorm of (x + residual) over the last axis: (s − mean) / √(var + eps) · γ + β,
 * s = x + residual. One native kernel forward and one backward (the tfjs
 * composition is eleven ops each way); elsewhere, that composition. With
 * `dropout`, s = dropout(x) + residual: on webgpu the kernel draws the mask
 * as it reads x (and its gradient as it writes x's), no dropped copy made;
 * elsewhere the dropout runs first.
 * x [..., H], residual [..., H] or null, gamma [H], beta [H] -> [..., H]
 */
export function addLayerNorm(x: tf.Tensor, residual: tf.Tensor | null, gamma: tf.Tensor, beta: tf.Tensor, eps: number, dropout?: DropoutCall): tf.Tensor {
  const fused = layerNormKernel(dropout ? DROPOUT_ADD_LAYER_NORM : ADD_LAYER_NORM, x, residual, gamma, beta, eps, dropout);
  if (fused) return fused;
  if (dropout) return tf.tidy(() => addLayerNorm(dropoutCall(x, dropout), residual, gamma, beta, eps));
  return tf.tidy(() => {
    const s = residual ? tf.add(x, residual) : x;
    const { mean, variance } = tf.moments(s, -1, true);
    const normed = tf.mul(tf.sub(s, mean), tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normed, gamma), beta);
  });
}

/** Registered by the webgpu backend only: ADD_LAYER_NORM of GELU(x) (the MLM head's transform), GELU applied as x is read; its gradient writes x's, ds · GELU′(x). */
export const GELU_LAYER_NORM = "RetroMAEGeluLayerNorm";

// LayerNorm of GELU(x): LayerNorm's gradient kernel writes ds · GELU′(x), x's gradient, where it would write ds.
tf.registerGradient({
  kernelName: GELU_LAYER_NORM,
  inputsToSave: ["x", "gamma"],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved) => {
    const [pre, gamma, xhat, rstd] = saved;
    const dy = (dys as tf.Tensor[])[0];
    const [dpre, dgamma, dbeta] = tf.engine().runKernel(LAYER_NORM_GRAD, { dy, xhat, rstd, gamma, pre }, {}) as tf.Tensor[];
    return { x: () => dpre, gamma: () => dgamma, beta: () => dbeta };
  },
});

/**
 * LayerNorm(GELU(x)), the MLM head's transform after its dense layer: on
 * webgpu one kernel that applies GELU as it reads x (GELU(x) is never
 * written), and whose gradient writes x's, ds · GELU′(x), where it would
 * write ds (GELU_LAYER_NORM): two passes fewer per step and head.
 * Elsewhere GELU, then the LayerNorm. The same arithmetic either way.
 * x [..., H], gamma [H], beta [H] -> [..., H]
 */
export function geluLayerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  return layerNormKernel(GELU_LAYER_NORM, x, null, gamma, beta, eps) ?? tf.tidy(() => addLayerNorm(gelu(x), null, gamma, beta, eps));
}

/**
 * dropout(LayerNorm(x)), BertEmbeddings' order: on webgpu one kernel that
 * draws the mask as it writes y (and its gradient as it reads dy), no
 * dropout pass either way; elsewhere the LayerNorm, then the dropout.
 * x [..., H], gamma [H], beta [H] -> [..., H]
 */
export function layerNormDropout(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number, dropout: DropoutCall): tf.Tensor {
  return layerNormKernel(LAYER_NORM_DROPOUT, x, null, gamma, beta, eps, dropout) ?? tf.tidy(() => dropoutCall(addLayerNorm(x, null, gamma, beta, eps), dropout));
}

/** Registered by the webgpu backend only: BertEmbeddings' sum (the vectors, each position's row, token type 0's row) in its LayerNorm's kernel. */
export const EMBEDDINGS_LAYER_NORM = "RetroMAEEmbeddingsLayerNorm";
/** EMBEDDINGS_LAYER_NORM with y dropped out (a DropoutCall's mask, drawn in the kernel; its `base` an input). */
export const EMBEDDINGS_LAYER_NORM_DROPOUT = "RetroMAEEmbeddingsLayerNormDropout";
/** Registered by the webgpu backend only: the position and token-type tables' gradients from the embeddings' ds. */
export const EMBEDDING_TABLES_GRAD = "RetroMAEEmbeddingTablesGrad";

/**
 * BertEmbeddings after the word lookup, for inputs with no token types:
 * LayerNorm(vectors + positions[0, L) + types[0]), then `dropout` where
 * given (a DropoutCall, drawn as y is written), with the tables read in
 * place. On webgpu one dispatch forward, where the slices and adds took
 * four; its gradient is LayerNorm's (ds, γ, β: two dispatches) and one
 * pass per table (EMBEDDING_TABLES_GRAD: each position's row summed over
 * the batch, then token type 0's over the positions), where the adds' and
 * slices' gradients took four. Null elsewhere, where the shapes do not
 * fit, or with dropout on an adapter that binds fewer than 9 storage
 * buffers (the kernel then binds 9): the caller composes.
 * vectors [B, L, H], positions [P, H] (P ≥ L), types [T, H], gamma [H], beta [H] -> [B, L, H]
 */
export function embeddingsLayerNorm(vectors: tf.Tensor3D, positions: tf.Tensor2D, types: tf.Tensor2D, gamma: tf.Tensor, beta: tf.Tensor, eps: number, dropout?: DropoutCall): tf.Tensor3D | null {
  const [, L, H] = vectors.shape;
  const fits = positions.shape[0] >= L && positions.shape[1] === H && types.shape[0] >= 1 && types.shape[1] === H && gamma.size === H && beta.size === H;
  if (!nativeKernel(dropout ? EMBEDDINGS_LAYER_NORM_DROPOUT : EMBEDDINGS_LAYER_NORM) || !fits || [vectors, positions, types].some((t) => t.dtype !== "float32")) return null;
  const inputs: Record<string, tf.Tensor> = { x: vectors, positions, types, gamma, beta, ...(dropout ? { base: dropout.base } : {}) };
  const outs = tf.engine().runKernel(dropout ? EMBEDDINGS_LAYER_NORM_DROPOUT : EMBEDDINGS_LAYER_NORM, inputs, { eps, stats: tf.engine().isTapeOn(), ...(dropout ? dropoutCallAttrs(dropout) : {}) }) as tf.Tensor[];
  return outs[0] as tf.Tensor3D;
}

// The embeddings' LayerNorm: LayerNorm's gradient (of dy under y's dropout mask, where there is one) gives
// the vectors' ds; the position table's rows [0, L) get ds summed over the batch, token type 0's row ds
// summed over every row, the other rows 0.
for (const [kernelName, dropped] of [[EMBEDDINGS_LAYER_NORM, false], [EMBEDDINGS_LAYER_NORM_DROPOUT, true]] as const) {
  tf.registerGradient({
    kernelName,
    inputsToSave: ["positions", "types", "gamma", ...(dropped ? ["base"] : [])],
    outputsToSave: [false, true, true],
    gradFunc: (dys, saved, attrs) => {
      const [positions, types, gamma] = saved;
      const [xhat, rstd] = saved.slice(dropped ? 4 : 3);
      const base = dropped ? saved[3] : null;
      const dy = (dys as tf.Tensor[])[0];
      const [ds, dgamma, dbeta] = layerNormGrads(dy, xhat, rstd, gamma, base ? { base, attrs, at: "y" } : undefined);
      const [dpositions, dtypes] = tf.engine().runKernel(EMBEDDING_TABLES_GRAD, { ds }, { positions: positions.shape[0], types: types.shape[0] }) as tf.Tensor[];
      // (the base leads to no weight: tfjs never asks for its gradient)
      return { x: () => ds, positions: () => dpositions, types: () => dtypes, gamma: () => dgamma, beta: () => dbeta, ...(base ? { base: () => tf.zerosLike(base) } : {}) };
    },
  });
}

/** One of the LayerNorm kernels, where the backend has it and the shapes fit; null otherwise. */
function layerNormKernel(kernel: string, x: tf.Tensor, residual: tf.Tensor | null, gamma: tf.Tensor, beta: tf.Tensor, eps: number, dropout?: DropoutCall): tf.Tensor | null {
  const H = x.shape[x.shape.length - 1];
  if (!nativeKernel(kernel) || x.dtype !== "float32" || (residual && !tf.util.arraysEqual(residual.shape, x.shape)) || gamma.size !== H || beta.size !== H) return null;
  const inputs: Record<string, tf.Tensor> = { x, gamma, beta };
  if (residual) inputs.residual = residual;
  if (dropout) inputs.base = dropout.base;
  // The normalized rows and 1/σ are outputs only when the tape records (the gradient reads them); else y alone.
  const outs = tf.engine().runKernel(kernel, inputs, { eps, stats: tf.engine().isTapeOn(), ...(dropout ? dropoutCallAttrs(dropout) : {}) }) as tf.Tensor[];
  return outs[0];
}

// The attention softmax's gradient: scale · p · (dp − Σ dp·p) for the scores;
// for the additive mask, the same without the scale, summed over the axes it
// was broadcast along.
function softmaxGrads(probs: tf.Tensor, dy: tf.Tensor, mask: tf.Tensor, scale: number, dropped?: { base: tf.Tensor; attrs: ReturnType<typeof dropoutCallAttrs> }) {
  const inputs = { p: probs, dy, ...(dropped ? { base: dropped.base } : {}) };
  const grad = (scale: number) => tf.engine().runKernel(SCALED_SOFTMAX_GRAD, inputs, { scale, ...dropped?.attrs }) as tf.Tensor;
  return {
    x: () => grad(scale),
    mask: () =>
      tf.tidy(() => {
        const g = grad(1);
        const axes = mask.shape.flatMap((d, i) => (d === 1 && g.shape[i] !== 1 ? [i] : []));
        return axes.length ? tf.sum(g, axes, true) : g;
      }),
  };
}

tf.registerGradient({
  kernelName: SCALED_MASKED_SOFTMAX,
  inputsToSave: ["mask"],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [mask, probs] = saved;
    return softmaxGrads(probs, dy as tf.Tensor, mask, (attrs as unknown as { scale: number }).scale);
  },
});

// With dropout after the softmax: the same, of dy under the dropout's mask (drawn again in the
// gradient's kernel from the saved base, as it reads dy).
tf.registerGradient({
  kernelName: DROPOUT_SOFTMAX,
  inputsToSave: ["mask", "base"],
  outputsToSave: [false, true],
  gradFunc: (dys, saved, attrs) => {
    const [mask, base, probs] = saved;
    const { scale, dropSeed, dropThreshold, dropScale } = attrs as unknown as { scale: number } & ReturnType<typeof dropoutCallAttrs>;
    return { ...softmaxGrads(probs, (dys as tf.Tensor[])[0], mask, scale, { base, attrs: { dropSeed, dropThreshold, dropScale } }), base: () => tf.zerosLike(base) };
  },
});

/**
 * Attention probabilities: softmax(x · scale + mask) over the last axis, in
 * one native pass forward and one backward; elsewhere the tfjs ops. With
 * `dropout`, the probabilities dropped out: on webgpu in the same pass each
 * way (the mask drawn as they are written, and again as the gradient reads
 * dy); elsewhere the dropout runs after.
 * x [B, heads, Lq, Lk], mask additive [B, 1, 1 or Lq, Lk] -> [B, heads, Lq, Lk]
 */
export function scaledMaskedSoftmax(x: tf.Tensor4D, mask: tf.Tensor4D, scale: number, dropout?: DropoutCall): tf.Tensor4D {
  const [B, , Lq, Lk] = x.shape;
  const [mB, mh, mq, mk] = mask.shape;
  const kernel = dropout ? DROPOUT_SOFTMAX : SCALED_MASKED_SOFTMAX;
  if (nativeKernel(kernel) && x.dtype === "float32" && mB === B && mh === 1 && (mq === 1 || mq === Lq) && mk === Lk && Lk > 0) {
    if (dropout) return (tf.engine().runKernel(kernel, { x, mask, base: dropout.base }, { scale, ...dropoutCallAttrs(dropout) }) as tf.Tensor[])[0] as tf.Tensor4D;
    return tf.engine().runKernel(kernel, { x, mask }, { scale }) as tf.Tensor4D;
  }
  if (dropout) return tf.tidy(() => dropoutCall(scaledMaskedSoftmax(x, mask, scale), dropout)) as tf.Tensor4D;
  return tf.tidy(() => tf.softmax(tf.add(tf.mul(x, scale), mask))) as tf.Tensor4D;
}

/** Registered by the webgpu backend only: a batch of per-head matmuls, each operand read and the output written through strides (lib/engine/webgpu/matmul.ts headMatMulProgram). */
export const HEAD_MATMUL = "RetroMAEHeadMatMul";

/** [B, L, H] -> [B, heads, L, dh] */
function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [B, L, H] = x.shape;
  return x.reshape([B, L, heads, H / heads]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
}

/** [B, heads, L, dh] -> [B, L, H] */
function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [B, heads, L, dh] = x.shape;
  return x.transpose([0, 2, 1, 3]).reshape([B, L, heads * dh]) as tf.Tensor3D;
}

/**
 * How the attention in training treats the heads on webgpu, from
 * RETROMAE_WEBGPU_HEADS:
 * - "inplace" (the default): read and written side by side in their stacked
 *   projections (attentionTraining, HEAD_MATMUL), where the batched product
 *   would not take the 128 × 128 tiled matmul;
 * - "split": q, k and v projected apart, split into [B, heads, L, dh] and
 *   merged again by transposes around batched matmuls (tfjs's programs, or
 *   the tiled one), as on the other backends.
 * Which is faster is the GPU's to say: `bench gpu` times steps with "split"
 * (`ms_per_step_heads_split`) on a hardware adapter.
 */
export function webgpuHeads(): "inplace" | "split" {
  const v = process.env.RETROMAE_WEBGPU_HEADS;
  if (v === undefined || v === "" || v === "inplace") return "inplace";
  if (v === "split") return "split";
  throw new Error(`RETROMAE_WEBGPU_HEADS is "${v}"; set it to inplace (the default) or split, or unset it.`);
}

/**
 * Whether the attention's products over `batch` matrices of [Lq, Lk] read
 * the heads in place (attentionTraining): on webgpu
 * (webgpuHeads), where the batched product would not take the 128 × 128
 * tiled matmul (a base model at 512 tokens keeps it, with the heads split
 * by transposes).
 */
function headsInPlace(batch: number, Lq: number, Lk: number): boolean {
  return nativeKernel(HEAD_MATMUL) && webgpuHeads() === "inplace" && !takesTiledMatMul(batch, Lq, Lk);
}

/** C = A·B per head through the strides of A, B and C (HEAD_MATMUL): [M, K]·[K, N] in each of `batch` = B·heads. */
function headMatMul(a: tf.Tensor, b: tf.Tensor, heads: number, [M, N, K]: number[], strides: HeadStrides[], shape: number[]): tf.Tensor {
  const batch = shape[0] * heads;
  const attrs = { batch, heads, M, N, K, strides: strides.flatMap(headStrideValues), shape };
  return tf.engine().runKernel(HEAD_MATMUL, { a, b }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * The attention's scores per head, q·kᵀ, the heads split and multiplied as
 * a batch (training on webgpu reads them in place instead: attentionTraining).
 * q [B, Lq, H], k [B, Lk, H] -> [B, heads, Lq, Lk]
 */
export function attentionScores(q: tf.Tensor3D, k: tf.Tensor3D, heads: number): tf.Tensor4D {
  return tf.tidy(() => tf.matMul(splitHeads(q, heads), splitHeads(k, heads), false, true)) as tf.Tensor4D;
}

/**
 * The attention's output per head, p·v, with the heads merged: v's heads
 * split, multiplied as a batch, and merged.
 * p [B, heads, Lq, Lk], v [B, Lk, H] -> [B, Lq, H]
 */
export function attentionContext(p: tf.Tensor4D, v: tf.Tensor3D, heads: number): tf.Tensor3D {
  return tf.tidy(() => mergeHeads(tf.matMul(p, splitHeads(v, heads)) as tf.Tensor4D));
}

/** Registered by the webgpu backend only: tensors stacked along their first axis, a group of them per output, all in one dispatch (inputs t0, t1, …; attrs `counts`, the tensors per group). */
export const STACK_ROWS = "RetroMAEStackRows";
/** Registered by the webgpu backend only: STACK_ROWS's gradient, each output's rows given back to the tensors stacked (inputs g0, g1, …; attrs `counts` and `rows`, each tensor's first dimension). */
export const UNSTACK_ROWS = "RetroMAEUnstackRows";

tf.registerGradient({
  kernelName: STACK_ROWS,
  gradFunc: (dys, _saved, attrs) => {
    const { counts, rows } = attrs as unknown as { counts: number[]; rows: number[] };
    const gs = ([] as tf.Tensor[]).concat(dys); // (one tensor where one group was stacked)
    const parts = ([] as tf.Tensor[]).concat(tf.engine().runKernel(UNSTACK_ROWS, Object.fromEntries(gs.map((g, i) => [`g${i}`, g])), { counts, rows }));
    return Object.fromEntries(parts.map((t, i) => [`t${i}`, () => t]));
  },
});

/**
 * Each group of tensors stacked along the first axis, as tf.concat(group, 0)
 * gives it: on webgpu all the groups in one dispatch each way (a stacked
 * projection's weights and biases, and their gradients given back).
 * groups [[a [r_a, ...], b [r_b, ...], ...], ...] -> [[r_a + r_b + …, ...], ...]
 */
export function stackRows(groups: tf.Tensor[][]): tf.Tensor[] {
  const pieces = groups.flat();
  const sameTrailing = groups.every((g) => g.every((t) => t.rank >= 1 && tf.util.arraysEqual(t.shape.slice(1), g[0].shape.slice(1))));
  if (!nativeKernel(STACK_ROWS) || pieces.length > 6 || !sameTrailing || pieces.some((t) => t.dtype !== "float32" || t.size === 0)) return groups.map((g) => tf.concat(g, 0));
  const attrs = { counts: groups.map((g) => g.length), rows: pieces.map((t) => t.shape[0]) };
  return ([] as tf.Tensor[]).concat(tf.engine().runKernel(STACK_ROWS, Object.fromEntries(pieces.map((t, i) => [`t${i}`, t])), attrs as unknown as tf.NamedAttrMap));
}

/** Registered by the webgpu backend only: attentionTraining's gradient, q, k and v's written side by side into one gradient per projection. */
export const ATTENTION_GRAD = "RetroMAEAttentionGrad";

/**
 * Whether attentionTraining runs for these shapes: on webgpu, where the
 * heads are read in place (see headsInPlace); the caller decides before it
 * draws the dropout call, so that the step's calls stay in order.
 * mask [B, 1, 1 or Lq, Lk]
 */
export function attentionTrainingApplies(B: number, heads: number, Lq: number, Lk: number, H: number, mask: tf.Tensor4D): boolean {
  const [mB, mh, mq, mk] = mask.shape;
  return nativeKernel(ATTENTION_GRAD) && B > 0 && Lq > 0 && Lk > 0 && H % heads === 0 && mB === B && mh === 1 && (mq === 1 || mq === Lq) && mk === Lk && mask.dtype === "float32" && headsInPlace(B * heads, Lq, Lk);
}

/**
 * The attention for training on projections stacked side by side (where
 * attentionTrainingApplies): per head, dropout(softmax(q kᵀ · scale + mask))·v,
 * with q, k and v read in place from their columns of the projections and
 * the heads of the output written side by side. Self-attention passes one
 * [B, L, 3H] projection as q and kv, columns [0, H, 2H]; otherwise q
 * [B, Lq, H] and kv [B, Lk, 2H], columns [0, 0, H]. The gradient writes q's,
 * k's and v's side by side into one gradient per projection (ATTENTION_GRAD):
 * no head split or merge either way, and no gradients of q, k and v to add
 * up before their projections' matmul. The products are HEAD_MATMUL's, and
 * the softmax, with its dropout, one pass each way.
 * -> [B, Lq, H]
 */
export function attentionTraining(q: tf.Tensor3D, kv: tf.Tensor3D, mask: tf.Tensor4D, heads: number, scale: number, columns: [number, number, number], dropout?: DropoutCall): tf.Tensor3D {
  const self = q === kv;
  const [B, Lq, Wq] = q.shape;
  const [, Lk, Wkv] = kv.shape;
  const H = self ? Wq / 3 : Wq;
  const [cq, ck, cv] = columns;
  const covered = self ? [cq, ck, cv].sort((a, b) => a - b).join() === [0, H, 2 * H].join() : cq === 0 && Wkv === 2 * H && [ck, cv].sort((a, b) => a - b).join() === [0, H].join();
  if (!covered || !attentionTrainingApplies(B, heads, Lq, Lk, H, mask)) throw new Error(`attentionTraining takes q, k and v side by side in one [B, L, 3H] projection or in q [B, Lq, H] and kv [B, Lk, 2H], where attentionTrainingApplies (a bug in this package).`);
  const dh = H / heads;
  const [sq, sk, sv] = [headsSideBySide(cq, Lq, Wq, dh), headsSideBySide(ck, Lk, Wkv, dh), headsSideBySide(cv, Lk, Wkv, dh)];
  const [sP, sc] = [headsStacked(heads, Lq, Lk), headsSideBySide(0, Lq, H, dh)];
  const attrs = { heads, scale, columns, ...(dropout ? dropoutCallAttrs(dropout) : {}) };
  const forward = (qIn: tf.Tensor, kvIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const scores = headMatMul(qIn, kvIn, heads, [Lq, Lk, dh], [sq, transposedHeads(sk), sP], [B, heads, Lq, Lk]); // q·kᵀ [B, heads, Lq, Lk]
    // p = softmax(scores · scale + mask), and p dropped out (p itself without dropout)
    const [dropped, probs] = dropout
      ? (tf.engine().runKernel(DROPOUT_SOFTMAX, { x: scores, mask, base: dropout.base }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[])
      : Array<tf.Tensor>(2).fill(tf.engine().runKernel(SCALED_MASKED_SOFTMAX, { x: scores, mask }, { scale }) as tf.Tensor);
    const value = headMatMul(dropped, kvIn, heads, [Lq, dh, Lk], [sP, sv, sc], [B, Lq, H]); // dropout(p)·v [B, Lq, H]
    save([qIn, kvIn, probs, dropped, ...(dropout ? [dropout.base] : [])]);
    tf.dispose([scores, probs, dropped]);
    return value as tf.Tensor3D;
  };
  const grads = (dctx: tf.Tensor, saved: tf.Tensor[]) => {
    const [qS, kvS, probs, dropped, base] = saved;
    return tf.engine().runKernel(ATTENTION_GRAD, { dctx, q: qS, kv: kvS, p: probs, pd: dropped, ...(base ? { base } : {}) }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  };
  if (self) {
    return tf.customGrad((qkv, save) => ({ value: forward(qkv as tf.Tensor, qkv as tf.Tensor, save as tf.GradSaveFunc), gradFunc: (dy, saved) => grads(dy as tf.Tensor, saved)[0] }))(q) as tf.Tensor3D;
  }
  return tf.customGrad((qIn, kvIn, save) => ({ value: forward(qIn as tf.Tensor, kvIn as tf.Tensor, save as tf.GradSaveFunc), gradFunc: (dy, saved) => grads(dy as tf.Tensor, saved) }))(q, kv) as tf.Tensor3D;
}

/** Whether attentionInference can run: the backend has the fused kernel (native, webgpu) and no gradient is being recorded. */
export function attentionInPlace(): boolean {
  return nativeKernel(ATTENTION) && !tf.engine().isTapeOn();
}

/**
 * Multi-head attention for inference, fused: per head, softmax(q kᵀ · scale
 * + mask) v, with the heads read from and written to [B, L, H] in place and
 * no probabilities kept (native: blocks of query rows in a thread's cache;
 * webgpu: an online softmax per query row over key tiles in workgroup
 * memory). q, k and v may be column blocks of wider tensors, e.g. one
 * [B, L, 3H] projection passed three times with columns [0, H, 2H].
 * Null where it does not apply (see attentionInPlace; other shapes): the
 * caller then takes the differentiable path.
 * q [B, Lq, ≥H], k and v [B, Lk, ≥H], mask [B, 1, 1 or Lq, Lk] -> [B, Lq, H]
 */
export function attentionInference(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  mask: tf.Tensor4D,
  heads: number,
  scale: number,
  layout: { hidden: number; columns: [number, number, number] } = { hidden: q.shape[2], columns: [0, 0, 0] },
): tf.Tensor3D | null {
  if (!attentionInPlace()) return null;
  const [B, Lq] = q.shape;
  const [mB, mh, mq, mk] = mask.shape;
  const Lk = k.shape[1];
  const { hidden: H, columns } = layout;
  const fits = (t: tf.Tensor3D, column: number) => t.shape[0] === B && column >= 0 && column + H <= t.shape[2];
  if (H % heads !== 0 || Lk < 1 || !tf.util.arraysEqual(k.shape, v.shape) || !fits(q, columns[0]) || !fits(k, columns[1]) || !fits(v, columns[2])) return null;
  if (mB !== B || mh !== 1 || (mq !== 1 && mq !== Lq) || mk !== Lk || [q, k, v, mask].some((t) => t.dtype !== "float32")) return null;
  return tf.engine().runKernel(ATTENTION, { q, k, v, mask }, { heads, scale, hidden: H, columns }) as tf.Tensor3D;
}
