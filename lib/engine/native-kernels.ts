/**
 * The kernels the "native" backend runs in C++ (lib/engine/native.ts,
 * native/src/kernels.cc). Each handles float32 (Transpose and GatherV2 any
 * 4-byte or bool data) in the shapes the training step uses; any other case
 * runs the cpu backend's kernel, so results never depend on which path ran.
 * test/engine/native.test.ts checks each against the cpu backend.
 */
import * as tf from "./tf";
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs-core";
import { native, NativeBackend, NATIVE_BACKEND } from "./native";
import { ATTENTION, ADD_LAYER_NORM, GELU, GELU_GRAD, LAYER_NORM_GRAD, LOG_SUM_EXP_ARG_MAX, LOG_SUM_EXP_ROWS, SCALED_MASKED_SOFTMAX, SCALED_SOFTMAX_GRAD, SOFTMAX_MINUS_ONE_HOT, SOFTMAX_MINUS_ONE_HOT_COL_SUM } from "./fused";

type Args = Parameters<KernelFunc>[0];

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * A float32 tensor's data. The cpu backend's Cast from bool or int32 keeps
 * the input's Uint8Array/Int32Array under the new dtype; those are converted.
 */
function values(backend: NativeBackend, t: TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values as Float32Array | Int32Array | Uint8Array;
  return v instanceof Float32Array ? v : Float32Array.from(v);
}

/** An int32 tensor's data (a Uint8Array when cast from bool). */
function ints(backend: NativeBackend, t: TensorInfo): Int32Array {
  const v = backend.data.get(t.dataId).values as Int32Array | Uint8Array | Float32Array;
  return v instanceof Int32Array ? v : Int32Array.from(v);
}

/** Data for the byte-moving kernels, in the array type of its dtype. */
function raw(backend: NativeBackend, t: TensorInfo): Float32Array | Int32Array | Uint8Array {
  if (t.dtype === "float32") return values(backend, t);
  if (t.dtype === "int32") return ints(backend, t);
  const v = backend.data.get(t.dataId).values as Uint8Array;
  return v instanceof Uint8Array ? v : Uint8Array.from(v);
}

/** The cpu backend's kernel for the cases the native one does not take. */
function cpuKernel(name: string): KernelFunc {
  const k = tf.getKernel(name, "cpu");
  if (!k) throw new Error(`tfjs-backend-cpu has no ${name} kernel`);
  return k.kernelFunc;
}

function kernel(kernelName: string, run: (args: Args, backend: NativeBackend) => TensorInfo | null): KernelConfig {
  let fallback: KernelFunc | null = null;
  return {
    kernelName,
    backendName: NATIVE_BACKEND,
    kernelFunc: (args) => {
      const out = run(args, args.backend as NativeBackend);
      if (out) return out;
      fallback ??= cpuKernel(kernelName);
      return fallback(args);
    },
  };
}

function output(backend: NativeBackend, shape: number[], fill: (out: Float32Array) => void): TensorInfo {
  const out = backend.alloc(size(shape));
  fill(out);
  return backend.makeTensorInfo(shape, "float32", out);
}

// ---- matrix products --------------------------------------------------------

/** Broadcast batch dims of a [..., M, K] x [..., K, N]; null when the addon's "equal or 1" rule does not cover them. */
function batchPlan(a: TensorInfo, b: TensorInfo, transA: boolean, transB: boolean) {
  if (a.dtype !== "float32" || b.dtype !== "float32" || a.shape.length < 2 || b.shape.length < 2) return null;
  const ra = a.shape.length, rb = b.shape.length;
  const M = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const K2 = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== K2) return null; // the cpu kernel throws its own error
  const outerA = a.shape.slice(0, -2), outerB = b.shape.slice(0, -2);
  const batchA = size(outerA), batchB = size(outerB);
  let lead: number[];
  try {
    lead = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return null;
  }
  const batch = size(lead);
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) return null;
  return { M, N, K, batch, batchA, batchB, shape: [...lead, M, N] };
}

const batchMatMul = kernel(tf.BatchMatMul, ({ inputs, attrs }, backend) => {
  const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  const p = batchPlan(a, b, transposeA, transposeB);
  if (!p) return null;
  return output(backend, p.shape, (out) =>
    native().matmul(values(backend, a), values(backend, b), out, p.batch, p.batchA, p.batchB, p.M, p.N, p.K, transposeA, transposeB, null, 0),
  );
});

