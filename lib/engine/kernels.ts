/**
 * Kernels registered on top of tfjs 4.22's wasm and cpu backends.
 *
 * Missing on wasm, found by running a BERT forward and backward pass there
 * (test/engine/backend.test.ts does it on every run):
 * - UnsortedSegmentSum: the gradient of `gather` (embedding lookups).
 *
 * Replaced on cpu, for speed: UnsortedSegmentSum and Softmax (see below).
 *
 * A fix for wasm: OneHot with dtype float32 (see float32OneHot).
 *
 * And one wrapper for wasm, for speed: wasm's BatchMatMul is fast only without
 * transposes (measured here: 24 GFLOP/s plain, 0.8 GFLOP/s with transposeB on
 * [1984,128]x[30522,128]ᵀ). Every matmul gradient asks for a transpose, so
 * the wrapper transposes the operand with wasm's Transpose kernel (a copy,
 * O(size)) and calls the plain kernel.
 *
 * The segment sums run in JavaScript: read the inputs, compute, write the
 * output into a tensor the backend owns. test/engine/backend.test.ts checks
 * them against a plain-JS sum and each other.
 */
import * as tf from "./tf";
import type { KernelConfig, NamedAttrMap, NamedTensorInfoMap, TensorInfo, TypedArray } from "@tensorflow/tfjs-core";

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
 * out[segmentIds[i], ...] += x[i, ...] for each i. x: [n, ...inner],
 * segmentIds: [n]; out: [numSegments, ...inner]. Ids outside
 * [0, numSegments) are dropped, as TensorFlow does. One pass over x.
 */
export function segmentSum(src: ArrayLike<number>, ids: ArrayLike<number>, rows: number, innerSize: number, numSegments: number, dst: Float32Array | Int32Array): void {
  dst.fill(0);
  for (let r = 0; r < rows; r++) {
    const seg = ids[r];
    if (seg < 0 || seg >= numSegments) continue;
    const so = r * innerSize;
    const dOff = seg * innerSize;
    for (let j = 0; j < innerSize; j++) dst[dOff + j] += src[so + j];
  }
}

function segmentArgs(inputs: NamedTensorInfoMap, attrs: NamedAttrMap | undefined) {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = attrs as unknown as { numSegments: number };
  const inner = x.shape.slice(segmentIds.shape.length);
  return { x, segmentIds, numSegments, inner, innerSize: product(inner), rows: product(segmentIds.shape) };
}

const unsortedSegmentSumWasm: KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: "wasm",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, segmentIds, numSegments, inner, innerSize, rows } = segmentArgs(inputs, attrs);
    const wasm = backend as unknown as WasmBackendLike;
    const out = wasm.makeOutput([numSegments, ...inner], x.dtype);
    const dst = wasm.typedArrayFromHeap(out) as Float32Array | Int32Array;
    if (rows === 0 || innerSize === 0) {
      dst.fill(0);
      return out;
    }
    segmentSum(wasm.readSync(x.dataId) as TypedArray, wasm.readSync(segmentIds.dataId) as TypedArray, rows, innerSize, numSegments, dst);
    return out;
  },
};

/**
 * tfjs-backend-cpu 4.22 has UnsortedSegmentSum, but it loops over segments
 * with a full equal/multiply/sum per segment: O(numSegments · n). For the
 * word-embedding gradient (30,522 segments) one call took 71 s here. This
 * replaces it with the same one-pass sum.
 */
const unsortedSegmentSumCpu: KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: "cpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, segmentIds, numSegments, inner, innerSize, rows } = segmentArgs(inputs, attrs);
    const cpu = backend as unknown as CpuBackendLike;
    const dst = x.dtype === "int32" ? new Int32Array(numSegments * innerSize) : new Float32Array(numSegments * innerSize);
    if (rows > 0 && innerSize > 0) {
      segmentSum(cpu.readSync(x.dataId) as TypedArray, cpu.readSync(segmentIds.dataId) as TypedArray, rows, innerSize, numSegments, dst);
    }
    return cpu.makeTensorInfo([numSegments, ...inner], x.dtype, dst);
  },
};

