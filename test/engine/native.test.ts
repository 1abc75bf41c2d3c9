/**
 * The native backend (lib/engine/native.ts, native-kernels.ts, native/src):
 * every kernel it replaces against tfjs-backend-cpu on random inputs, within
 * 1e-4 relative (plus 1e-6 absolute, for values near zero); the buffer pool's
 * safety; the fallback when the addon is missing; and the build script.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { backend, use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { native, NativeBackend, nativeUnavailableReason, sizeClass } from "../../lib/engine/native";
import { broadcastPlan, NATIVE_KERNELS } from "../../lib/engine/native-kernels";
import { addLayerNorm, attentionInference, logSumExpArgMax, scaledMaskedSoftmax, softmaxMinusOneHotColSum, gelu, GELU, LOG_SUM_EXP_ROWS, logSumExpRows, SOFTMAX_MINUS_ONE_HOT, softmaxMinusOneHot, tiedLogits } from "../../lib/engine/fused";

const ROOT = path.resolve(__dirname, "..", "..");

interface Input {
  data: Float32Array | Int32Array | Uint8Array;
  shape: number[];
  dtype: "float32" | "int32" | "bool";
}

const rng = new Rng(11);

function randn(shape: number[], scale = 1): Input {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: rng.fillNormal(new Float32Array(n), 0, scale), shape, dtype: "float32" };
}

function positive(shape: number[]): Input {
  const x = randn(shape);
  x.data = (x.data as Float32Array).map((v) => Math.abs(v) + 0.1);
  return x;
}

function ints(shape: number[], hi: number, lo = 0): Input {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Int32Array.from({ length: n }, () => lo + rng.int(hi - lo)), shape, dtype: "int32" };
}

/** Run fn on the cpu backend and on native with the same inputs; results must agree. */
async function same(label: string, fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[], inputs: Input[], rtol = 1e-4, atol = 1e-6): Promise<void> {
  const results: { shape: number[]; dtype: string; data: number[] }[][] = [];
  for (const name of ["cpu", "native"]) {
    await tf.setBackend(name);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => {
      const r = fn(...inputs.map((i) => tf.tensor(i.data, i.shape, i.dtype)));
      return Array.isArray(r) ? r : [r];
    });
    results.push(out.map((t) => ({ shape: t.shape, dtype: t.dtype, data: Array.from(t.dataSync()) })));
    tf.dispose(out);
    assert.is(tf.memory().numTensors, before, `${label} (${name}): no tensors left behind`);
  }
  const [cpu, nat] = results;
  assert.is(nat.length, cpu.length, label);
  cpu.forEach((c, k) => {
    const n = nat[k];
    assert.equal(n.shape, c.shape, `${label}: shape`);
    assert.is(n.dtype, c.dtype, `${label}: dtype`);
    for (let i = 0; i < c.data.length; i++) {
      const [a, b] = [n.data[i], c.data[i]];
      if (Number.isNaN(b)) {
        assert.ok(Number.isNaN(a), `${label}[${i}]: NaN expected, got ${a}`);
        continue;
      }
      if (a === b) continue;
      assert.ok(Math.abs(a - b) <= rtol * Math.abs(b) + atol, `${label}[${i}]: native ${a}, cpu ${b}`);
    }
  });
}

test.before(async () => {
  if (nativeUnavailableReason()) {
    throw new Error(`The native addon is needed here (${nativeUnavailableReason()}); install g++ and run npm rebuild (.ci/run does).`);
  }
  await use("native");
});

test("use('native') runs the addon's kernels; every cpu kernel exists for native too", () => {
  assert.is(tf.getBackend(), "native");
  assert.instance(tf.backend(), NativeBackend);
  const info = backend.info();
  assert.is(info.backend, "native");
  assert.ok(info.threads! >= 1);
  for (const k of NATIVE_KERNELS) assert.is(tf.getKernel(k.kernelName, "native")!.kernelFunc, k.kernelFunc, k.kernelName);
  for (const k of tf.getKernelsForBackend("cpu")) assert.ok(tf.getKernel(k.kernelName, "native"), k.kernelName);
});

/** Every GEMM this build and CPU have: OpenBLAS where linked, the bundled one with each microkernel. */
function gemms(): string[] {
  const all = ["openblas", "bundled/avx512", "bundled/avx2", "bundled/scalar"];
  const start = native().gemm();
  const out = all.filter((g) => {
    try {
      native().gemm(g);
      return true;
    } catch {
      return false;
    }
  });
  native().gemm(start.startsWith("openblas") ? "openblas" : "bundled");
  return out;
}

async function eachGemm(fn: (gemm: string) => Promise<void>): Promise<void> {
  const start = native().gemm();
  try {
    for (const g of gemms()) {
      native().gemm(g);
      await fn(g);
    }
  } finally {
    native().gemm(start.startsWith("openblas") ? "openblas" : "bundled");
  }
}