const fusedMatMul = kernel(tf._FusedMatMul, ({ inputs, attrs }, backend) => {
  const { a, b, bias, preluActivationWeights } = inputs as Record<string, TensorInfo | undefined>;
  const { transposeA, transposeB, activation } = attrs as { transposeA: boolean; transposeB: boolean; activation: string };
  const act = activation === "linear" ? 0 : activation === "relu" ? 1 : -1;
  if (act < 0 || preluActivationWeights) return null;
  const p = batchPlan(a!, b!, transposeA, transposeB);
  if (!p) return null;
  // a bias of N values along the last axis, or one value
  if (bias && (bias.dtype !== "float32" || !(size(bias.shape) === 1 || (bias.shape[bias.shape.length - 1] === p.N && size(bias.shape) === p.N)))) return null;
  return output(backend, p.shape, (out) =>
    native().matmul(values(backend, a!), values(backend, b!), out, p.batch, p.batchA, p.batchB, p.M, p.N, p.K, transposeA, transposeB, bias ? values(backend, bias) : null, act),
  );
});

// ---- element-wise -----------------------------------------------------------

/**
 * Out dims and the strides a and b are read with (0 where broadcast), with
 * adjacent dims merged wherever both inputs allow it.
 */
export function broadcastPlan(aShape: readonly number[], bShape: readonly number[]): { shape: number[]; dims: Int32Array; sa: Int32Array; sb: Int32Array } {
  const shape = tf.backend_util.assertAndGetBroadcastShape([...aShape], [...bShape]);
  const rank = shape.length;
  const stridesFor = (s: readonly number[]): number[] => {
    const padded = [...Array(rank - s.length).fill(1), ...s];
    const st = new Array<number>(rank);
    let acc = 1;
    for (let d = rank - 1; d >= 0; d--) {
      st[d] = padded[d] === 1 ? 0 : acc;
      acc *= padded[d];
    }
    return st;
  };
  const sa = stridesFor(aShape), sb = stridesFor(bShape);
  const dims: number[] = [], da: number[] = [], db: number[] = [];
  for (let d = 0; d < rank; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && da[last] === sa[d] * shape[d] && db[last] === sb[d] * shape[d]) {
      dims[last] *= shape[d];
      da[last] = sa[d];
      db[last] = sb[d];
    } else {
      dims.push(shape[d]);
      da.push(sa[d]);
      db.push(sb[d]);
    }
  }
  if (dims.length === 0) dims.push(1), da.push(0), db.push(0);
  return { shape, dims: Int32Array.from(dims), sa: Int32Array.from(da), sb: Int32Array.from(db) };
}

const BINARY: [string, number][] = [
  [tf.Add, 0],
  [tf.Sub, 1],
  [tf.Multiply, 2],
  [tf.RealDiv, 3],
  [tf.Maximum, 4],
  [tf.Minimum, 5],
  [tf.SquaredDifference, 6],
  [tf.Pow, 7],
];

const binaryKernels = BINARY.map(([name, op]) =>
  kernel(name, ({ inputs }, backend) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    if (a.dtype !== "float32" || b.dtype !== "float32") return null;
    const p = broadcastPlan(a.shape, b.shape);
    if (p.dims.length > 8) return null;
    return output(backend, p.shape, (out) => native().binary(op, values(backend, a), values(backend, b), out, p.dims, p.sa, p.sb));
  }),
);

const UNARY: [string, number][] = [
  [tf.Exp, 0],
  [tf.Log, 1],
  [tf.Sqrt, 2],
  [tf.Rsqrt, 3],
  [tf.Neg, 4],
  [tf.Square, 5],
  [tf.Erf, 6],
  [tf.Tanh, 7],
  [tf.Abs, 8],
  [tf.Reciprocal, 9],
  [tf.Relu, 10],
  [tf.Sigmoid, 11],
  [tf.Step, 12],
  [tf.Log1p, 13],
  [tf.Sign, 14],
  [tf.Softplus, 15],
  [tf.Floor, 16],
  [tf.Ceil, 17],
  [tf.Round, 18],
  [tf.Sin, 19],
  [tf.Cos, 20],
  [tf.Elu, 21],
  [tf.Selu, 22],
  [tf.Relu6, 23],
  [tf.Expm1, 24],
];

