/**
 * The "native" tfjs backend: tfjs-backend-cpu with its hot kernels replaced
 * by C++ (native/src), OpenBLAS or the bundled GEMM for the matrix products and OpenMP threads
 * for the rest. Tensor data stays in the JavaScript typed arrays the cpu
 * backend keeps; the addon reads and writes them in place, with no copies.
 *
 * Every kernel the cpu backend has is registered for "native" too, so an op
 * without a native version runs the cpu one on the same data.
 *
 * Outputs of native kernels come from a pool of buffers in size classes
 * (eight per octave, so a batch with a few more masked tokens than the last
 * still finds one), refilled when tensors are disposed: a training step
 * reuses the previous step's buffers instead of allocating (and
 * page-faulting) fresh ones. Page faults on fresh memory cost more than the
 * arithmetic on these machines: a first matmul into a new 227 MB output
 * took 436 ms, the same into a reused one 80 ms. A buffer goes back to the pool only when no tensor still uses it,
 * views made by the cpu kernels (`subarray`) included, and `dataSync()`
 * hands users a copy of pooled data, so a pooled buffer is never visible
 * outside the backend.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "./tf";
import { PACKAGE_ROOT } from "../util/files";
import { collectGarbage } from "../util/gc";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import type { backend_util, DataId, DataType, KernelConfig } from "@tensorflow/tfjs-core";

/** The addon's functions (native/src/addon.cc). */
export interface NativeAddon {
  matmul(a: Float32Array, b: Float32Array, out: Float32Array, batch: number, batchA: number, batchB: number, m: number, n: number, k: number, transA: boolean, transB: boolean, bias: Float32Array | null, act: number): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, dims: Int32Array, strideA: Int32Array, strideB: Int32Array): void;
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void;
  gelu(x: Float32Array, out: Float32Array): void;
  scaledMaskedSoftmax(x: Float32Array, mask: Float32Array, out: Float32Array, B: number, heads: number, Lq: number, Lk: number, maskRows: number, scale: number): void;
  attention(q: Float32Array, k: Float32Array, v: Float32Array, mask: Float32Array, out: Float32Array, B: number, heads: number, Lq: number, Lk: number, dh: number, maskRows: number, scale: number, ldq: number, ldkv: number): void;
  scaledSoftmaxGrad(p: Float32Array, dp: Float32Array, dx: Float32Array, rows: number, cols: number, scale: number): void;
  addLayerNorm(x: Float32Array, residual: Float32Array | null, gamma: Float32Array, beta: Float32Array, y: Float32Array, xhat: Float32Array | null, rstd: Float32Array | null, rows: number, H: number, eps: number): void;
  layerNormGrad(dy: Float32Array, xhat: Float32Array, rstd: Float32Array, gamma: Float32Array, ds: Float32Array, dgamma: Float32Array, dbeta: Float32Array, rows: number, H: number): void;
  geluGrad(x: Float32Array, dy: Float32Array, out: Float32Array): void;
  clip(x: Float32Array, out: Float32Array, lo: number, hi: number): void;
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, inner: number, innerAxis: boolean): void;
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  logSumExpRows(x: Float32Array, out: Float32Array, rows: number, cols: number, argmax?: Int32Array | null): void;
  softmaxMinusOneHot(x: Float32Array, labels: Int32Array, out: Float32Array, rows: number, cols: number, colSum?: Float32Array | null): void;
  transpose(x: ArrayBufferView, out: ArrayBufferView, dims: Int32Array, perm: Int32Array): void;
  gather(x: ArrayBufferView, indices: Int32Array, out: ArrayBufferView, outer: number, dimSize: number, inner: number): number;
  slice(x: ArrayBufferView, out: ArrayBufferView, dims: Int32Array, begin: Int32Array, size: Int32Array): void;
  place(x: ArrayBufferView, out: ArrayBufferView, dims: Int32Array, outDims: Int32Array, offset: Int32Array): void;
  fill4(out: Float32Array | Int32Array, value: number, asFloat: boolean): void;
  oneHot(indices: Int32Array, out: Float32Array, depth: number, onValue: number, offValue: number): void;
  argMax(x: Float32Array, out: Int32Array, outer: number, inner: number): void;
  segmentSum(x: Float32Array, ids: Int32Array, out: Float32Array, rows: number, inner: number, numSegments: number): void;
  adamw(p: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, b1: number, b2: number, eps: number, decay: number, stepSize: number, sqrtBc2: number, gradScale: number): void;
  /** The GEMM in use ("openblas 0.3.21", "bundled avx512"); with a name ("openblas", "bundled", "bundled/avx2"...), switches to it first. */
  gemm(name?: string): string;
  threads(n?: number): number;
  keepFreedMemory(): boolean;
  releaseFreeMemory(): boolean;
}