test("BatchMatMul: both transposes, batch dims, broadcast batches, empty and size-1 dims, with every GEMM", async () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[5, 3], [3, 4], false, false],
    [[5, 3], [4, 3], false, true],
    [[3, 5], [3, 4], true, false],
    [[3, 5], [4, 3], true, true],
    [[2, 6, 3], [2, 3, 4], false, false],
    [[2, 3, 6], [2, 4, 3], true, true],
    [[2, 2, 5, 3], [2, 2, 3, 4], false, false],
    [[2, 5, 3], [3, 4], false, false], // rank 3 x rank 2
    [[2, 5, 3], [1, 4, 3], false, true], // batch 1 broadcast
    [[1, 5, 3], [4, 3, 2], false, false],
    [[3, 1, 5, 3], [1, 2, 3, 4], false, false], // broadcast both ways: goes to the cpu kernel
    [[1, 3], [3, 1], false, false],
    [[0, 3], [3, 4], false, false],
    [[4, 0], [0, 3], false, false], // K = 0: zeros
    [[2, 0, 3], [2, 3, 4], false, false],
    [[64, 130], [130, 70], false, false], // large enough for the threaded path
    [[8, 33, 17], [8, 17, 29], false, false], // many small products
  ];
  await eachGemm(async (g) => {
    for (const [a, b, ta, tb] of cases) {
      // an entry sums K products: float32 rounding grows with √K times their scale (1 here)
      const K = ta ? a[a.length - 2] : a[a.length - 1];
      await same(`${g}: matMul ${a}x${b} ${ta} ${tb}`, (x, y) => tf.matMul(x, y, ta, tb), [randn(a), randn(b)], 1e-4, 1e-5 * Math.sqrt(K));
    }
  });
});

test("the bundled GEMM's blocking edges: K past one packed block, M past one row block, N past one column block, partial tiles", async () => {
  assert.ok(gemms().some((g) => g.startsWith("bundled/")), "every build has the bundled GEMM");
  // KC = 256, MC = 192, NC = 4096 (native/src/gemm.cc); 13, 197 and 4133 leave partial tiles for every MR and NR
  const cases: [number[], number[], boolean, boolean][] = [
    [[13, 600], [600, 37], false, false], // three K blocks: later blocks accumulate
    [[600, 13], [37, 600], true, true],
    [[197, 70], [70, 45], false, false], // two row blocks
    [[197, 70], [45, 70], false, true],
    [[70, 197], [70, 45], true, false],
    [[5, 40], [40, 4133], false, false], // two column blocks
    [[5, 40], [4133, 40], false, true],
  ];
  await eachGemm(async (g) => {
    if (!g.startsWith("bundled/")) return;
    for (const [a, b, ta, tb] of cases) {
      const K = ta ? a[0] : a[1];
      await same(`${g}: matMul ${a}x${b} ${ta} ${tb}`, (x, y) => tf.matMul(x, y, ta, tb), [randn(a), randn(b)], 1e-4, 1e-5 * Math.sqrt(K));
    }
  });
});

test("gemm(): the build names its GEMM, switches on request, and refuses an unknown one in one sentence", () => {
  const start = native().gemm();
  assert.match(start, /^(openblas \d+\.\d+\.\d+|bundled (avx512|avx2|scalar))$/);
  assert.is(backend.info().package, `retromae (native/, GEMM: ${start})`);
  assert.is(native().gemm("bundled/scalar"), "bundled scalar");
  assert.throws(() => native().gemm("mkl"), /^GEMM "mkl" is not available in this build on this CPU \(it has bundled scalar\); use openblas, bundled, bundled\/avx512, bundled\/avx2 or bundled\/scalar$/);
  native().gemm(start.startsWith("openblas") ? "openblas" : "bundled");
  assert.is(native().gemm(), start);
});

test("_FusedMatMul with a bias and relu; prelu goes to the cpu kernel", async () => {
  await same("fused bias", (x, y, z) => tf.fused.matMul({ a: x, b: y, bias: z }), [randn([6, 5]), randn([5, 7]), randn([7])]);
  await same("fused scalar bias relu", (x, y, z) => tf.fused.matMul({ a: x, b: y, bias: z, activation: "relu", transposeB: true }), [randn([6, 5]), randn([7, 5]), randn([1])]);
  await same("fused batch", (x, y) => tf.fused.matMul({ a: x, b: y, activation: "relu" }), [randn([3, 6, 5]), randn([3, 5, 7])]);
  await same("fused prelu", (x, y, w) => tf.fused.matMul({ a: x, b: y, activation: "prelu", preluActivationWeights: w }), [randn([6, 5]), randn([5, 7]), randn([7])]);
});

test("binary ops with broadcasting, scalars, empty tensors and int32 (cpu path)", async () => {
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
    ["add", tf.add],
    ["sub", tf.sub],
    ["mul", tf.mul],
    ["div", tf.div],
    ["maximum", tf.maximum],
    ["minimum", tf.minimum],
    ["squaredDifference", tf.squaredDifference],
  ];
  const shapes: [number[], number[]][] = [
    [[4, 5], [4, 5]],
    [[2, 3, 4], [4]],
    [[2, 3, 4], [3, 1]],
    [[2, 1, 4], [1, 3, 1]],
    [[5], []],
    [[], [2, 3]],
    [[1], [1]],
    [[0, 3], [3]],
    [[300, 200], [200]], // threaded
    [[3, 200, 100], [3, 1, 100]],
  ];
  for (const [name, op] of ops) {
    for (const [a, b] of shapes) await same(`${name} ${JSON.stringify(a)} ${JSON.stringify(b)}`, op, [randn(a), randn(b)]);
  }
  await same("pow", tf.pow, [positive([3, 4]), randn([4])]);
  await same("add int32", tf.add, [ints([3, 4], 10), ints([4], 10)]);
  await same("div by zero", tf.div, [randn([4]), { data: new Float32Array([0, 0, 1, -0]), shape: [4], dtype: "float32" }]);
});

