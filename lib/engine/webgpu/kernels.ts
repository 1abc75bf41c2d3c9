/**
 * Kernels this project registers for tfjs's webgpu backend, in WGSL, run
 * through the backend's `runWebGPUProgram` or as raw dispatches (./raw.ts),
 * by topic:
 * - ./segment-sum.ts: UnsortedSegmentSum (every embedding's gradient),
 *   deterministic, bit for bit the cpu backend's;
 * - ./elementwise.ts: GELU and its gradient, dropout drawn on the device,
 *   the decoder's additive mask from bytes;
 * - ./layer-norm.ts: Add & LayerNorm each way, with the dropout, the
 *   embeddings' sum and the MLM heads' GELU inside;
 * - ./attention.ts: softmax with all-masked rows, the attention softmax
 *   each way, the whole attention for inference, and the attention in
 *   training on the heads side by side;
 * - ./cross-entropy.ts: the masked cross-entropy without [N, vocab]
 *   temporaries it does not need;
 * - ./dense.ts: the dense layers' fused forms and the matmuls without
 *   atomics (programs in ./matmul.ts);
 * - ./reduce.ts: column sums in a fixed order, and AddN within the
 *   adapter's limits;
 * - ./optimizer.ts: AdamW in place and the gradients' global norm (several
 *   buffers per dispatch, which a tfjs program cannot write).
 * Empty inputs: WebGPU rejects a dispatch that binds an empty buffer, and
 * its output keeps whatever its pooled buffer held. Every kernel returns
 * before it binds an empty input (a sum over no elements is zeros; the
 * backend's start refuses the rest in one sentence).
 *
 * Here: the registration, and Transpose by the identity permutation (two
 * per gather gradient) as a relabelling, not a copy.
 */
import * as tf from "../tf";
import { DENSE_WEIGHT_GRADS, EMBEDDINGS_LAYER_NORM_DROPOUT } from "../fused";
import type { KernelConfig, KernelFunc } from "@tensorflow/tfjs-core";
import { takeOver } from "./program";
import { deterministicUnsortedSegmentSum, embeddingGradWebGPU } from "./segment-sum";
import { additiveMaskOfBytesWebGPU, dropoutWebGPU, geluGradWebGPU, geluWebGPU } from "./elementwise";
import { addLayerNormWebGPU, dropoutAddLayerNormWebGPU, embeddingsLayerNormDropoutWebGPU, embeddingsLayerNormWebGPU, embeddingTablesGradWebGPU, geluLayerNormWebGPU, layerNormDropoutWebGPU, layerNormGradWebGPU } from "./layer-norm";
import { attentionGradWebGPU, attentionWebGPU, headMatMulWebGPU, robustSoftmax, scaledMaskedSoftmaxDropoutWebGPU, scaledMaskedSoftmaxWebGPU, scaledSoftmaxGradWebGPU, stackRowsWebGPU, unstackRowsWebGPU } from "./attention";
import { logSumExpArgMaxWebGPU, logSumExpRowsWebGPU, meanNllAccuracyWebGPU, pickLabelsWebGPU, softmaxMinusOneHotColSumWebGPU, softmaxMinusOneHotWebGPU } from "./cross-entropy";
import { denseAndInputWebGPU, denseGeluWebGPU, denseWeightGradsWebGPU, deterministicMatMul, geluLinearDxWebGPU } from "./dense";
import { chunkedAddN, leadingAxesSum } from "./reduce";

type Wrapped = KernelConfig & { original?: KernelFunc };

/** Replace tfjs's webgpu kernel `name` by `wrap(its own function)`, once however often this runs. The new function, or null. */
function wrapTfjsKernel(name: string, wrap: (original: KernelFunc) => KernelConfig): KernelFunc | null {
  const current = tf.getKernel(name, "webgpu") as Wrapped | undefined;
  if (!current) return null;
  const original = current.original ?? current.kernelFunc;
  tf.unregisterKernel(name, "webgpu");
  const config: Wrapped = { ...wrap(original), original };
  tf.registerKernel(config);
  return config.kernelFunc;
}