/** Where `npm install` builds the addon (RETROMAE_NATIVE_ADDON overrides it), and where its build writes why it failed. */
export const ADDON_PATH = process.env.RETROMAE_NATIVE_ADDON ?? path.join(PACKAGE_ROOT, "native", "build", "Release", "retromae_native.node");
export const BUILD_ERROR_PATH = path.join(PACKAGE_ROOT, "native", "build-error.txt");

let addon: NativeAddon | null = null;
let loadError: string | null = null;

/** Load the addon once; null with `nativeUnavailableReason()` set when it can't be. */
export function loadAddon(): NativeAddon | null {
  if (addon || loadError) return addon;
  if (!fs.existsSync(ADDON_PATH)) {
    const why = fs.existsSync(BUILD_ERROR_PATH) ? fs.readFileSync(BUILD_ERROR_PATH, "utf8").trim().split("\n")[0] : `no file at ${ADDON_PATH}`;
    loadError = `the native addon is not built (${why}); install g++ (and, optionally, libopenblas-dev), then run npm rebuild`;
    return null;
  }
  // OpenMP threads sleep between kernels instead of spinning, so the cores
  // are free for the JavaScript thread between kernels (read once, when
  // libgomp loads). The GEMM (OpenBLAS or bundled) runs single-threaded inside them.
  process.env.OMP_WAIT_POLICY ??= "PASSIVE";
  try {
    addon = require(ADDON_PATH) as NativeAddon;
  } catch (err) {
    loadError = `the native addon failed to load (${(err as Error).message.split("\n")[0]}); run npm rebuild`;
    return null;
  }
  // RETROMAE_GEMM=openblas|bundled|bundled/avx2|...: which GEMM the addon multiplies with
  const gemm = process.env.RETROMAE_GEMM;
  if (gemm) {
    try {
      addon.gemm(gemm);
    } catch (err) {
      loadError = `RETROMAE_GEMM=${gemm}: ${(err as Error).message}`;
      addon = null;
    }
  }
  return addon;
}

export function nativeUnavailableReason(): string | null {
  loadAddon();
  return loadError;
}

/**
 * Give the process's free C-heap pages back to the OS (glibc's malloc_trim), as
 * an idle kernel does 250 ms after each cell: the native backend keeps freed
 * memory mapped for the next training step (keepFreedMemory), so without this
 * a process stays as big as its biggest step. The buffer pool is not touched
 * (emptyCache). Does nothing (false) until the addon has been loaded; true
 * when memory was released.
 */
export function releaseFreeMemory(): boolean {
  return addon?.releaseFreeMemory() ?? false;
}

/**
 * Empty the native backend's pool of free tensor buffers and collect them, as
 * torch.cuda.empty_cache() empties PyTorch's caching allocator: an idle kernel
 * does this after 30 s without a cell. The memory reaches the OS at the next
 * releaseFreeMemory() (the collector frees buffers' memory in the background,
 * just after); the next step allocates, and page-faults, afresh (a 64 × 512
 * mini encode: ~1.1 s → 1.5–1.9 s once). Returns the pool's bytes; 0 where the
 * native backend is not in use.
 */