/**
 * tfjs-backend-cpu's Softmax is composed of max, sub, exp, sum and div
 * kernels with broadcasting: 1.15 s for [120, 30522] here. This is the same
 * row-wise softmax over the last axis in one pass per row (max, exp and sum,
 * scale), as float32 like the original.
 */
const softmaxCpu: KernelConfig = {
  kernelName: tf.Softmax,
  backendName: "cpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { logits } = inputs as { logits: TensorInfo };
    const { dim } = attrs as unknown as { dim: number };
    const rank = logits.shape.length;
    if (dim !== -1 && dim !== rank - 1) {
      throw new Error(`Softmax along axis ${dim} of a rank-${rank} tensor is not supported; only the last axis is.`);
    }
    const cpu = backend as unknown as CpuBackendLike;
    const x = cpu.readSync(logits.dataId) as Float32Array;
    const n = logits.shape[rank - 1] ?? 1;
    const out = new Float32Array(x.length);
    for (let r = 0; r < x.length; r += n) {
      let max = -Infinity;
      for (let j = r; j < r + n; j++) if (x[j] > max) max = x[j];
      let sum = 0;
      for (let j = r; j < r + n; j++) {
        const e = Math.fround(Math.exp(x[j] - max));
        out[j] = e;
        sum += e;
      }
      const inv = 1 / Math.fround(sum);
      for (let j = r; j < r + n; j++) out[j] *= inv;
    }
    return cpu.makeTensorInfo([...logits.shape], "float32", out);
  },
};

/** The part of MathBackendCPU the cpu kernel uses. */
interface CpuBackendLike {
  readSync(dataId: object): unknown;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: TypedArray): TensorInfo;
}

export const WASM_EXTRA_KERNELS: readonly KernelConfig[] = [unsortedSegmentSumWasm];

/** Kernels that replace slow ones of tfjs-backend-cpu. */
export const CPU_REPLACED_KERNELS: readonly KernelConfig[] = [unsortedSegmentSumCpu, softmaxCpu];

/** The BackendWasm internals the batched matmul uses to address slices of the heap without copying. */
interface WasmInternals {
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } ; delete(dataId: object): boolean };
  wasm: { HEAPF32: Float32Array; tfjs: { disposeData(id: number): void } };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/**
 * BatchMatMul for wasm, fast in both cases wasm 4.22 is slow at:
 *
 * - transposes: done first with wasm's Transpose kernel (a copy, O(size));
 * - batches: wasm's kernel takes XNNPACK's fast path only for a batch of 1
 *   and a naive loop otherwise (2.4 GFLOP/s measured on attention's
 *   [128 × 256 × 64] batches). Each batch is run as its own 2-D matmul on a
 *   view of the heap (no copy of the inputs), and written into one output.
 *
 * Batch shapes that broadcast other than "equal" or "one side is 1" go to
 * the original kernel.
 */