/**
 * Transpose with the identity permutation (tfjs's gather gradient asks for
 * two per gather) relabels the input's buffer, as Reshape does, instead of
 * copying it; any other permutation is tfjs's.
 */
const identityTranspose = (original: KernelFunc) =>
  takeOver<{ perm: number[] }>(tf.Transpose, original, (x, { perm }, backend) => {
    if (!perm.every((p, i) => p === i)) return null;
    (backend as { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });

/**
 * Register this project's webgpu kernels, replacing tfjs's where it has one.
 * `maxStorageBuffers` is the device's maxStorageBuffersPerShaderStage.
 */
export function registerWebGPUKernels(maxStorageBuffers: number): void {
  for (const k of [deterministicUnsortedSegmentSum, embeddingGradWebGPU, robustSoftmax, dropoutWebGPU, geluWebGPU, geluGradWebGPU, addLayerNormWebGPU, geluLayerNormWebGPU, dropoutAddLayerNormWebGPU, layerNormDropoutWebGPU, embeddingsLayerNormWebGPU, embeddingTablesGradWebGPU, layerNormGradWebGPU, scaledMaskedSoftmaxWebGPU, scaledMaskedSoftmaxDropoutWebGPU, scaledSoftmaxGradWebGPU, attentionWebGPU, headMatMulWebGPU, attentionGradWebGPU, stackRowsWebGPU, unstackRowsWebGPU, additiveMaskOfBytesWebGPU,
    logSumExpRowsWebGPU, logSumExpArgMaxWebGPU, softmaxMinusOneHotWebGPU, softmaxMinusOneHotColSumWebGPU, pickLabelsWebGPU, meanNllAccuracyWebGPU]) {
    if (tf.getKernel(k.kernelName, "webgpu")) tf.unregisterKernel(k.kernelName, "webgpu");
    tf.registerKernel(k);
  }
  // The embeddings' LayerNorm with dropout binds 9 storage buffers (y, x̂ and 1/σ; x, both tables, γ, β and the
  // step's seed): on an adapter that binds fewer, embeddingsLayerNorm declines it and the adds and LAYER_NORM_DROPOUT run.
  if (tf.getKernel(EMBEDDINGS_LAYER_NORM_DROPOUT, "webgpu")) tf.unregisterKernel(EMBEDDINGS_LAYER_NORM_DROPOUT, "webgpu");
  if (maxStorageBuffers >= 9) tf.registerKernel(embeddingsLayerNormDropoutWebGPU);
  wrapTfjsKernel(tf.BatchMatMul, (original) => deterministicMatMul(tf.BatchMatMul, original));
  wrapTfjsKernel(tf.Sum, leadingAxesSum);
  wrapTfjsKernel(tf.Transpose, identityTranspose);
  const fusedMatMul = wrapTfjsKernel(tf._FusedMatMul, (original) => deterministicMatMul(tf._FusedMatMul, original));
  if (fusedMatMul) {
    for (const k of [denseGeluWebGPU(fusedMatMul), denseAndInputWebGPU(fusedMatMul), geluLinearDxWebGPU(fusedMatMul)]) {
      if (tf.getKernel(k.kernelName, "webgpu")) tf.unregisterKernel(k.kernelName, "webgpu");
      tf.registerKernel(k);
    }
  }
  const batchMatMul = tf.getKernel(tf.BatchMatMul, "webgpu")?.kernelFunc;
  if (batchMatMul) {
    if (tf.getKernel(DENSE_WEIGHT_GRADS, "webgpu")) tf.unregisterKernel(DENSE_WEIGHT_GRADS, "webgpu");
    tf.registerKernel(denseWeightGradsWebGPU(batchMatMul));
  }
  // One binding is the output; each input takes one.
  wrapTfjsKernel(tf.AddN, (original) => chunkedAddN(original, maxStorageBuffers - 1));
}