const unaryKernels = UNARY.map(([name, op]) =>
  kernel(name, ({ inputs, attrs }, backend) => {
    const { x } = inputs as { x: TensorInfo };
    if (x.dtype !== "float32") return null;
    const alpha = (attrs as { alpha?: number } | undefined)?.alpha ?? 0;
    return output(backend, [...x.shape], (out) => native().unary(op, values(backend, x), out, alpha));
  }),
);

const clipByValue = kernel(tf.ClipByValue, ({ inputs, attrs }, backend) => {
  const { x } = inputs as { x: TensorInfo };
  const { clipValueMin, clipValueMax } = attrs as { clipValueMin: number; clipValueMax: number };
  if (x.dtype !== "float32") return null;
  return output(backend, [...x.shape], (out) => native().clip(values(backend, x), out, clipValueMin, clipValueMax));
});

// ---- reductions -------------------------------------------------------------

const transposeFunc = (x: TensorInfo, perm: number[], backend: NativeBackend): TensorInfo => {
  const out = backend.alloc(size(x.shape));
  native().transpose(values(backend, x), out, Int32Array.from(x.shape), Int32Array.from(perm));
  return backend.makeTensorInfo(perm.map((p) => x.shape[p]), x.dtype, out);
};

function reduceKernel(name: string, op: number): KernelConfig {
  return kernel(name, ({ inputs, attrs }, backend) => {
    const { x } = inputs as { x: TensorInfo };
    // Max names its axes reductionIndices; the others, axis
    const { axis, reductionIndices, keepDims } = attrs as { axis?: number | number[]; reductionIndices?: number | number[]; keepDims: boolean };
    if (x.dtype !== "float32" || x.shape.length === 0 || size(x.shape) === 0) return null;
    const rank = x.shape.length;
    const axes = [...new Set(tf.util.parseAxisParam((axis ?? reductionIndices)!, [...x.shape]))].sort((p, q) => p - q);
    const kept = [...Array(rank).keys()].filter((d) => !axes.includes(d));
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : kept.map((d) => x.shape[d]);
    const inner = size(axes.map((d) => x.shape[d]));
    const outer = size(kept.map((d) => x.shape[d]));
    const innermost = axes.every((d, i) => d === rank - axes.length + i);
    const outermost = axes.every((d, i) => d === i);
    if (innermost) {
      return output(backend, outShape, (out) => native().reduce(op, values(backend, x), out, outer, inner, true));
    }
    if (outermost) {
      // x as [inner (reduced), outer (kept)]
      return output(backend, outShape, (out) => native().reduce(op, values(backend, x), out, inner, outer, false));
    }
    const t = transposeFunc(x, [...kept, ...axes], backend);
    const result = output(backend, outShape, (out) => native().reduce(op, values(backend, t), out, outer, inner, true));
    backend.disposeIntermediateTensorInfo(t);
    return result;
  });
}

const reductions = [reduceKernel(tf.Sum, 0), reduceKernel(tf.Max, 1), reduceKernel(tf.Min, 2), reduceKernel(tf.Mean, 3), reduceKernel(tf.Prod, 4)];

const softmax = kernel(tf.Softmax, ({ inputs, attrs }, backend) => {
  const { logits } = inputs as { logits: TensorInfo };
  const { dim } = attrs as { dim: number };
  const rank = logits.shape.length;
  if (logits.dtype !== "float32" || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
  const cols = logits.shape[rank - 1];
  return output(backend, [...logits.shape], (out) => native().softmax(values(backend, logits), out, size(logits.shape) / Math.max(cols, 1), cols));
});

// The fused cross-entropy pieces of lib/engine/fused.ts (no cpu versions: fused.ts composes tfjs ops elsewhere).
const logSumExpRows: KernelConfig = {
  kernelName: LOG_SUM_EXP_ROWS,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { x } = inputs as { x: TensorInfo };
    const [rows, cols] = x.shape;
    return output(backend as NativeBackend, [rows], (out) => native().logSumExpRows(values(backend as NativeBackend, x), out, rows, cols));
  },
};

const softmaxMinusOneHot: KernelConfig = {
  kernelName: SOFTMAX_MINUS_ONE_HOT,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { x, labels } = inputs as { x: TensorInfo; labels: TensorInfo };
    const be = backend as NativeBackend;
    const [rows, cols] = x.shape;
    return output(be, [rows, cols], (out) => native().softmaxMinusOneHot(values(be, x), ints(be, labels), out, rows, cols));
  },
};