function fastBatchMatMul(original: KernelConfig): KernelConfig {
  const transpose = tf.getKernel(tf.Transpose, "wasm");
  return {
    ...original,
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args;
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const internals = backend as unknown as WasmInternals;
      const temps: TensorInfo[] = [];
      const swapLast = (x: TensorInfo): TensorInfo => {
        const r = x.shape.length;
        const perm = [...Array(r).keys()];
        [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
        const t = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm } }) as TensorInfo;
        temps.push(t);
        return t;
      };
      const a0 = (inputs as { a: TensorInfo }).a;
      const b0 = (inputs as { b: TensorInfo }).b;
      const a = transposeA ? swapLast(a0) : a0;
      const b = transposeB ? swapLast(b0) : b0;
      const plain = { ...attrs, transposeA: false, transposeB: false };
      const batchA = product(a.shape.slice(0, -2));
      const batchB = product(b.shape.slice(0, -2));
      const batch = Math.max(batchA, batchB);
      let out: TensorInfo;
      if (batch <= 1 || (batchA !== batchB && batchA !== 1 && batchB !== 1) || a.dtype !== "float32") {
        out = original.kernelFunc({ inputs: { a, b }, backend, attrs: plain }) as TensorInfo;
      } else {
        const [m, k] = a.shape.slice(-2);
        const n = b.shape[b.shape.length - 1];
        const lead = (batchA >= batchB ? a : b).shape.slice(0, -2);
        out = internals.makeOutput([...lead, m, n], "float32");
        const heapOut = internals.dataIdMap.get(out.dataId).memoryOffset / 4;
        const aOff = internals.dataIdMap.get(a.dataId).memoryOffset;
        const bOff = internals.dataIdMap.get(b.dataId).memoryOffset;
        const view = (offset: number, shape: number[]): TensorInfo => internals.makeOutput(shape, "float32", offset);
        const release = (t: TensorInfo): void => {
          const id = internals.dataIdMap.get(t.dataId).id;
          internals.dataIdMap.delete(t.dataId);
          internals.wasm.tfjs.disposeData(id); // unregister only: the memory belongs to a or b
        };
        for (let i = 0; i < batch; i++) {
          const av = view(aOff + (batchA === 1 ? 0 : i * m * k * 4), [m, k]);
          const bv = view(bOff + (batchB === 1 ? 0 : i * k * n * 4), [k, n]);
          const r = original.kernelFunc({ inputs: { a: av, b: bv }, backend, attrs: plain }) as TensorInfo;
          const rOff = internals.dataIdMap.get(r.dataId).memoryOffset / 4;
          // HEAPF32 is read after the call: the heap may have grown and been replaced
          const heap = internals.wasm.HEAPF32;
          heap.copyWithin(heapOut + i * m * n, rOff, rOff + m * n);
          internals.disposeData(r.dataId, true);
          release(av);
          release(bv);
        }
      }
      for (const t of temps) internals.disposeData(t.dataId);
      return out;
    },
  };
}

let cpuRegistered = false;

/** Replace tfjs-backend-cpu's slow kernels; safe to call more than once. */
export function registerCpuKernels(): void {
  if (cpuRegistered) return;
  for (const k of CPU_REPLACED_KERNELS) {
    if (tf.getKernel(k.kernelName, "cpu")) tf.unregisterKernel(k.kernelName, "cpu");
    tf.registerKernel(k);
  }
  cpuRegistered = true;
}

/**
 * wasm 4.22's OneHot writes int32 bit patterns whatever the dtype asked for,
 * so a float32 one-hot reads as 1.4e-45 where it should be 1. This runs it
 * as int32 and casts with wasm's Cast kernel.
 */
function float32OneHot(original: KernelConfig): KernelConfig {
  const cast = tf.getKernel(tf.Cast, "wasm");
  return {
    ...original,
    kernelFunc: (args) => {
      const { dtype } = args.attrs as unknown as { dtype: string };
      if (dtype !== "float32") return original.kernelFunc(args);
      const ints = original.kernelFunc({ ...args, attrs: { ...args.attrs, dtype: "int32" } }) as TensorInfo;
      const out = cast.kernelFunc({ inputs: { x: ints }, backend: args.backend, attrs: { dtype: "float32" } }) as TensorInfo;
      (args.backend as unknown as WasmInternals).disposeData(ints.dataId);
      return out;
    },
  };
}

let registered = false;

/** Register the missing kernels and the matmul and one-hot wrappers for wasm; safe to call more than once. */
export function registerWasmKernels(): void {
  if (registered) return;
  for (const k of WASM_EXTRA_KERNELS) {
    if (!tf.getKernel(k.kernelName, "wasm")) tf.registerKernel(k);
  }
  const matmul = tf.getKernel(tf.BatchMatMul, "wasm");
  if (matmul) {
    tf.unregisterKernel(tf.BatchMatMul, "wasm");
    tf.registerKernel(fastBatchMatMul(matmul));
  }
  const oneHot = tf.getKernel(tf.OneHot, "wasm");
  if (oneHot) {
    tf.unregisterKernel(tf.OneHot, "wasm");
    tf.registerKernel(float32OneHot(oneHot));
  }
  registered = true;
}
