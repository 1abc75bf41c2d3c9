/**
 * Fused ops. On the native backend each is one C++ kernel: the
 * cross-entropy pieces make no [N, V] temporaries (a decoder batch's logits
 * are about 1,900 × 30,522 floats, 230 MB), and GELU is one pass forward and
 * one backward instead of five and a dozen. Elsewhere they are the tfjs ops
 * they stand for. Same values either way: the native test checks them
 * against these compositions.
 */
import * as tf from "./tf";

/** Kernel names, registered by the native backend only. */
export const LOG_SUM_EXP_ROWS = "RetroMAELogSumExpRows";
export const SOFTMAX_MINUS_ONE_HOT = "RetroMAESoftmaxMinusOneHot";
export const GELU = "RetroMAEGelu";
export const GELU_GRAD = "RetroMAEGeluGrad";

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

/** softmax(z) − onehot(y): the gradient of summed cross-entropy. z [N, V], y [N] int32 -> [N, V] */
export function softmaxMinusOneHot(z: tf.Tensor2D, y: tf.Tensor1D): tf.Tensor2D {
  if (nativeKernel(SOFTMAX_MINUS_ONE_HOT)) return tf.engine().runKernel(SOFTMAX_MINUS_ONE_HOT, { x: z, labels: y }, {}) as tf.Tensor2D;
  return tf.tidy(() => tf.sub(tf.softmax(z), tf.oneHot(y, z.shape[1], 1, 0, "float32"))) as tf.Tensor2D;
}

/**
 * x·Eᵀ + b, the tied MLM decoder. x [N, H], E [V, H], b [V] -> [N, V]. On
 * native, one fused matmul (the bias added as the rows are written); on the
 * other backends, a matmul and an add (wasm's fused matmul has no fast
 * transposed path).
 */
export function tiedLogits(x: tf.Tensor2D, E: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  if (nativeKernel(LOG_SUM_EXP_ROWS)) return tf.fused.matMul({ a: x, b: E, transposeB: true, bias }) as tf.Tensor2D;
  return tf.tidy(() => tf.add(tf.matMul(x, E, false, true), bias)) as tf.Tensor2D;
}

/** Exact GELU: x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), with its gradient. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (nativeKernel(GELU)) return tf.engine().runKernel(GELU, { x }, {}) as tf.Tensor;
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}