export function emptyCache(): number {
  // the backend only if it was made (findBackend would make it)
  const be = tf.engine().registry[NATIVE_BACKEND];
  if (!(be instanceof NativeBackend)) return 0;
  const bytes = be.poolBytes();
  be.drainPool();
  // A full collection frees the drained buffers now rather than whenever the next allocation asks for one.
  collectGarbage();
  return bytes;
}

function theAddon(): NativeAddon {
  const a = loadAddon();
  if (!a) throw new Error(`The native backend is unavailable: ${loadError}.`);
  return a;
}

interface TensorData {
  values?: backend_util.BackendValues;
  dtype: DataType;
  refCount: number;
}

/** The pool's size class for n floats: n itself up to 4096, else n rounded up to an eighth of its octave. */
export function sizeClass(n: number): number {
  if (n <= 4096) return n;
  const step = 2 ** Math.floor(Math.log2(n)) / 8;
  return Math.ceil(n / step) * step;
}

/** tfjs-backend-cpu's backend with a buffer pool for the native kernels' outputs. */
export class NativeBackend extends MathBackendCPU {
  /** Free buffers by length. */
  private readonly pool = new Map<number, Float32Array[]>();
  private pooledBytes = 0;
  /** Buffers handed out by alloc(): how many tensor data entries use each. */
  private readonly users = new Map<ArrayBufferLike, number>();
  /** Most bytes the pool keeps (a quarter of the machine's memory, at most 4 GiB); beyond it, freed buffers go to the garbage collector. */
  maxPooledBytes = Math.min(2 ** 32, os.totalmem() / 4);
  stats = { allocated: 0, reused: 0 };

  constructor() {
    super();
    (this as unknown as { firstUse: boolean }).firstUse = false; // no "install tfjs-node" notice
  }

  /** A Float32Array of length n, from the pool when one is free. Its contents are arbitrary. */
  alloc(n: number): Float32Array {
    const cap = sizeClass(n);
    let a = this.pool.get(cap)?.pop();
    if (!a && n > 65536) {
      // shapes vary from batch to batch (masked-token counts, sequence lengths):
      // the smallest free buffer up to 4× bigger serves too
      let best = Infinity;
      for (const [k, list] of this.pool) if (list.length > 0 && k > cap && k < best && k <= cap * 4) best = k;
      if (best < Infinity) a = this.pool.get(best)!.pop();
    }
    if (a) {
      this.pooledBytes -= a.byteLength;
      this.stats.reused++;
    } else {
      a = new Float32Array(cap);
      this.stats.allocated++;
    }
    this.users.set(a.buffer, 0);
    return a.length === n ? a : a.subarray(0, n);
  }

  private track(values: backend_util.BackendValues | undefined): void {
    const buf = (values as ArrayBufferView | undefined)?.buffer;
    if (buf !== undefined) {
      const n = this.users.get(buf);
      if (n !== undefined) this.users.set(buf, n + 1);
    }
  }

  override write(values: backend_util.BackendValues, shape: number[], dtype: DataType): DataId {
    this.track(values);
    return super.write(values, shape, dtype);
  }

  override move(dataId: DataId, values: backend_util.BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    this.track(values);
    super.move(dataId, values, shape, dtype, refCount);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const entry = this.data.has(dataId) ? (this.data.get(dataId) as TensorData) : null;
    const released = super.disposeData(dataId, force);
    if (released && entry && !this.data.has(dataId)) this.release(entry.values);
    return released;
  }

  private release(values: backend_util.BackendValues | undefined): void {
    const view = values as Float32Array | undefined;
    const buf = view?.buffer;
    if (!view || buf === undefined) return;
    const n = this.users.get(buf);
    if (n === undefined) return;
    if (n > 1) {
      this.users.set(buf, n - 1);
      return;
    }
    this.users.delete(buf);
    if (this.pooledBytes + buf.byteLength > this.maxPooledBytes) return;
    const whole = new Float32Array(buf);
    const list = this.pool.get(whole.length) ?? [];
    list.push(whole);
    this.pool.set(whole.length, list);
    this.pooledBytes += buf.byteLength;
  }

