/**
 * Kernels that training needs and that @tensorflow/tfjs-backend-wasm 4.22 does
 * not register. Found by running a BERT forward and backward pass on wasm
 * (test/engine.test.ts does it on every run):
 *
 * - UnsortedSegmentSum: the gradient of `gather` (embedding lookups, picking
 *   the label logit in cross-entropy).
 *
 * They run in JavaScript on the wasm heap: read the inputs, compute, write the
 * output into a tensor the wasm backend owns. Correctness is checked against
 * the cpu backend's kernels in test/engine.test.ts.
 */
import * as tf from "./tf";
import type { KernelConfig, NamedAttrMap, TensorInfo, TypedArray } from "@tensorflow/tfjs-core";

/** The part of BackendWasm these kernels use. */
interface WasmBackendLike {
  readSync(dataId: object): TypedArray | Uint8Array[];
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): TypedArray;
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * out[segmentIds[i], ...] += x[i, ...] for each leading index i of segmentIds.
 * x: [...segmentIds.shape, ...inner]; out: [numSegments, ...inner].
 * Ids outside [0, numSegments) are dropped, as TensorFlow does.
 */
const unsortedSegmentSum: KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: "wasm",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const { numSegments } = attrs as unknown as { numSegments: number } & NamedAttrMap;
    const wasm = backend as unknown as WasmBackendLike;
    const inner = x.shape.slice(segmentIds.shape.length);
    const innerSize = product(inner);
    const rows = product(segmentIds.shape);
    const out = wasm.makeOutput([numSegments, ...inner], x.dtype);
    const dst = wasm.typedArrayFromHeap(out);
    dst.fill(0);
    if (rows === 0 || innerSize === 0) return out;
    const src = wasm.readSync(x.dataId) as TypedArray;
    const ids = wasm.readSync(segmentIds.dataId) as TypedArray;
    for (let r = 0; r < rows; r++) {
      const seg = ids[r];
      if (seg < 0 || seg >= numSegments) continue;
      const so = r * innerSize;
      const dOff = seg * innerSize;
      for (let j = 0; j < innerSize; j++) dst[dOff + j] += src[so + j];
    }
    return out;
  },
};

export const WASM_EXTRA_KERNELS: readonly KernelConfig[] = [unsortedSegmentSum];

let registered = false;

/** Register the missing kernels for wasm; safe to call more than once. */
export function registerWasmKernels(): void {
  if (registered) return;
  for (const k of WASM_EXTRA_KERNELS) {
    if (!tf.getKernel(k.kernelName, "wasm")) tf.registerKernel(k);
  }
  registered = true;
}