const logSumExpArgMax: KernelConfig = {
  kernelName: LOG_SUM_EXP_ARG_MAX,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { x } = inputs as { x: TensorInfo };
    const be = backend as NativeBackend;
    const [rows, cols] = x.shape;
    const lse = be.alloc(rows), idx = new Int32Array(rows);
    native().logSumExpRows(values(be, x), lse, rows, cols, idx);
    return [be.makeTensorInfo([rows], "float32", lse), be.makeTensorInfo([rows], "int32", idx)];
  },
};

const softmaxMinusOneHotColSum: KernelConfig = {
  kernelName: SOFTMAX_MINUS_ONE_HOT_COL_SUM,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { x, labels } = inputs as { x: TensorInfo; labels: TensorInfo };
    const be = backend as NativeBackend;
    const [rows, cols] = x.shape;
    const out = be.alloc(rows * cols), colSum = be.alloc(cols);
    native().softmaxMinusOneHot(values(be, x), ints(be, labels), out, rows, cols, colSum);
    return [be.makeTensorInfo([rows, cols], "float32", out), be.makeTensorInfo([cols], "float32", colSum)];
  },
};

const gelu: KernelConfig = {
  kernelName: GELU,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { x } = inputs as { x: TensorInfo };
    const be = backend as NativeBackend;
    return output(be, [...x.shape], (out) => native().gelu(values(be, x), out));
  },
};

const addLayerNorm: KernelConfig = {
  kernelName: ADD_LAYER_NORM,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, residual, gamma, beta } = inputs as Record<string, TensorInfo | undefined>;
    const be = backend as NativeBackend;
    const H = x!.shape[x!.shape.length - 1];
    const rows = size(x!.shape) / H;
    const { eps, stats } = attrs as { eps: number; stats?: boolean };
    const y = be.alloc(rows * H);
    // xhat and 1/σ unless told the gradient will not want them (fused.ts tells when the tape is off)
    const keep = stats !== false;
    const xhat = keep ? be.alloc(rows * H) : null, rstd = keep ? be.alloc(rows) : null;
    native().addLayerNorm(values(be, x!), residual ? values(be, residual) : null, values(be, gamma!), values(be, beta!), y, xhat, rstd, rows, H, eps);
    const out = be.makeTensorInfo([...x!.shape], "float32", y);
    return xhat && rstd ? [out, be.makeTensorInfo([...x!.shape], "float32", xhat), be.makeTensorInfo([rows], "float32", rstd)] : [out];
  },
};

const layerNormGrad: KernelConfig = {
  kernelName: LAYER_NORM_GRAD,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { dy, xhat, rstd, gamma } = inputs as Record<string, TensorInfo>;
    const be = backend as NativeBackend;
    const H = gamma.shape[gamma.shape.length - 1];
    const rows = size(dy.shape) / H;
    const ds = be.alloc(rows * H), dgamma = be.alloc(H), dbeta = be.alloc(H);
    native().layerNormGrad(values(be, dy), values(be, xhat), values(be, rstd), values(be, gamma), ds, dgamma, dbeta, rows, H);
    return [be.makeTensorInfo([...dy.shape], "float32", ds), be.makeTensorInfo([...gamma.shape], "float32", dgamma), be.makeTensorInfo([...gamma.shape], "float32", dbeta)];
  },
};

const scaledMaskedSoftmax: KernelConfig = {
  kernelName: SCALED_MASKED_SOFTMAX,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, mask } = inputs as { x: TensorInfo; mask: TensorInfo };
    const be = backend as NativeBackend;
    const [B, heads, Lq, Lk] = x.shape;
    return output(be, [...x.shape], (out) => native().scaledMaskedSoftmax(values(be, x), values(be, mask), out, B, heads, Lq, Lk, mask.shape[2], (attrs as { scale: number }).scale));
  },
};

const attention: KernelConfig = {
  kernelName: ATTENTION,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v, mask } = inputs as Record<string, TensorInfo>;
    const be = backend as NativeBackend;
    // q, k and v may be one stacked projection (the same tensor), each read from its own first column
    const { heads, scale, hidden: H, columns } = attrs as unknown as { heads: number; scale: number; hidden: number; columns: [number, number, number] };
    const [B, Lq, ldq] = q.shape;
    const [, Lk, ldkv] = k.shape;
    const view = (t: TensorInfo, column: number) => values(be, t).subarray(column);
    return output(be, [B, Lq, H], (out) => native().attention(view(q, columns[0]), view(k, columns[1]), view(v, columns[2]), values(be, mask), out, B, heads, Lq, Lk, H / heads, mask.shape[2], scale, ldq, ldkv));
  },
};