test("unary ops, including NaN and large values", async () => {
  const x = randn([7, 9], 3);
  (x.data as Float32Array)[0] = NaN;
  (x.data as Float32Array)[1] = 100;
  (x.data as Float32Array)[2] = -100;
  const p = positive([7, 9]);
  const ops: [string, (t: tf.Tensor) => tf.Tensor, Input][] = [
    ["exp", tf.exp, x],
    ["log", tf.log, p],
    ["sqrt", tf.sqrt, p],
    ["rsqrt", tf.rsqrt, p],
    ["neg", tf.neg, x],
    ["square", tf.square, x],
    ["erf", tf.erf, x],
    ["tanh", tf.tanh, x],
    ["abs", tf.abs, x],
    ["reciprocal", tf.reciprocal, p],
    ["relu", tf.relu, x],
    ["sigmoid", tf.sigmoid, x],
    ["step", (t) => tf.step(t, 0.3), x],
    ["log1p", tf.log1p, p],
    ["sign", tf.sign, x],
    ["softplus", tf.softplus, x],
    ["floor", tf.floor, x],
    ["ceil", tf.ceil, x],
    ["round", tf.round, { data: new Float32Array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6]), shape: [7], dtype: "float32" }],
    ["sin", tf.sin, x],
    ["cos", tf.cos, x],
    ["elu", tf.elu, x],
    ["selu", tf.selu, x],
    ["relu6", tf.relu6, x],
    ["expm1", tf.expm1, x],
    ["clipByValue", (t) => tf.clipByValue(t, -0.5, 0.7), x],
  ];
  for (const [name, op, input] of ops) await same(name, op, [input]);
  // exp over its whole float range, in the threaded path
  const wide = { data: Float32Array.from({ length: 100_000 }, (_, i) => -100 + (200 * i) / 100_000), shape: [100_000], dtype: "float32" as const };
  await same("exp range", tf.exp, [wide]);
  await same("neg int32", tf.neg, [ints([5], 9, -9)]);
});

test("Sum, Max, Min, Mean, Prod over inner, outer and middle axes, with keepDims", async () => {
  const ops: [string, (t: tf.Tensor, axis?: number | number[], keep?: boolean) => tf.Tensor][] = [
    ["sum", tf.sum],
    ["max", tf.max],
    ["min", tf.min],
    ["mean", tf.mean],
    ["prod", tf.prod],
  ];
  const axes: (number | number[] | undefined)[] = [undefined, 0, 1, 2, -1, [0, 1], [1, 2], [0, 2]];
  for (const [name, op] of ops) {
    for (const axis of axes) {
      for (const keep of [false, true]) {
        const input = name === "prod" ? positive([3, 4, 5]) : randn([3, 4, 5]);
        await same(`${name} axis ${JSON.stringify(axis)} keep ${keep}`, (t) => op(t, axis, keep), [input], name === "prod" ? 1e-4 : 1e-4, 1e-5);
      }
    }
  }
  await same("sum big rows", (t) => tf.sum(t, -1), [randn([40, 30522])], 1e-4, 1e-4);
  await same("sum big cols", (t) => tf.sum(t, 0), [randn([2000, 64])], 1e-4, 1e-4);
  await same("max 1-D", (t) => tf.max(t), [randn([17])]);
  await same("sum int32 (cpu path)", (t) => tf.sum(t, 0), [ints([4, 3], 100)]);
});

test("Softmax over the last axis, with a masked row; logSumExp and ArgMax", async () => {
  const x = randn([5, 33], 20);
  (x.data as Float32Array).fill(-3.4e38, 0, 33);
  await same("softmax", (t) => tf.softmax(t), [x]);
  await same("softmax 3-D", (t) => tf.softmax(t), [randn([2, 3, 40])]);
  await same("softmax wide", (t) => tf.softmax(t), [randn([6, 30522], 5)]);
  await same("logSumExp", (t) => tf.logSumExp(t, -1), [randn([6, 100], 5)]);
  await same("argMax last axis", (t) => tf.argMax(t, -1), [randn([6, 100])]);
  await same("argMax axis 0 (cpu path)", (t) => tf.argMax(t, 0), [randn([6, 10])]);
  const ties = { data: new Float32Array([1, 3, 3, 0, 2, NaN, 2, 1]), shape: [2, 4], dtype: "float32" as const };
  await same("argMax ties and NaN", (t) => tf.argMax(t, -1), [ties]);
});