  /** Whether a tensor's data is a pooled buffer that only this tensor uses (safe to update in place). */
  ownsExclusively(dataId: DataId): boolean {
    const entry = this.data.get(dataId) as TensorData;
    const buf = (entry?.values as ArrayBufferView | undefined)?.buffer;
    return entry?.refCount === 1 && buf !== undefined && this.users.get(buf) === 1;
  }

  override readSync(dataId: DataId): backend_util.BackendValues {
    const values = super.readSync(dataId);
    const buf = (values as ArrayBufferView).buffer;
    // user-facing reads (dataSync, data, buffer) get a copy of pooled memory
    return buf !== undefined && this.users.has(buf) ? (values as Float32Array).slice() : values;
  }

  /** Empty the pool (the buffers go to the garbage collector). */
  drainPool(): void {
    this.pool.clear();
    this.pooledBytes = 0;
  }

  poolBytes(): number {
    return this.pooledBytes;
  }

  override dispose(): void {
    this.drainPool();
    super.dispose();
  }
}

export const NATIVE_BACKEND = "native";
/** Above wasm (2) and cpu (1): where the addon loads, code that never picks a backend gets this one. */
const PRIORITY = 3;

let kernelsRegistered = false;

function registerNativeKernels(overrides: readonly KernelConfig[]): void {
  if (kernelsRegistered) return;
  const replaced = new Set(overrides.map((k) => k.kernelName));
  for (const k of tf.getKernelsForBackend("cpu")) {
    if (!replaced.has(k.kernelName)) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
  for (const k of overrides) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  kernelsRegistered = true;
}

let backendRegistered = false;

/**
 * Register the "native" backend with tfjs (once). Its factory loads the
 * addon; where that fails, tfjs moves on to the next backend by priority.
 */
export function registerNativeBackend(overrides: () => readonly KernelConfig[]): void {
  // not registered where it was not built, so tfjs's own choice never tries it
  if (backendRegistered || !fs.existsSync(ADDON_PATH)) return;
  backendRegistered = true;
  tf.registerBackend(
    NATIVE_BACKEND,
    () => {
      // glibc keeps freed memory for reuse instead of unmapping it, so the
      // typed arrays the cpu kernels still allocate don't page-fault each step
      theAddon().keepFreedMemory();
      registerNativeKernels(overrides());
      return new NativeBackend();
    },
    PRIORITY,
  );
}

export interface AdamWStep {
  beta1: number;
  beta2: number;
  eps: number;
  /** 1 − lr·weightDecay, or 1 without decay */
  decay: number;
  /** lr / (1 − β1ᵗ) */
  stepSize: number;
  /** √(1 − β2ᵗ) */
  sqrtBc2: number;
}

/**
 * One AdamW update of a weight and its moments, in place, in one pass (the
 * tensor version takes eleven ops and as many new buffers per weight). Only
 * on the native backend, and only where p, m and v hold pooled buffers that
 * no other tensor shares; returns false otherwise, and the caller takes the
 * tensor path (which puts them in such buffers for the next step).
 */
export function adamwInPlace(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, h: AdamWStep): boolean {
  const be = tf.engine().backend;
  if (!(be instanceof NativeBackend) || tf.getBackend() !== NATIVE_BACKEND) return false;
  if ([p, m, v, g].some((t) => t.dtype !== "float32") || !be.ownsExclusively(p.dataId) || !be.ownsExclusively(m.dataId) || !be.ownsExclusively(v.dataId)) return false;
  const data = (t: tf.Tensor) => be.data.get(t.dataId).values as Float32Array;
  const gv = data(g);
  if (!(gv instanceof Float32Array)) return false;
  theAddon().adamw(data(p), data(m), data(v), gv, h.beta1, h.beta2, h.eps, h.decay, h.stepSize, h.sqrtBc2, 1);
  return true;
}

/** The addon, for kernels; throws one sentence when it is unavailable. */
export function native(): NativeAddon {
  return theAddon();
}