const scaledSoftmaxGrad: KernelConfig = {
  kernelName: SCALED_SOFTMAX_GRAD,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { p, dy } = inputs as { p: TensorInfo; dy: TensorInfo };
    const be = backend as NativeBackend;
    const cols = p.shape[p.shape.length - 1];
    return output(be, [...p.shape], (out) => native().scaledSoftmaxGrad(values(be, p), values(be, dy), out, size(p.shape) / cols, cols, (attrs as { scale: number }).scale));
  },
};

const geluGrad: KernelConfig = {
  kernelName: GELU_GRAD,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, backend }) => {
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const be = backend as NativeBackend;
    return output(be, [...x.shape], (out) => native().geluGrad(values(be, x), values(be, dy), out));
  },
};

// ---- data movement ----------------------------------------------------------

function typedOutput(backend: NativeBackend, t: TensorInfo, n: number): Float32Array | Int32Array | Uint8Array | null {
  if (t.dtype === "float32") return backend.alloc(n);
  if (t.dtype === "int32") return new Int32Array(n);
  if (t.dtype === "bool") return new Uint8Array(n);
  return null;
}

const transpose = kernel(tf.Transpose, ({ inputs, attrs }, backend) => {
  const { x } = inputs as { x: TensorInfo };
  const { perm } = attrs as { perm: number[] };
  const rank = x.shape.length;
  if (rank < 1 || rank > 8 || perm.length !== rank) return null;
  const out = typedOutput(backend, x, size(x.shape));
  if (!out) return null;
  if (out.length > 0) native().transpose(raw(backend, x), out, Int32Array.from(x.shape), Int32Array.from(perm));
  return backend.makeTensorInfo(perm.map((p) => x.shape[p]), x.dtype, out);
});

const gatherV2 = kernel(tf.GatherV2, ({ inputs, attrs }, backend) => {
  const { x, indices } = inputs as { x: TensorInfo; indices: TensorInfo };
  const { axis, batchDims } = attrs as { axis: number; batchDims: number };
  if (batchDims !== 0 || indices.dtype !== "int32" || x.shape.length === 0) return null;
  const ax = tf.util.parseAxisParam(axis, [...x.shape])[0];
  const outShape = [...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)];
  const out = typedOutput(backend, x, size(outShape));
  if (!out) return null;
  const idx = ints(backend, indices);
  const dimSize = x.shape[ax];
  if (out.length > 0) {
    const bad = native().gather(raw(backend, x), idx, out, size(x.shape.slice(0, ax)), dimSize, size(x.shape.slice(ax + 1)));
    if (bad >= 0) throw new Error(`GatherV2: the index value ${idx[bad]} is not in [0, ${dimSize - 1}]`);
  }
  return backend.makeTensorInfo(outShape, x.dtype, out);
});

function sliceInto(backend: NativeBackend, x: TensorInfo, begin: number[], size: number[]): TensorInfo | null {
  if (x.shape.length < 1 || x.shape.length > 8) return null;
  const out = typedOutput(backend, x, size.reduce((p, q) => p * q, 1));
  if (!out) return null;
  if (out.length > 0) native().slice(raw(backend, x), out, Int32Array.from(x.shape), Int32Array.from(begin), Int32Array.from(size));
  return backend.makeTensorInfo(size, x.dtype, out);
}

const slice = kernel(tf.Slice, ({ inputs, attrs }, backend) => {
  const { x } = inputs as { x: TensorInfo };
  const { begin, size: sz } = attrs as { begin: number | number[]; size: number | number[] };
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, sz);
  tf.slice_util.assertParamsValid(x as tf.Tensor, b, s);
  return sliceInto(backend, x, b, s);
});

const splitV = {
  kernelName: tf.SplitV,
  backendName: NATIVE_BACKEND,
  kernelFunc: ({ inputs, attrs, backend }: Args) => {
    const { x } = inputs as { x: TensorInfo };
    const { numOrSizeSplits, axis } = attrs as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, [...x.shape])[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const part = sliceInto(backend as NativeBackend, x, [...begin], size) ?? cpuKernel(tf.Slice)({ inputs: { x }, backend, attrs: { begin: [...begin], size } });
      begin[ax] += s;
      return part as TensorInfo;
    });
  },
} as KernelConfig;

