import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { backend, use } from "../../lib/engine/backend";
import { CPU_REPLACED_KERNELS, WASM_EXTRA_KERNELS } from "../../lib/engine/kernels";
import { Rng } from "../../lib/engine/rng";
import { makeVariables, mlmLoss, smallBatch, smallConfig, smallModel } from "../helpers";

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("importing the library registers the wasm and cpu kernels, before any use() (tfjs may pick wasm by itself)", () => {
  for (const k of WASM_EXTRA_KERNELS) assert.ok(tf.getKernel(k.kernelName, "wasm"), k.kernelName);
  for (const k of CPU_REPLACED_KERNELS) assert.is(tf.getKernel(k.kernelName, "cpu")!.kernelFunc, k.kernelFunc, k.kernelName);
});

test("an unknown backend name gets one clear sentence", async () => {
  try {
    await use("webgl");
    assert.unreachable("should throw");
  } catch (err) {
    assert.match((err as Error).message, /^Unknown backend "webgl"; use one of "auto", "tensorflow", "webgpu", "native", "wasm", "cpu"\.$/);
  }
});

test("tensorflow without tfjs-node(-gpu) fails with the reason and the fix, not a stack", async () => {
  let loadable = true;
  try {
    require.resolve("@tensorflow/tfjs-node-gpu");
  } catch {
    loadable = false;
  }
  if (loadable) return; // a GPU machine: the auto test below covers it
  try {
    await use("tensorflow");
    assert.unreachable("should throw");
  } catch (err) {
    const msg = (err as Error).message;
    assert.match(msg, /^Backend "tensorflow" failed to load: @tensorflow\/tfjs-node-gpu is not installed/);
    assert.match(msg, /CUDA 11\.2/);
    assert.not.match(msg, /\n/);
  }
});

test("auto picks the first backend that works and says why it skipped the others", async () => {
  delete process.env.RETROMAE_BACKEND;
  const choice = await use("auto");
  assert.is(tf.getBackend(), choice.backend);
  const order = ["tensorflow", "webgpu", "native", "wasm", "cpu"];
  assert.equal(
    choice.skipped.map((s) => s.backend),
    order.slice(0, order.indexOf(choice.backend)),
  );
  for (const s of choice.skipped) assert.ok(s.reason.length > 10 && !s.reason.includes("\n"), s.reason);
  const lines = backend.describe(choice).split("\n");
  assert.is(lines.length, choice.skipped.length + 1);
  assert.match(lines[lines.length - 1], new RegExp(`^using ${choice.backend} \\((cpu|gpu)\\)`));
});

test("RETROMAE_BACKEND points auto at one backend from the shell, says so, and names a bad value in one sentence", async () => {
  const saved = process.env.RETROMAE_BACKEND;
  try {
    process.env.RETROMAE_BACKEND = "cpu";
    const choice = await use("auto");
    assert.is(choice.backend, "cpu");
    assert.is(tf.getBackend(), "cpu");
    assert.equal(choice.skipped, []);
    assert.is(backend.describe(choice), "using cpu (cpu) from @tensorflow/tfjs-backend-cpu, as RETROMAE_BACKEND=cpu asks in place of auto");
    assert.is((await use("wasm")).backend, "wasm", "a backend asked for by name is not overridden");
    process.env.RETROMAE_BACKEND = "webgl";
    const bad = await use("auto").then(() => "", (e: Error) => e.message);
    assert.is(bad, 'RETROMAE_BACKEND is "webgl", not a backend; set it to one of "auto", "tensorflow", "webgpu", "native", "wasm", "cpu", or unset it.');
    process.env.RETROMAE_BACKEND = "tensorflow";
    let tensorflowLoads = true;
    try {
      require.resolve("@tensorflow/tfjs-node-gpu");
    } catch {
      tensorflowLoads = false;
    }
    if (!tensorflowLoads) {
      const failed = await use("auto").then(() => "", (e: Error) => e.message);
      assert.match(failed, /^RETROMAE_BACKEND=tensorflow asks for the tensorflow backend, which failed to load: @tensorflow\/tfjs-node-gpu is not installed.*; unset RETROMAE_BACKEND to let auto choose\.$/);
      assert.not.match(failed, /\n/);
    }
  } finally {
    if (saved === undefined) delete process.env.RETROMAE_BACKEND;
    else process.env.RETROMAE_BACKEND = saved;
  }
});