test("fused cross-entropy pieces (lib/engine/fused.ts): native kernels equal the tfjs compositions used elsewhere", async () => {
  const z = randn([7, 3001], 4);
  (z.data as Float32Array)[5] = 90; // a large logit: the max shift matters
  const labels = ints([7], 3001);
  (labels.data as Int32Array)[2] = -1; // outside [0, V): subtracts nothing, as oneHot gives a zero row
  await same("logSumExpRows", (t) => logSumExpRows(t as tf.Tensor2D), [z]);
  await same("softmaxMinusOneHot", (t, y) => softmaxMinusOneHot(t as tf.Tensor2D, y as tf.Tensor1D), [z, labels]);
  await same("logSumExpArgMax", (t) => logSumExpArgMax(t as tf.Tensor2D), [z]);
  await same("softmaxMinusOneHotColSum", (t, y) => softmaxMinusOneHotColSum(t as tf.Tensor2D, y as tf.Tensor1D), [z, labels], 1e-4, 1e-5);
  // the threaded paths: rows split across threads, per-thread column sums added up
  const big = randn([64, 3001], 3);
  await same("logSumExpArgMax, threaded", (t) => logSumExpArgMax(t as tf.Tensor2D), [big]);
  await same("softmaxMinusOneHotColSum, threaded", (t, y) => softmaxMinusOneHotColSum(t as tf.Tensor2D, y as tf.Tensor1D), [big, ints([64], 3001)], 1e-4, 1e-5);
  await same("tiedLogits", (x, e, b) => tiedLogits(x as tf.Tensor2D, e as tf.Tensor2D, b as tf.Tensor1D), [randn([9, 16]), randn([300, 16]), randn([300])], 1e-4, 1e-5 * 4);
  const x = randn([5, 301], 2);
  (x.data as Float32Array).set([0, -0, 8, -8, 1e-4, -30, 30], 0);
  await same("gelu", (t) => gelu(t), [x]);
  await same("gelu gradient", (t, dy) => tf.grad((u: tf.Tensor) => tf.mul(gelu(u), dy))(t), [x, randn([5, 301])]);
  await tf.setBackend("native");
  assert.ok(tf.getKernel(LOG_SUM_EXP_ROWS, "native") && tf.getKernel(SOFTMAX_MINUS_ONE_HOT, "native") && tf.getKernel(GELU, "native"));
  assert.not.ok(tf.getKernel(LOG_SUM_EXP_ROWS, "cpu"), "other backends use the composition");
});

test("fused Add & LayerNorm and the scaled masked attention softmax: values and every gradient equal the tfjs compositions", async () => {
  // a weighted sum gives each output its own upstream gradient
  const lnCase = async (label: string, shape: number[], withResidual: boolean) => {
    const H = shape[shape.length - 1];
    const W = randn(shape);
    const inputs = [randn(shape, 2), randn(shape), randn([H]), randn([H]), W];
    await same(label, (x, r, g, b, w) => {
      const y = addLayerNorm(x, withResidual ? r : null, g, b, 1e-12);
      if (!withResidual) return [y, ...tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(addLayerNorm(x, null, g, b, 1e-12), w)))([x, g, b])];
      return [y, ...tf.grads((x: tf.Tensor, r: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(addLayerNorm(x, r, g, b, 1e-12), w)))([x, r, g, b])];
    }, inputs, 1e-4, 1e-4);
  };
  await lnCase("layerNorm + residual", [3, 7, 32], true);
  await lnCase("layerNorm", [5, 16], false);
  await lnCase("layerNorm, threaded", [300, 256], true);

  const smCase = async (label: string, x: number[], mask: number[]) => {
    const m = randn(mask);
    (m.data as Float32Array).forEach((v, i, a) => (a[i] = v > 0.8 ? -10000 : 0)); // BERT's additive mask
    await same(label, (s, mk, w) => {
      const f = (s: tf.Tensor, mk: tf.Tensor) => tf.sum(tf.mul(scaledMaskedSoftmax(s as tf.Tensor4D, mk as tf.Tensor4D, 0.125), w));
      return [scaledMaskedSoftmax(s as tf.Tensor4D, mk as tf.Tensor4D, 0.125), ...tf.grads(f)([s, mk])];
    }, [randn(x, 3), m, randn(x)], 1e-4, 1e-5);
  };
  await smCase("softmax, padding mask [B, 1, 1, L]", [2, 3, 5, 7], [2, 1, 1, 7]);
  await smCase("softmax, decoder mask [B, 1, L, L]", [2, 2, 6, 6], [2, 1, 6, 6]);
  await smCase("softmax, threaded", [4, 4, 64, 64], [4, 1, 1, 64]);
});

test("Add & LayerNorm in inference writes y alone, and the same y as under a gradient tape, bit for bit", async () => {
  await tf.setBackend("native");
  for (const [shape, withResidual] of [[[3, 7, 32], true], [[5, 16], false], [[300, 256], true]] as const) {
    const H = shape[shape.length - 1];
    const [x, r, g, b] = [tf.randomNormal([...shape], 0, 2, "float32", 1), tf.randomNormal([...shape], 0, 1, "float32", 2), tf.randomNormal([H], 0, 1, "float32", 3), tf.randomNormal([H], 0, 1, "float32", 4)];
    const before = tf.memory().numTensors;
    const inference = addLayerNorm(x, withResidual ? r : null, g, b, 1e-12);
    assert.is(tf.memory().numTensors, before + 1, "one output (no xhat, no 1/σ)");
    let taped: Float32Array | null = null;
    tf.grad((u: tf.Tensor) => {
      const y = addLayerNorm(u, withResidual ? r : null, g, b, 1e-12);
      taped = y.dataSync() as Float32Array;
      return tf.sum(y);
    })(x).dispose();
    assert.equal(Array.from(inference.dataSync()), Array.from(taped!), `${shape.join("×")}: the same values`);
    tf.dispose([x, r, g, b, inference]);
  }
});