/** Output of `shape` filled with `value`, then each part placed at its offset. */
function assemble(backend: NativeBackend, dtype: string, shape: number[], value: number | null, parts: { t: TensorInfo; offset: number[] }[]): TensorInfo | null {
  if ((dtype !== "float32" && dtype !== "int32") || shape.length < 1 || shape.length > 8) return null;
  const n = size(shape);
  const out = dtype === "float32" ? backend.alloc(n) : new Int32Array(n);
  if (value !== null && n > 0) native().fill4(out, value, dtype === "float32");
  for (const { t, offset } of parts) {
    if (size(t.shape) === 0) continue;
    native().place(raw(backend, t), out, Int32Array.from(t.shape), Int32Array.from(shape), Int32Array.from(offset));
  }
  return backend.makeTensorInfo(shape, dtype as "float32" | "int32", out);
}

const padV2 = kernel(tf.PadV2, ({ inputs, attrs }, backend) => {
  const { x } = inputs as { x: TensorInfo };
  const { paddings, constantValue } = attrs as { paddings: [number, number][]; constantValue: number };
  if (x.shape.length === 0) return null;
  const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
  return assemble(backend, x.dtype, shape, constantValue, [{ t: x, offset: paddings.map((p) => p[0]) }]);
});

const concat = kernel(tf.Concat, ({ inputs, attrs }, backend) => {
  const ts = inputs as unknown as TensorInfo[];
  const { axis } = attrs as { axis: number };
  if (ts.length === 0 || ts.some((t) => t.dtype !== ts[0].dtype || t.shape.length !== ts[0].shape.length) || ts[0].shape.length === 0) return null;
  const ax = tf.util.parseAxisParam(axis, [...ts[0].shape])[0];
  const shape = [...ts[0].shape];
  shape[ax] = ts.reduce((s, t) => s + t.shape[ax], 0);
  let at = 0;
  const parts = ts.map((t) => {
    const offset = new Array<number>(shape.length).fill(0);
    offset[ax] = at;
    at += t.shape[ax];
    return { t, offset };
  });
  return assemble(backend, ts[0].dtype, shape, null, parts);
});

const oneHot = kernel(tf.OneHot, ({ inputs, attrs }, backend) => {
  const { indices } = inputs as { indices: TensorInfo };
  const { depth, onValue, offValue, dtype } = attrs as { depth: number; onValue: number; offValue: number; dtype: string };
  if (dtype !== "float32" || indices.dtype !== "int32") return null;
  return output(backend, [...indices.shape, depth], (out) => native().oneHot(ints(backend, indices), out, depth, onValue, offValue));
});

const argMax = kernel(tf.ArgMax, ({ inputs, attrs }, backend) => {
  const { x } = inputs as { x: TensorInfo };
  const { axis } = attrs as { axis: number | number[] };
  const rank = x.shape.length;
  const ax = tf.util.parseAxisParam(axis, [...x.shape])[0];
  if (x.dtype !== "float32" || rank === 0 || ax !== rank - 1 || x.shape[ax] === 0) return null;
  const outShape = x.shape.slice(0, -1);
  const out = new Int32Array(size(outShape));
  native().argMax(values(backend, x), out, out.length, x.shape[ax]);
  return backend.makeTensorInfo(outShape, "int32", out);
});

const unsortedSegmentSum = kernel(tf.UnsortedSegmentSum, ({ inputs, attrs }, backend) => {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = attrs as NamedAttrMap as { numSegments: number };
  if (x.dtype !== "float32" || segmentIds.dtype !== "int32") return null;
  const rows = size(segmentIds.shape);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = size(innerShape);
  return output(backend, [numSegments, ...innerShape], (out) =>
    native().segmentSum(values(backend, x), ints(backend, segmentIds), out, rows, inner, numSegments),
  );
});

/** Every kernel the native backend runs in C++. */
export const NATIVE_KERNELS: readonly KernelConfig[] = [
  batchMatMul,
  fusedMatMul,
  ...binaryKernels,
  ...unaryKernels,
  clipByValue,
  ...reductions,
  softmax,
  logSumExpRows,
  softmaxMinusOneHot,
  logSumExpArgMax,
  softmaxMinusOneHotColSum,
  gelu,
  geluGrad,
  addLayerNorm,
  layerNormGrad,
  scaledMaskedSoftmax,
  scaledSoftmaxGrad,
  attention,
  transpose,
  gatherV2,
  slice,
  splitV,
  oneHot,
  argMax,
  padV2,
  concat,
  unsortedSegmentSum,
];