test("info reports backend, versions, threads and SIMD", async () => {
  await use("wasm");
  const i = backend.info();
  assert.is(i.backend, "wasm");
  assert.is(i.device, "cpu");
  assert.is(i.versions["tfjs-core"], "4.22.0");
  assert.is(i.versions["tfjs-backend-wasm"], "4.22.0");
  assert.is(i.versions.node, process.versions.node);
  assert.is(i.threads, 1);
  assert.type(i.simd, "boolean");
  await use("cpu");
  assert.is(backend.info().backend, "cpu");
  assert.is(backend.info().simd, null);
});

test("wasm lacks UnsortedSegmentSum out of the box, and use('wasm') registers it; cpu's slow one is replaced", async () => {
  await use("wasm");
  // Ours are registered only where wasm has none, so finding ours proves wasm lacked it.
  for (const k of WASM_EXTRA_KERNELS) assert.is(tf.getKernel(k.kernelName, "wasm").kernelFunc, k.kernelFunc, k.kernelName);
  await use("cpu");
  for (const k of CPU_REPLACED_KERNELS) assert.is(tf.getKernel(k.kernelName, "cpu").kernelFunc, k.kernelFunc, k.kernelName);
});

test("UnsortedSegmentSum on wasm and cpu equals oneHot(ids)ᵀ·x (inner dims, repeated and out-of-range ids, empty input)", async () => {
  const rng = new Rng(1);
  const cases: { x: number[]; n: number }[] = [
    { x: [7, 3, 5], n: 4 },
    { x: [6], n: 3 },
    { x: [6, 3, 4], n: 5 },
    { x: [0, 4], n: 2 },
    { x: [40, 8], n: 30522 },
  ];
  for (const c of cases) {
    const size = c.x.reduce((a, b) => a * b, 1);
    const xs = rng.fillNormal(new Float32Array(size));
    const ids = Int32Array.from({ length: c.x[0] }, () => rng.int(c.n + 2) - 1); // includes -1 and n: dropped
    await use("cpu");
    // Reference by another path: a matmul with the one-hot of the ids (oneHot gives -1 and n an all-zero row).
    const ref = tf.tidy(() => {
      const inner = c.x.slice(1);
      const flat = tf.tensor(xs, [c.x[0], inner.reduce((a, b) => a * b, 1)]);
      const oh = tf.oneHot(tf.tensor1d(ids, "int32"), c.n).toFloat();
      return tf.matMul(oh, flat, true, false).dataSync() as Float32Array;
    });
    for (const name of ["cpu", "wasm"] as const) {
      await use(name);
      const out = tf.unsortedSegmentSum(tf.tensor(xs, c.x), tf.tensor1d(ids, "int32"), c.n);
      assert.equal(out.shape, [c.n, ...c.x.slice(1)]);
      assert.ok(maxAbsDiff(out.dataSync(), ref) < 1e-5, `${name} ${JSON.stringify(c)}`);
      out.dispose();
    }
  }
});