test("fused inference attention: heads read in place, blocks of query rows, both mask shapes; not taken under a gradient tape", async () => {
  // the composition it replaces: split heads, softmax(q kᵀ · scale + mask) v, merge heads
  const reference = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor, nh: number, scale: number) => {
    const split = (x: tf.Tensor) => x.reshape([x.shape[0] as number, x.shape[1] as number, nh, -1]).transpose([0, 2, 1, 3]);
    const p = tf.softmax(tf.add(tf.mul(tf.matMul(split(q), split(k), false, true), scale), mask));
    const c = tf.matMul(p, split(v));
    return c.transpose([0, 2, 1, 3]).reshape(q.shape);
  };
  const run = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, m: tf.Tensor, nh: number) => {
    const fused = attentionInference(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, m as tf.Tensor4D, nh, 0.125);
    if (tf.getBackend() === "native") assert.ok(fused, "native takes the fused kernel");
    return fused ?? reference(q, k, v, m, nh, 0.125);
  };
  const masked = (shape: number[]) => {
    const m = randn(shape);
    (m.data as Float32Array).forEach((x, i, a) => (a[i] = x > 0.8 ? -10000 : 0));
    return m;
  };
  // self-attention, padding mask, 2 blocks of 64 query rows and a partial one
  await same("attention [2, 150, 4x16]", (q, k, v, m) => run(q, k, v, m, 4), [randn([2, 150, 64]), randn([2, 150, 64]), randn([2, 150, 64]), masked([2, 1, 1, 150])], 1e-4, 1e-5);
  // cross-attention with a per-query mask (RetroMAE's decoder), Lq != Lk
  await same("attention [3, 70 x 33, 2x8]", (q, k, v, m) => run(q, k, v, m, 2), [randn([3, 70, 16]), randn([3, 33, 16]), randn([3, 33, 16]), masked([3, 1, 70, 33])], 1e-4, 1e-5);
  // q, k and v as column blocks of one stacked projection [B, L, 3H]; and k, v of one [B, Lk, 2H] with q apart
  const stacked = (qkv: tf.Tensor, m: tf.Tensor) => {
    const H = (qkv.shape[2] as number) / 3;
    const t = qkv as tf.Tensor3D;
    const fused = attentionInference(t, t, t, m as tf.Tensor4D, 4, 0.125, { hidden: H, columns: [0, H, 2 * H] });
    if (tf.getBackend() === "native") assert.ok(fused, "native reads the stacked tensor in place");
    const [q, k, v] = tf.split(qkv, 3, 2);
    return fused ?? reference(q, k, v, m, 4, 0.125);
  };
  await same("attention, stacked q|k|v [2, 90, 3x(4x8)]", stacked, [randn([2, 90, 96]), masked([2, 1, 1, 90])], 1e-4, 1e-5);
  const kvStacked = (q: tf.Tensor, kv: tf.Tensor, m: tf.Tensor) => {
    const H = q.shape[2] as number;
    const fused = attentionInference(q as tf.Tensor3D, kv as tf.Tensor3D, kv as tf.Tensor3D, m as tf.Tensor4D, 2, 0.125, { hidden: H, columns: [0, 0, H] });
    if (tf.getBackend() === "native") assert.ok(fused, "native reads k and v in place");
    const [k, v] = tf.split(kv, 2, 2);
    return fused ?? reference(q, k, v, m, 2, 0.125);
  };
  // heads of 64 (every preset's), which take the register-tiled kernel: row blocks of 6 with a tail, Lk not a multiple of 16,
  // one batch row (runs of query rows per task), a per-query mask, and stacked q|k|v
  await same("attention [2, 37, 2x64]", (q, k, v, m) => run(q, k, v, m, 2), [randn([2, 37, 128]), randn([2, 37, 128]), randn([2, 37, 128]), masked([2, 1, 1, 37])], 1e-4, 1e-5);
  await same("attention [1, 100 x 51, 2x64], per-query mask", (q, k, v, m) => run(q, k, v, m, 2), [randn([1, 100, 128]), randn([1, 51, 128]), randn([1, 51, 128]), masked([1, 1, 100, 51])], 1e-4, 1e-5);
  const stacked64 = (qkv: tf.Tensor, m: tf.Tensor) => {
    const t = qkv as tf.Tensor3D;
    const fused = attentionInference(t, t, t, m as tf.Tensor4D, 2, 0.125, { hidden: 128, columns: [0, 128, 256] });
    if (tf.getBackend() === "native") assert.ok(fused, "native reads the stacked tensor in place");
    const [q, k, v] = tf.split(qkv, 3, 2);
    return fused ?? reference(q, k, v, m, 2, 0.125);
  };
  await same("attention, stacked q|k|v [3, 64, 3x(2x64)]", stacked64, [randn([3, 64, 384]), masked([3, 1, 1, 64])], 1e-4, 1e-5);
  await same("attention, one query row against stacked k|v [3, 1 x 40, 2x8]", kvStacked, [randn([3, 1, 16]), randn([3, 40, 32]), masked([3, 1, 1, 40])], 1e-4, 1e-5);
  // a column block past the tensor's width is declined
  const narrow = tf.zeros([1, 4, 8]) as tf.Tensor3D;
  const zm = tf.zeros([1, 1, 1, 4]) as tf.Tensor4D;
  assert.is(attentionInference(narrow, narrow, narrow, zm, 2, 1, { hidden: 4, columns: [0, 4, 5] }), null);
  tf.dispose([narrow, zm]);
  // under a tape the differentiable path runs
  const x = tf.randomNormal([1, 4, 8]) as tf.Tensor3D;
  const m = tf.zeros([1, 1, 1, 4]) as tf.Tensor4D;
  tf.grad((t: tf.Tensor) => {
    assert.is(attentionInference(t as tf.Tensor3D, t as tf.Tensor3D, t as tf.Tensor3D, m, 2, 1), null);
    return tf.sum(t);
  })(x).dispose();
  tf.dispose([x, m]);
});

