/**
 * Kernels that training needs and that @tensorflow/tfjs-backend-wasm 4.22 does
 * not register. Found by running a BERT forward and backward pass on wasm
 * (test/engine.test.ts does it on every run):
 *
 * - UnsortedSegmentSum: the gradient of `gather` (embedding lookups).
 *
 * And one wrapper for speed: wasm's BatchMatMul is fast only without
 * transposes (measured here: 24 GFLOP/s plain, 0.8 GFLOP/s with transposeB on
 * [1984,128]x[30522,128]ᵀ). Every matmul gradient asks for a transpose, so
 * the wrapper transposes the operand with wasm's Transpose kernel (a copy,
 * O(size)) and calls the plain kernel.
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

interface WasmDisposer {
  disposeData(dataId: object): boolean;
}

/** BatchMatMul with transposes done by an explicit Transpose, then the plain (fast) wasm kernel. */
function transposeFirst(original: KernelConfig): KernelConfig {
  const transpose = tf.getKernel(tf.Transpose, "wasm");
  return {
    ...original,
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args;
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return original.kernelFunc(args);
      const temps: TensorInfo[] = [];
      const swapLast = (x: TensorInfo): TensorInfo => {
        const r = x.shape.length;
        const perm = [...Array(r).keys()];
        [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
        const t = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm } }) as TensorInfo;
        temps.push(t);
        return t;
      };
      const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
      const out = original.kernelFunc({
        inputs: { a: transposeA ? swapLast(a) : a, b: transposeB ? swapLast(b) : b },
        backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
      for (const t of temps) (backend as unknown as WasmDisposer).disposeData(t.dataId);
      return out;
    },
  };
}

let registered = false;

/** Register the missing kernels and the matmul wrapper for wasm; safe to call more than once. */
export function registerWasmKernels(): void {
  if (registered) return;
  for (const k of WASM_EXTRA_KERNELS) {
    if (!tf.getKernel(k.kernelName, "wasm")) tf.registerKernel(k);
  }
  const matmul = tf.getKernel(tf.BatchMatMul, "wasm");
  if (matmul) {
    tf.unregisterKernel(tf.BatchMatMul, "wasm");
    tf.registerKernel(transposeFirst(matmul));
  }
  registered = true;
}