test("wasm BatchMatMul with transposes (explicit Transpose first) equals cpu, batched and broadcast", async () => {
  const rng = new Rng(2);
  const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
    { a: [5, 3], b: [4, 3], ta: false, tb: true },
    { a: [3, 5], b: [3, 4], ta: true, tb: false },
    { a: [3, 5], b: [4, 3], ta: true, tb: true },
    { a: [2, 6, 3], b: [2, 6, 4], ta: true, tb: false },
    { a: [2, 2, 5, 3], b: [2, 2, 4, 3], ta: false, tb: true },
    { a: [2, 5, 3], b: [1, 4, 3], ta: false, tb: true },
    { a: [1, 3], b: [1, 3], ta: true, tb: false },
    { a: [0, 3], b: [4, 3], ta: false, tb: true },
  ];
  for (const c of cases) {
    const av = rng.fillNormal(new Float32Array(c.a.reduce((x, y) => x * y, 1)));
    const bv = rng.fillNormal(new Float32Array(c.b.reduce((x, y) => x * y, 1)));
    const out: Float32Array[] = [];
    const shapes: number[][] = [];
    for (const name of ["cpu", "wasm"] as const) {
      await use(name);
      const before = tf.memory().numTensors;
      const r = tf.tidy(() => tf.matMul(tf.tensor(av, c.a), tf.tensor(bv, c.b), c.ta, c.tb));
      out.push(r.dataSync() as Float32Array);
      shapes.push(r.shape);
      r.dispose();
      assert.is(tf.memory().numTensors, before, "no temporaries left");
    }
    assert.equal(shapes[0], shapes[1]);
    assert.ok(maxAbsDiff(out[0], out[1]) < 1e-5, JSON.stringify(c));
  }
});

test("cpu Softmax (replaced) equals wasm's on the last axis, with masked rows and large values", async () => {
  const rng = new Rng(4);
  for (const shape of [[5, 7], [2, 3, 4, 6], [1, 30522], [3, 1]]) {
    const size = shape.reduce((a, b) => a * b, 1);
    const xs = rng.fillNormal(new Float32Array(size), 0, 30);
    xs.fill(-3.4028234663852886e38, 0, shape[shape.length - 1]); // a fully masked first row
    const out: Float32Array[] = [];
    for (const name of ["cpu", "wasm"] as const) {
      await use(name);
      out.push(tf.tidy(() => tf.softmax(tf.tensor(xs, shape)).dataSync() as Float32Array));
    }
    assert.ok(maxAbsDiff(out[0], out[1]) < 1e-6, JSON.stringify(shape));
    assert.ok(out[0].every(Number.isFinite));
  }
});

async function bertGradients(name: "cpu" | "wasm", training: boolean) {
  await use(name);
  const cfg = smallConfig();
  const batch = smallBatch(cfg);
  const model = smallModel(cfg);
  const vars = makeVariables(model.values, model.shapes);
  const rng = new Rng(99);
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() =>
    mlmLoss(vars, cfg, batch, training ? { training: true, rng } : { training: false }),
  );
  const out = {
    loss: value.dataSync()[0],
    grads: new Map([...vars].map(([k, v]) => [k, grads[v.name].dataSync() as Float32Array])),
  };
  tf.dispose([value, ...Object.values(grads)]);
  const leaked = tf.memory().numTensors - before;
  vars.forEach((v) => v.dispose());
  return { ...out, leaked };
}

for (const training of [false, true]) {
  test(`small BERT forward+backward: wasm gradients match cpu within 1e-4 (dropout ${training ? "on" : "off"})`, async () => {
    const cpu = await bertGradients("cpu", training);
    const wasm = await bertGradients("wasm", training);
    assert.ok(Number.isFinite(cpu.loss) && cpu.loss > 0);
    assert.ok(Math.abs(cpu.loss - wasm.loss) < 1e-4, `loss cpu ${cpu.loss} wasm ${wasm.loss}`);
    assert.is(cpu.grads.size, 42);
    let worst = 0;
    let nonzero = 0;
    for (const [name, g] of cpu.grads) {
      const d = maxAbsDiff(g, wasm.grads.get(name)!);
      worst = Math.max(worst, d);
      assert.ok(d < 1e-4, `${name}: max abs diff ${d}`);
      if (g.some((x) => x !== 0)) nonzero++;
    }
    assert.ok(nonzero >= 40, `most weights get gradient (${nonzero})`);
    assert.is(cpu.leaked, 0, "cpu: no tensors left behind");
    assert.is(wasm.leaked, 0, "wasm: no tensors left behind");
  });
}

test.run();