test("Transpose (float32, int32, bool), Slice, SplitV, Concat-style moves", async () => {
  const perms: [number[], number[]][] = [
    [[4, 5], [1, 0]],
    [[4, 5], [0, 1]],
    [[2, 3, 4], [0, 1, 2]],
    [[70, 90], [1, 0]],
    [[2, 3, 4], [0, 2, 1]],
    [[2, 3, 4, 5], [0, 2, 1, 3]],
    [[2, 3, 4, 5], [3, 1, 0, 2]],
    [[1, 3, 1], [2, 1, 0]],
    [[0, 3], [1, 0]],
    [[6], [0]],
  ];
  for (const [shape, perm] of perms) await same(`transpose ${shape} ${perm}`, (t) => tf.transpose(t, perm), [randn(shape)]);
  await same("transpose int32", (t) => tf.transpose(t, [1, 0]), [ints([3, 4], 50)]);
  await same("transpose bool", (t) => tf.transpose(tf.greater(t, 0), [1, 0]), [randn([3, 4])]);
  await same("slice", (t) => tf.slice(t, [1, 0, 2], [2, -1, 3]), [randn([3, 4, 6])]);
  await same("slice 1-D", (t) => tf.slice(t, 2, 3), [randn([8])]);
  await same("slice empty", (t) => tf.slice(t, [0, 1], [2, 0]), [randn([3, 4])]);
  await same("slice int32", (t) => tf.slice(t, [1], [2]), [ints([5], 9)]);
  await same("split", (t) => tf.split(t, [1, 3, 2], 1), [randn([4, 6, 3])]);
  await same("pad", (t) => tf.pad(t, [[1, 0], [0, 2], [3, 1]], 0.5), [randn([2, 3, 4])]);
  await same("pad int32", (t) => tf.pad(t, [[2, 1]], 7), [ints([3], 9)]);
  await same("pad empty", (t) => tf.pad(t, [[1, 1], [0, 0]]), [randn([0, 3])]);
  await same("concat axis 1", (a, b) => tf.concat([a, b], 1), [randn([16, 1, 8]), randn([16, 7, 8])]);
  await same("concat axis 0 and -1", (a, b) => [tf.concat([a, b, a], 0), tf.concat([a, b], -1)], [randn([2, 3]), randn([2, 3])]);
  await same("concat int32 with an empty part", (a, b) => tf.concat([a, b], 0), [ints([2, 3], 9), ints([0, 3], 9)]);
  await same("split even", (t) => tf.split(t, 2, 0), [randn([4, 6])]);
});

test("GatherV2 (axes, 2-D indices, int32 data) and its range error; UnsortedSegmentSum; OneHot", async () => {
  await same("gather rows", (x, i) => tf.gather(x, i), [randn([10, 6]), ints([7], 10)]);
  await same("gather 2-D indices", (x, i) => tf.gather(x, i), [randn([10, 6]), ints([3, 4], 10)]);
  await same("gather axis 1", (x, i) => tf.gather(x, i, 1), [randn([3, 10, 4]), ints([5], 10)]);
  await same("gather int32", (x, i) => tf.gather(x, i), [ints([10, 2], 100), ints([4], 10)]);
  await same("gather empty", (x, i) => tf.gather(x, i), [randn([10, 6]), ints([0], 10)]);
  await tf.setBackend("native");
  assert.throws(() => tf.gather(tf.zeros([4, 2]), tf.tensor1d([1, 4], "int32")), /index value 4 is not in \[0, 3\]/);
  const ids = ints([40], 12, -1); // -1 and 11 (>= numSegments) are dropped
  await same("segmentSum", (x, i) => tf.unsortedSegmentSum(x, i as tf.Tensor1D, 11), [randn([40, 5]), ids]);
  await same("segmentSum 3-D", (x, i) => tf.unsortedSegmentSum(x, i as tf.Tensor1D, 11), [randn([40, 2, 3]), ids]);
  await same("oneHot float32", (i) => tf.oneHot(i, 9, 1, 0, "float32"), [ints([6], 11, -1)]);
  await same("oneHot on/off", (i) => tf.oneHot(i, 5, 2, -1, "float32"), [ints([2, 3], 5)]);
  await same("oneHot int32 (cpu path)", (i) => tf.oneHot(i, 5), [ints([4], 5)]);
});

