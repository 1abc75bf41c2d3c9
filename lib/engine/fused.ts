/**
 * Fused pieces of softmax cross-entropy over the vocabulary. On the native
 * backend each is one C++ kernel that makes no [N, V] temporaries (a decoder
 * batch's logits are about 1,900 × 30,522 floats, 230 MB); elsewhere they are
 * the tfjs ops they stand for. Same values either way: the native test
 * checks them against these compositions.
 */
import * as tf from "./tf";

/** Kernel names, registered by the native backend only. */
export const LOG_SUM_EXP_ROWS = "RetroMAELogSumExpRows";
export const SOFTMAX_MINUS_ONE_HOT = "RetroMAESoftmaxMinusOneHot";

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