test("tensors cast from int32 or bool keep their arrays on cpu: native kernels read them", async () => {
  await same("sum of cast bool", (t) => tf.sum(tf.cast(tf.greater(t, 0), "float32")), [randn([50])]);
  await same("mul of cast int32", (a, b) => tf.mul(tf.cast(a, "float32"), b), [ints([3, 4], 9), randn([3, 4])]);
  await same("gather with bool-cast indices", (x, t) => tf.gather(x, tf.cast(tf.greater(t, 0), "int32")), [randn([2, 3]), randn([5])]);
});

test("broadcastPlan merges dims that both inputs read contiguously", () => {
  const p = broadcastPlan([2, 3, 4], [2, 3, 4]);
  assert.equal(Array.from(p.dims), [24]);
  const q = broadcastPlan([8, 16, 32], [32]);
  assert.equal(Array.from(q.dims), [128, 32]);
  assert.equal(Array.from(q.sb), [0, 1]);
  const r = broadcastPlan([4, 1], [1, 5]);
  assert.equal(r.shape, [4, 5]);
  assert.equal(Array.from(r.sa), [1, 0]);
  assert.equal(Array.from(r.sb), [0, 1]);
});

test("the pool: buffers are reused across steps, data read by users is a copy, views keep their buffer alive", async () => {
  await tf.setBackend("native");
  const be = tf.backend() as NativeBackend;
  assert.is(sizeClass(100), 100);
  assert.is(sizeClass(5000), 5120);
  assert.ok(sizeClass(1_000_001) >= 1_000_001 && sizeClass(1_000_001) <= 1_000_001 * 1.125);
  const x = tf.randomNormal([300, 301]);
  const y1 = tf.exp(x);
  const seen = y1.dataSync();
  const copy = Float32Array.from(seen);
  y1.dispose();
  const reusedBefore = be.stats.reused;
  const y2 = tf.neg(x); // takes y1's buffer from the pool
  assert.ok(be.stats.reused > reusedBefore, "a freed buffer is reused");
  assert.equal(Array.from(seen.slice(0, 50)), Array.from(copy.slice(0, 50)), "what dataSync returned did not change");
  // a reshape shares the buffer: disposing the original must not free it
  const r = tf.reshape(y2, [301, 300]);
  y2.dispose();
  const y3 = tf.neg(x);
  const rv = r.dataSync();
  const xv = x.dataSync();
  assert.ok(Math.abs(rv[7] + xv[7]) < 1e-7, "the reshaped tensor still reads its own data");
  tf.dispose([x, r, y3]);
});

test("memory stays flat over 20 training steps of a small model on native", async () => {
  const { RetroMAE } = await import("../../lib/model/retromae");
  const { Trainer } = await import("../../lib/train/trainer");
  const { BertTokenizer } = await import("../../lib/text/tokenizer");
  const { PackedCorpus } = await import("../../lib/train/data");
  const { SHARED_DATA } = await import("../helpers");
  await use("native");
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 32, { limit: 60 });
  const r = new Rng(5);
  const model = RetroMAE.create("tiny", { rng: r, overrides: { numHiddenLayers: 1, hiddenSize: 32, intermediateSize: 64, numAttentionHeads: 2 } });
  const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng: r, seed: 5, batchSize: 4, maxLength: 32, totalSteps: 25 });
  await trainer.fit({ steps: 2, live: false });
  const tensors = tf.memory().numTensors;
  const be = tf.backend() as NativeBackend;
  const allocated = be.stats.allocated;
  const counts: number[] = [];
  const losses: number[] = [];
  for (let i = 0; i < 20; i++) {
    await trainer.fit({ steps: 1, live: false, onEvent: (e) => e.type === "step" && losses.push(e.loss) });
    counts.push(tf.memory().numTensors);
  }
  assert.ok(counts.every((c) => c === tensors), `numTensors ${tensors} then ${counts.join(",")}`);
  assert.ok(losses.length === 20 && losses.every(Number.isFinite), "losses are finite");
  assert.ok(be.stats.allocated - allocated < be.stats.reused / 10, `few fresh buffers after warm-up (${be.stats.allocated - allocated} new, ${be.stats.reused} reused)`);
  trainer.dispose();
  model.dispose();
});

test("without the addon, auto falls back to wasm with one line saying why", () => {
  const script = `
    const { use, describe } = require(${JSON.stringify(path.join(ROOT, "lib", "engine", "backend"))});
    use("auto").then((c) => { console.log(JSON.stringify(c)); console.log(describe(c)); });`;
  const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, RETROMAE_NATIVE_ADDON: path.join(os.tmpdir(), "no-such-addon.node") },
  });
  assert.is(r.status, 0, r.stderr);
  const [json, ...lines] = r.stdout.trim().split("\n");
  const choice = JSON.parse(json);
  assert.is(choice.backend, "wasm");
  const native = lines.filter((l) => l.startsWith("skipped native:"));
  assert.is(native.length, 1);
  assert.match(native[0], /^skipped native: the native addon is not built \(.+\); install g\+\+ \(and, optionally, libopenblas-dev\), then run npm rebuild$/);
  assert.is(lines[lines.length - 1], "using wasm (cpu) from @tensorflow/tfjs-backend-wasm");
});

test("releaseFreeMemory gives back the freed memory the native backend keeps mapped, emptyCache empties its pool; neither does anything before the backend is made", () => {
  // In a child with --expose-gc: 200 freed 1 MB arrays stay resident under keepFreedMemory until the release.
  const script = `
    const lib = require(${JSON.stringify(path.join(ROOT, "lib"))});
    const rss = () => require("process").memoryUsage().rss / 1048576;
    const before = lib.releaseFreeMemory();
    const emptyBefore = lib.emptyCache();
    const madeBefore = "native" in lib.tf.engine().registry;
    lib.backend.use("native").then(() => {
      // the pool: 20 native matmul outputs of 1 MB, disposed
      const a = lib.tf.randomNormal([512, 512]);
      lib.tf.dispose(Array.from({ length: 20 }, () => lib.tf.matMul(a, a)));
      const pooled = lib.tf.backend().poolBytes();
      const emptied = lib.emptyCache();
      const poolAfter = lib.tf.backend().poolBytes();
      let keep = [];
      for (let i = 0; i < 200; i++) keep.push(new Float32Array(262144).fill(i));
      keep = null;
      global.gc();
      // array buffers' memory is freed by a background task after the collection
      setTimeout(() => {
        const held = rss();
        const released = lib.releaseFreeMemory();
        console.log(JSON.stringify({ before, released, drop: held - rss(), emptyBefore, madeBefore, pooled, emptied, poolAfter }));
      }, 300);
    });`;
  const r = spawnSync(process.execPath, ["--expose-gc", "-r", "ts-node/register/transpile-only", "-e", script], { cwd: ROOT, encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
  assert.is(out.before, false, "no addon loaded yet: nothing to release");
  assert.is(out.released, true);
  assert.ok(out.drop > 100, `RSS fell by ${out.drop.toFixed(0)} MB (200 MB freed)`);
  assert.is(out.emptyBefore, 0, "emptyCache before the native backend is made: nothing");
  assert.is(out.madeBefore, false, "and it does not make the backend");
  assert.ok(out.pooled >= 20 * 1048576 && out.emptied === out.pooled && out.poolAfter === 0, JSON.stringify(out));
});

test("a GEMM named in RETROMAE_GEMM that this build lacks: auto skips native with one sentence saying so", () => {
  const script = `
    const { use, describe } = require(${JSON.stringify(path.join(ROOT, "lib", "engine", "backend"))});
    use("auto").then((c) => console.log(describe(c)));`;
  const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { cwd: ROOT, encoding: "utf8", env: { ...process.env, RETROMAE_GEMM: "mkl" } });
  assert.is(r.status, 0, r.stderr);
  const native = r.stdout.split("\n").filter((l) => l.startsWith("skipped native:"));
  assert.is(native.length, 1);
  assert.match(native[0], /^skipped native: RETROMAE_GEMM=mkl: GEMM "mkl" is not available in this build on this CPU \(it has [^)]+\); use openblas, bundled, bundled\/avx512, bundled\/avx2 or bundled\/scalar$/);
});

test("the build script never fails an install: a build it can't make means a reason on file and one line", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "native-build-"));
  const run = (env: NodeJS.ProcessEnv) => spawnSync(process.execPath, [path.join(ROOT, "scripts", "build-native.js")], { encoding: "utf8", env: { ...process.env, RETROMAE_NATIVE_DIR: dir, ...env } });
  // OpenBLAS asked for but missing (the bundled GEMM's build is in native-bundled.test.ts)
  let r = run({ PKG_CONFIG: "/bin/false", RETROMAE_BLAS: "openblas" });
  assert.is(r.status, 0);
  assert.is(r.stdout.trim().split("\n").length, 1);
  assert.match(r.stdout, /native backend not built \(RETROMAE_BLAS=openblas, but pkg-config finds no OpenBLAS: apt-get install libopenblas-dev pkg-config\); the wasm backend will be used\./);
  assert.match(fs.readFileSync(path.join(dir, "build-error.txt"), "utf8"), /^RETROMAE_BLAS=openblas, but pkg-config finds no OpenBLAS/);
  // a misspelt choice
  r = run({ RETROMAE_BLAS: "mkl" });
  assert.is(r.status, 0);
  assert.match(r.stdout, /native backend not built \(RETROMAE_BLAS="mkl" is not one of openblas, bundled, auto\)/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("the addon checks its arguments: a wrong array is an exception, not a write out of bounds", async () => {
  assert.throws(() => native().matmul(new Float32Array(4), new Float32Array(4), new Float32Array(3), 1, 1, 1, 2, 2, 2, false, false, null, 0), /holds 3 values; the kernel needs 4/);
  assert.throws(() => native().segmentSum(new Float32Array(4), new Float32Array(2) as unknown as Int32Array, new Float32Array(4), 2, 2, 2), /must be a Int32Array/);
  assert.throws(() => native().transpose(new Float32Array(6), new Float32Array(6), Int32Array.from([2, 3]), Int32Array.from([0, 0])), /not a permutation/);
});

test.run();
