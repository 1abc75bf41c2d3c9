/**
 * The webgpu backend on SwiftShader (Vulkan on the CPU, from Debian's
 * chromium): the backend's choice and report, this project's WGSL kernels
 * against the cpu backend, the smallest limits an adapter may report, and
 * micro RetroMAE training: exact against cpu, bit-identical run after run,
 * flat in tensors, resumable, and a probe. Micro models throughout (one
 * layer, hidden 32, ~300 WordPieces): SwiftShader takes ~96 s for one tiny
 * step at 8×64. Every storage buffer has a tail of NaN
 * (guardBuffersWithNaN), so that with Dawn's bounds checks off (the
 * default) a read past a tensor's end shows in the results.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import * as tf from "../../lib/engine/tf";
import { backend, use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { explainNoAdapter, icdFiles, isSoftwareAdapter, openDevice } from "../../lib/engine/webgpu/dawn";
import { startWebGPU, takeDeviceError, webgpuState } from "../../lib/engine/webgpu/backend";
import { splitsAlongK } from "../../lib/engine/webgpu/dense";
import { WebGPUBackendLike } from "../../lib/engine/webgpu/program";
import { columnSumParts } from "../../lib/engine/webgpu/reduce";
import { splitKParts, tiledSplitKParts } from "../../lib/engine/webgpu/matmul";
import { loadBeir, BeirDataset } from "../../lib/data/beir";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer, StepInfo } from "../../lib/train/trainer";
import { AdamW } from "../../lib/train/optim";
import { bytesHeldByReplays, recordCommands, StepReplay } from "../../lib/engine/webgpu/replay";
import { copyInPlaceWebGPU } from "../../lib/engine/webgpu/optimizer";
import { additiveMaskOfBytes, bytesAsWords, DROPOUT, dropoutWithSeed, embeddingGrad, repeatedRow, DropoutSeeds, registerCounterDropout } from "../../lib/engine/fused";
import { countDispatches, formatProfile } from "../../lib/engine/webgpu/profile";
import { addLayerNorm, ADD_LAYER_NORM, feedForward, geluLayerNorm, linearAndInput, ATTENTION, attentionTraining, attentionTrainingApplies, DROPOUT_ADD_LAYER_NORM, DROPOUT_SOFTMAX, attentionContext, embeddingsLayerNorm, attentionInference, attentionScores, DENSE_GELU, DENSE_WEIGHT_GRADS, gelu, GELU, layerNormDropout, linear, linearGelu, logSumExpArgMax, logSumExpRows, meanNllAndAccuracy, pickLabels, scaledMaskedSoftmax, SCALED_MASKED_SOFTMAX, softmaxMinusOneHotColSum, stackRows } from "../../lib/engine/fused";
import { runProbe, ProbeSet } from "../../lib/probe/probe";
import { encodeTexts } from "../../lib/probe/encode";
import { contrastiveFinetune } from "../../lib/probe/finetune";
import { RetroMAE } from "../../lib/model/retromae";
import { embeddingLookup, tiedSoftmaxCrossEntropy } from "../../lib/model/bert";
import { RetroMAECollator } from "../../lib/masking/collator";
import { collateAhead } from "../../lib/masking/ahead";
import { SHARED_DATA } from "../helpers";
import { atScaleRun, guardBuffersWithNaN, microModel, microTokenizer, SOFTWARE_VULKAN, softwareAdapterName, testVulkan, useSoftwareVulkan } from "../webgpu-helpers";

const ICD = useSoftwareVulkan();
/** A test whose point is a size (past 65,535 workgroups, 2^24 logits, a 128 MiB binding): lavapipe's run only (atScaleRun). */
const atScale = atScaleRun() ? test : test.skip;
/** SwiftShader, or llvmpipe where this file runs on lavapipe (scripts/test.js's second-driver run). */
const ADAPTER = softwareAdapterName();
const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));
const docs = [...ds.corpus.values()].slice(0, 60);
const texts = docs.map((d) => d.text);
const tok = microTokenizer(texts);
let corpus: PackedCorpus;

const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "webgpu-"));
/** fn with the environment variables `vars` set, and the environment as it was after. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}
/** A variable that owns its buffer alone, as a model's weights do (updates in place need that). */
const weight = (values: Float32Array) => {
  const t = tf.tensor1d(values);
  const v = tf.variable(t);
  t.dispose();
  return v;
};

/** Compute dispatches recorded on the webgpu device so far (counted from this file's first webgpu test). */
let counted: (() => number) | null = null;
const dispatches = () => {
  counted ??= countDispatches((tf.backend() as unknown as { device: GPUDevice }).device);
  return counted();
};

test.before(async () => {
  corpus = PackedCorpus.fromTexts(texts, tok, 32);
  // a read past the end of any tensor reads NaN from here on, and shows in the results
  await use("webgpu");
  guardBuffersWithNaN((tf.backend() as unknown as { device: GPUDevice }).device);
});

test("use('webgpu') starts on a software adapter (SwiftShader, or lavapipe in the second-driver run) and reports the adapter, Dawn's backend and the limits in force", async () => {
  const choice = await use("webgpu");
  assert.is(choice.backend, "webgpu");
  assert.is(tf.getBackend(), "webgpu");
  const i = backend.info();
  assert.ok(i.webgpu, "info carries the adapter");
  assert.is(i.webgpu!.backend, "vulkan");
  assert.is(i.webgpu!.software, true);
  assert.match(i.webgpu!.description + i.webgpu!.architecture + i.webgpu!.device, new RegExp(ADAPTER, "i"));
  // The device asked for the adapter's own limits, not WebGPU's defaults (256 / 128 MiB, 8 storage buffers).
  assert.ok(i.webgpu!.limits.maxBufferSize > 256 * 2 ** 20, `maxBufferSize ${i.webgpu!.limits.maxBufferSize}`);
  // (SwiftShader offers more than the default binding size; lavapipe offers exactly 128 MiB)
  assert.ok(i.webgpu!.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20);
  if (testVulkan() === "swiftshader") assert.ok(i.webgpu!.limits.maxStorageBufferBindingSize > 128 * 2 ** 20);
  assert.ok(i.webgpu!.limits.maxStorageBuffersPerShaderStage > 8);
  assert.is(i.versions["tfjs-backend-webgpu"], "4.22.0");
  const lines = backend.describe().split("\n");
  assert.match(lines.find((l) => l.startsWith("using webgpu"))!, new RegExp(`${ADAPTER}.*\\(vulkan, software\\)`));
  assert.match(lines.find((l) => l.includes("adapter:"))!, /software \(not a GPU\)/);
  assert.match(lines.find((l) => l.includes("limits:"))!, /maxBufferSize \d+ MiB/);
});

/**
 * Run one invocation on the current webgpu device that reads a[100] through a binding of
 * a's first 4 floats (of 0, 1, 2, …): what a shader gets for an index past its binding.
 */
async function readPastBinding(): Promise<number> {
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  const a = device.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(a, 0, Float32Array.from({ length: 256 }, (_, i) => i));
  const out = device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const index = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(index, 0, Uint32Array.from([100, 0, 0, 0]));
  const read = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read> a: array<f32>;
      @group(0) @binding(1) var<storage, read_write> o: array<f32>;
      @group(0) @binding(2) var<uniform> u: vec4<u32>;
      @compute @workgroup_size(1) fn main() { o[0] = a[u.x]; }`,
  });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const entries = [{ binding: 0, resource: { buffer: a, offset: 0, size: 16 } }, { binding: 1, resource: { buffer: out } }, { binding: 2, resource: { buffer: index } }];
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
  pass.dispatchWorkgroups(1);
  pass.end();
  encoder.copyBufferToBuffer(out, 0, read, 0, 4);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const value = new Float32Array(read.getMappedRange())[0];
  read.unmap();
  for (const b of [a, out, index, read]) b.destroy();
  return value;
}

test("Dawn's bounds checks (robustness) are off by default and RETROMAE_WEBGPU_ROBUSTNESS=1 turns them on, on a device of its own; info and describe say which; a bad value is one sentence", async () => {
  await use("webgpu");
  assert.is(backend.info().webgpu!.robustness, false);
  assert.match(backend.describe(), /\n {2}bounds checks: off \(Dawn's robustness; RETROMAE_WEBGPU_ROBUSTNESS=1 turns them on\)/);
  // SwiftShader takes the switch: without the checks the shader reads a[100], with them Dawn clamps
  // the index to the binding's last float. lavapipe bounds its buffers in the driver (0 past the end).
  const [unchecked, checked] = testVulkan() === "swiftshader" ? [100, 3] : [0, 0];
  assert.is(await readPastBinding(), unchecked);
  process.env.RETROMAE_WEBGPU_ROBUSTNESS = "1";
  try {
    await use("webgpu");
    assert.is(backend.info().webgpu!.robustness, true);
    assert.match(backend.describe(), /\n {2}bounds checks: on \(RETROMAE_WEBGPU_ROBUSTNESS=1\)/);
    assert.is(await readPastBinding(), checked);
    process.env.RETROMAE_WEBGPU_ROBUSTNESS = "yes";
    const err = await use("webgpu").then(() => null, (e: Error) => e);
    assert.ok(err, "a bad value fails");
    assert.match(err!.message, /^Backend "webgpu" failed to load: RETROMAE_WEBGPU_ROBUSTNESS is "yes"; set it to 0 \(the default: Dawn's bounds checks off\) or 1 \(on\), or unset it; pick another/);
  } finally {
    delete process.env.RETROMAE_WEBGPU_ROBUSTNESS;
  }
  await use("webgpu");
  assert.is(backend.info().webgpu!.robustness, false);
  assert.is(await readPastBinding(), unchecked);
});

test("Dawn's instances are kept for the process: devices opened one after another (other limits, bounds checks on or off) share the instance of their flags, so none is collected under a later device", async () => {
  // (a collected instance broke the next device on SwiftShader: this file's first test, then the smallest-limits test alone,
  // aborted at the first read with std::system_error or a pthread assertion, or hung, three runs of three)
  const a = await openDevice({ limits: "default" });
  const b = await openDevice({ limits: "adapter" });
  const c = await openDevice({ limits: "adapter", robustness: true });
  const d = await openDevice({ limits: "default", robustness: true });
  assert.ok(a.gpu === b.gpu, "the same flags: one instance");
  assert.ok(c.gpu === d.gpu && c.gpu !== a.gpu, "bounds checks on: an instance of its own, kept");
  for (const o of [a, b, c, d]) o.device.destroy();
  assert.is(await sumOnWebGPU(), 4096, "the backend's device still computes");
});

/** A small matmul's sum on the current webgpu device. */
async function sumOnWebGPU(): Promise<number> {
  await use("webgpu");
  const s = tf.tidy(() => tf.sum(tf.matMul(tf.ones([16, 16]), tf.ones([16, 16]))));
  const v = (await s.data())[0];
  s.dispose();
  return v;
}

test("auto skips a software adapter and says why, then takes the next backend", async () => {
  const choice = await use("auto");
  const skipped = choice.skipped.find((s) => s.backend === "webgpu");
  assert.ok(skipped, JSON.stringify(choice.skipped));
  assert.match(skipped!.reason, new RegExp(`^the only WebGPU adapter is software \\(${ADAPTER}.*\\), slower than the native CPU backend; use backend\\.use\\("webgpu"\\)`));
  assert.not.match(skipped!.reason, /\n/);
  assert.is.not(choice.backend, "webgpu");
});

test("software adapters are told from hardware by name", () => {
  assert.ok(isSoftwareAdapter({ vendor: "google", architecture: "swiftshader" }));
  assert.ok(isSoftwareAdapter({ device: "llvmpipe (LLVM 15.0.6, 256 bits)" }));
  assert.ok(isSoftwareAdapter({ description: "Microsoft Basic Render Driver" }));
  assert.ok(isSoftwareAdapter({ vendor: "nvidia" }, true), "a fallback adapter is software");
  assert.not.ok(isSoftwareAdapter({ vendor: "nvidia", architecture: "hopper", description: "NVIDIA H200" }));
  assert.not.ok(isSoftwareAdapter({ vendor: "amd", architecture: "rdna-3", description: "AMD Radeon RX 7900 XTX (RADV NAVI31)" }));
});

test("no loader, no ICD, or a broken VK_ICD_FILENAMES: one sentence naming which, with the fix", () => {
  assert.match(explainNoAdapter({ platform: "linux", loader: { found: false }, icds: [] }), /^the Vulkan loader libvulkan\.so\.1 is not installed \(apt-get install libvulkan1\)$/);
  assert.match(explainNoAdapter({ platform: "linux", loader: { found: true }, icds: [] }), /no Vulkan driver \(ICD file\).*NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics$/);
  assert.match(explainNoAdapter({ platform: "linux", loader: { found: true }, icds: [{ file: "/x/gone.json", library: null, fromEnv: true }] }), /^VK_ICD_FILENAMES names \/x\/gone\.json, which is missing or not an ICD file/);
  assert.match(explainNoAdapter({ platform: "linux", loader: { found: true }, icds: [{ file: "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", library: "libvulkan_lvp.so", fromEnv: false }] }), /^Dawn found no Vulkan adapter through lvp_icd\.x86_64\.json/);
  assert.is(
    explainNoAdapter({ platform: "linux", loader: { found: true }, icds: [{ file: "/etc/vulkan/icd.d/nvidia_icd.json", library: "libGLX_nvidia.so.0", fromEnv: false, libraryFound: false }] }),
    "/etc/vulkan/icd.d/nvidia_icd.json names libGLX_nvidia.so.0, which is not installed (a container started without NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics has NVIDIA's ICD file but not its driver); install the driver, or run retromae doctor",
  );
  const found = icdFiles({ VK_ICD_FILENAMES: ICD });
  assert.is(found.length, 1);
  assert.match(found[0].library!, SOFTWARE_VULKAN[testVulkan()].library);
});

test("in a process whose VK_ICD_FILENAMES names no file, use('webgpu') fails with that sentence and auto moves on", () => {
  const script = `
    const { use } = require("./lib/engine/backend");
    (async () => {
      try { await use("webgpu"); console.log("STARTED"); } catch (e) { console.log("NAMED:" + e.message); }
      const c = await use("auto");
      console.log("AUTO:" + c.backend + ":" + c.skipped.find((s) => s.backend === "webgpu").reason);
    })();`;
  const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], {
    cwd: path.resolve(__dirname, "..", ".."),
    env: { ...process.env, VK_ICD_FILENAMES: "/nonexistent/icd.json" },
    encoding: "utf8",
    timeout: 120_000,
  });
  const out = r.stdout;
  assert.match(out, /NAMED:Backend "webgpu" failed to load: VK_ICD_FILENAMES names \/nonexistent\/icd\.json, which is missing or not an ICD file; point it at the driver's ICD json or unset it; pick another with backend\.use\("auto"\)\./, out + r.stderr);
  assert.match(out, /AUTO:(native|wasm|cpu):VK_ICD_FILENAMES names/, out);
  assert.is(r.status, 0, "and the process exits by itself");
});

test("a script that used the webgpu backend exits by itself", () => {
  const script = `
    const tf = require("./lib/engine/tf");
    const { use } = require("./lib/engine/backend");
    (async () => {
      await use("webgpu");
      const x = tf.matMul(tf.ones([8, 8]), tf.ones([8, 8]));
      console.log("SUM:" + (await tf.sum(x).data())[0]);
    })();`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], {
    cwd: path.resolve(__dirname, "..", ".."),
    env: { ...process.env, VK_ICD_FILENAMES: ICD },
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.match(r.stdout, /SUM:512/, r.stdout + r.stderr);
  assert.is(r.status, 0);
  assert.ok(Date.now() - t0 < 60_000, "no hang at exit");
});

/** Run `fn` on cpu and on webgpu with the same inputs (as plain arrays); returns both outputs' values. */
async function both(fn: () => tf.Tensor): Promise<{ cpu: Float32Array | Int32Array; gpu: Float32Array | Int32Array; shape: number[] }> {
  await use("cpu");
  const c = fn();
  const cpu = (await c.data()) as Float32Array | Int32Array;
  const shape = c.shape;
  c.dispose();
  await use("webgpu");
  const g = fn();
  const gpu = (await g.data()) as Float32Array | Int32Array;
  assert.equal(g.shape, shape, "shape");
  g.dispose();
  return { cpu, gpu, shape };
}

test("UnsortedSegmentSum on webgpu is the cpu backend's sum, bit for bit, on odd shapes", async () => {
  const rng = new Rng(11);
  const cases: { n: number; inner: number[]; segments: number; dtype: "float32" | "int32"; ids?: number[] }[] = [
    { n: 37, inner: [5], segments: 9, dtype: "float32" }, // row tail, repeats
    { n: 1, inner: [3], segments: 4, dtype: "float32" }, // a batch of one
    { n: 12, inner: [2, 3], segments: 5, dtype: "float32" }, // inner of rank 2
    { n: 20, inner: [7], segments: 6, dtype: "int32" },
    { n: 9, inner: [4], segments: 3, dtype: "float32", ids: [0, -1, 2, 3, 2, 7, 0, 0, 2] }, // ids out of range are dropped
    { n: 6, inner: [4], segments: 50, dtype: "float32", ids: [49, 49, 49, 49, 49, 49] }, // segments nobody points at stay 0
    // a token batch's shape: one id in every third row (a chain of 700 rows), the others spread over a vocabulary
    { n: 2100, inner: [3], segments: 30522, dtype: "float32", ids: Array.from({ length: 2100 }, (_, i) => (i % 3 === 0 ? 5 : (i * 7919) % 30522)) },
  ];
  for (const c of cases) {
    const size = c.n * c.inner.reduce((a, b) => a * b, 1);
    const values = c.dtype === "float32" ? rng.fillNormal(new Float32Array(size)) : Int32Array.from({ length: size }, () => rng.int(100) - 50);
    const ids = Int32Array.from(c.ids ?? Array.from({ length: c.n }, () => rng.int(c.segments)));
    const r = await both(() => tf.unsortedSegmentSum(tf.tensor(values, [c.n, ...c.inner], c.dtype), tf.tensor1d(ids, "int32"), c.segments));
    assert.equal(r.shape, [c.segments, ...c.inner]);
    assert.equal(c.dtype === "float32" ? bits(r.gpu) : Array.from(r.gpu), c.dtype === "float32" ? bits(r.cpu) : Array.from(r.cpu), JSON.stringify(c));
  }
});

test("an embedding's gradient on webgpu (embeddingGrad: the padding id's rows left out) is one segment sum, the cpu's mask-then-sum to the last bit but zeros' sign; a lookup's gradient dispatches no mask and no zeros for its ids; the token type's row is added alone (no segment sum in its gradient)", async () => {
  const rng = new Rng(12);
  // [n, H, V, skip]: padding ids among the rows, a skip id nobody uses, a table of the vocabulary's size
  for (const [n, H, V, skip] of [[37, 5, 9, 0], [12, 3, 4, 3], [2100, 3, 30522, 0]]) {
    const dy = rng.fillNormal(new Float32Array(n * H));
    const ids = Int32Array.from({ length: n }, (_, i) => (i % 4 === 1 ? skip : rng.int(V)));
    const r = await both(() => tf.tidy(() => embeddingGrad(tf.tensor2d(dy, [n, H]), tf.tensor1d(ids, "int32"), V, skip)));
    assert.equal(Array.from(r.gpu), Array.from(r.cpu), `[${n}, ${H}] over ${V}, skipping ${skip}`);
    assert.ok(r.gpu.slice(skip * H, (skip + 1) * H).every((v) => v === 0), "the skipped id's row is 0");
  }
  // the lookup's gradient: the segment sum's three programs (zeros, links, sums), no mask and no zeros for the ids
  const { keys } = await programsOf(() => tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(embeddingLookup(t, tf.tensor2d([[0, 3, 3], [2, 0, 1]], [2, 3], "int32"), 0)))(tf.ones([5, 4]))));
  assert.equal(keys.filter((k) => !/^(gather|reduce)/.test(k)), ["retromaeZeros_float32", "retromaeSegmentLinks", "retromaeSegmentSum_float32"], keys.join(", "));
  // the token type's row for inputs without types: the row alone on webgpu, also under the tape (its gradient a
  // reduction and a pad, no segment sum), with the cpu's gradient (the row gathered at each position there)
  const dy = rng.fillNormal(new Float32Array(2 * 70 * 3));
  const typeGrad = () => tf.tidy(() => tf.grad((t: tf.Tensor) => {
    const row = repeatedRow(t as tf.Tensor2D, 0, 70);
    assert.equal(row.shape, [tf.getBackend() === "webgpu" ? 1 : 70, 3]);
    return tf.sum(tf.mul(tf.add(tf.zeros([2, 70, 3]), row), tf.tensor3d(dy, [2, 70, 3])));
  })(tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3])));
  const g = await both(typeGrad);
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(g.cpu[i] - g.gpu[i]) < 1e-5 * Math.max(1, Math.abs(g.cpu[i])), `the type row's gradient [${i}]: cpu ${g.cpu[i]} vs webgpu ${g.gpu[i]}`);
  assert.not.ok((await programsOf(typeGrad)).keys.some((k) => /Segment/.test(k)));
});

test("UnsortedSegmentSum on webgpu gives the same bits run after run (tfjs's atomics did not)", async () => {
  await use("webgpu");
  const rng = new Rng(3);
  const x = tf.tensor2d(rng.fillNormal(new Float32Array(512 * 16)), [512, 16]);
  const ids = tf.tensor1d(Int32Array.from({ length: 512 }, () => rng.int(7)), "int32");
  const first = bits(await tf.unsortedSegmentSum(x, ids, 7).data());
  for (let i = 0; i < 3; i++) assert.equal(bits(await tf.unsortedSegmentSum(x, ids, 7).data()), first);
  tf.dispose([x, ids]);
});

test("Softmax on webgpu: rows of all -FLT_MAX (the mask of a padding row) are uniform, as on cpu; odd widths agree to 1e-6", async () => {
  const M = -3.4028234663852886e38;
  const rng = new Rng(8);
  for (const [rows, cols] of [[3, 4], [5, 1], [7, 67], [2, 300], [1, 4100]]) {
    const x = rng.fillNormal(new Float32Array(rows * cols));
    for (let c = 0; c < cols; c++) x[c] = M; // row 0: nothing visible
    for (let c = 0; c < cols; c += 2) x[cols + c] = M; // row 1: half visible (when rows > 1)
    const r = await both(() => tf.softmax(tf.tensor2d(x, [rows, cols])));
    for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-6, `[${rows}, ${cols}] at ${i}: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
    for (let c = 0; c < cols; c++) assert.ok(Math.abs(r.gpu[c] - 1 / cols) < 1e-6, `[${rows}, ${cols}] row 0 col ${c}: ${r.gpu[c]}`);
  }
  const x4 = rng.fillNormal(new Float32Array(2 * 3 * 5 * 6));
  const r4 = await both(() => tf.softmax(tf.tensor4d(x4, [2, 3, 5, 6])));
  assert.equal(r4.shape, [2, 3, 5, 6]);
  for (let i = 0; i < r4.cpu.length; i++) assert.ok(Math.abs(r4.cpu[i] - r4.gpu[i]) < 1e-6);
});

test("dropout on webgpu draws its mask on the device: bit for bit the JavaScript kernel's output and gradient, one program, past 65,535 workgroups; seeded from a device base too (DropoutSeeds)", async () => {
  const cases = [1, 1000, 4_200_001].map((n) => ({ n, x: new Rng(n).fillNormal(new Float32Array(n)), dy: new Rng(n + 1).fillNormal(new Float32Array(n)) }));
  const run = async (name: "cpu" | "webgpu") => {
    await use(name);
    if (name === "cpu") registerCounterDropout("cpu");
    const out: Float32Array[] = [];
    for (const c of cases) {
      const [x, dy] = [tf.tensor1d(c.x), tf.tensor1d(c.dy)];
      const y = dropoutWithSeed(x, 0.1, 7 + c.n);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(dropoutWithSeed(t, 0.1, 7 + c.n), dy)))(x);
      // call 2 of a step whose base seed is 99 + n: hash(base ^ hash(2)), on the device
      const seeds = new DropoutSeeds(99 + c.n);
      const based = tf.tidy(() => (seeds.apply(x, 0.1).dispose(), seeds.apply(x, 0.1), seeds.apply(x, 0.3)));
      const gb = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(new DropoutSeeds(99 + c.n).apply(t, 0.3), dy)))(x);
      out.push(...((await Promise.all([y.data(), g.data(), based.data(), gb.data()])) as Float32Array[]));
      tf.dispose([x, dy, y, g, based, gb]);
    }
    if (name === "cpu") tf.unregisterKernel(DROPOUT, "cpu");
    return out;
  };
  const [cpu, gpu] = [await run("cpu"), await run("webgpu")];
  cpu.forEach((a, i) => assert.equal(bits(gpu[i]), bits(a), `array ${i}`));
  const mask = (a: Float32Array) => a.map((v) => (v === 0 ? 0 : 1)).join("");
  assert.ok(mask(cpu[6]) !== mask(cpu[7]), "calls 2 and 0 of one step (1,000 values at rate 0.3) mask differently");
  assert.ok(mask(cpu[7]) !== mask(cpu[11].subarray(0, 1000)), "steps of other bases mask differently");
  const { keys } = await programsOf(() => dropoutWithSeed(tf.ones([300]), 0.5, 3));
  assert.equal(keys.filter((k) => !k.startsWith("fill")), ["retromaeDropout_plain"]);
});

test("GELU on webgpu (one pass each way) matches the cpu's composition, values and gradients, on odd sizes", async () => {
  const rng = new Rng(13);
  for (const shape of [[1], [3, 67], [2, 5, 129]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = Float32Array.from(rng.fillNormal(new Float32Array(n)), (v) => 3 * v);
    const w = rng.fillNormal(new Float32Array(n));
    const y = await both(() => gelu(tf.tensor(x, shape)));
    const dx = await both(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), tf.tensor(w, shape))))(tf.tensor(x, shape)));
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(y.cpu[i] - y.gpu[i]) < 2e-6 * Math.max(1, Math.abs(y.cpu[i])), `gelu ${x[i]}: cpu ${y.cpu[i]} vs webgpu ${y.gpu[i]}`);
      assert.ok(Math.abs(dx.cpu[i] - dx.gpu[i]) < 1e-5 * Math.max(1, Math.abs(dx.cpu[i])), `gelu' ${x[i]}: cpu ${dx.cpu[i]} vs webgpu ${dx.gpu[i]}`);
    }
  }
  await use("webgpu");
  assert.ok(tf.getKernel(GELU, "webgpu"), "the fused kernel serves webgpu");
});

test("the additive mask of a 0/1 byte matrix on webgpu (four bytes to a word, one pass): 0 where a byte is set and MASK_VALUE where not, as on cpu, on odd shapes, from unaligned bytes and past 65,535 workgroups; an empty one dispatches nothing", async () => {
  const M = -3.4028234663852886e38;
  const rng = new Rng(21);
  for (const shape of [[1, 1, 1, 1], [3, 1, 5, 7], [2, 1, 64, 64], [2, 1, 2048, 1031]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(n + 1).subarray(1); // starts off a word: bytesAsWords copies
    for (let i = 0; i < n; i++) bytes[i] = rng.float() < 0.4 ? 1 : 0;
    const words = bytesAsWords(bytes);
    const r = await both(() => additiveMaskOfBytes(words, shape, M));
    const expected = Float32Array.from(bytes, (v) => (v ? 0 : M));
    assert.equal(r.shape, shape);
    assert.equal(bits(r.gpu), bits(expected), `[${shape}]: webgpu`);
    assert.equal(bits(r.cpu), bits(expected), `[${shape}]: cpu`);
  }
  const { keys } = await programsOf(() => additiveMaskOfBytes(bytesAsWords(Uint8Array.of(1, 0, 1, 1, 0)), [5], M));
  assert.equal(keys, ["retromaeAdditiveMaskOfBytes"]);
  const empty = await programsOf(() => additiveMaskOfBytes(new Int32Array(0), [2, 1, 0, 0], M));
  assert.equal([empty.keys, empty.values.length], [[], 0]);
});

test("Add & LayerNorm on webgpu matches the cpu's composition, forward (with and without the residual, taped or not) and backward", async () => {
  const rng = new Rng(14);
  // (the gradient's workgroups take a row each, up to 1,024 rows; [2051, 70]: three rows each, the last group two, and
  // two columns an invocation; [3, 300]: five)
  for (const [rows, H] of [[1, 5], [7, 32], [130, 67], [3, 300], [260, 9], [2051, 70]]) {
    const x = rng.fillNormal(new Float32Array(rows * H));
    const res = rng.fillNormal(new Float32Array(rows * H));
    const gamma = Float32Array.from(rng.fillNormal(new Float32Array(H)), (v) => 1 + 0.1 * v);
    const beta = rng.fillNormal(new Float32Array(H));
    const w = rng.fillNormal(new Float32Array(rows * H));
    for (const withResidual of [true, false]) {
      const t = (a: Float32Array, s = [rows, H]) => tf.tensor(a, s);
      const f = (...a: tf.Tensor[]) => tf.sum(tf.mul(withResidual ? addLayerNorm(a[0], a[1], a[2], a[3], 1e-12) : addLayerNorm(a[0], null, a[1], a[2], 1e-12), t(w)));
      const args = () => (withResidual ? [t(x), t(res), t(gamma, [H]), t(beta, [H])] : [t(x), t(gamma, [H]), t(beta, [H])]);
      const y = await both(() => tf.tidy(() => addLayerNorm(t(x), withResidual ? t(res) : null, t(gamma, [H]), t(beta, [H]), 1e-12)));
      const names = withResidual ? ["dx", "dresidual", "dgamma", "dbeta"] : ["dx", "dgamma", "dbeta"];
      const grads: Awaited<ReturnType<typeof both>>[] = [];
      for (let k = 0; k < names.length; k++) grads.push(await both(() => tf.tidy(() => tf.grads(f)(args())[k])));
      const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
        for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(a[i])), `[${rows}, ${H}] ${what}[${i}]: cpu ${a[i]} vs webgpu ${b[i]}`);
      };
      close(y.cpu, y.gpu, 2e-5, "y");
      names.forEach((what, k) => close(grads[k].cpu, grads[k].gpu, 5e-4, what));
    }
    // the gradient in two dispatches: ds with each group's sums of dy · x̂ and dy, then those sums added (dy and x̂ read once)
    await use("webgpu");
    const { labels } = await pipelineLabels(async () => {
      const [a, g, b] = [tf.tensor(x, [rows, H]), tf.tensor(gamma, [H]), tf.tensor(beta, [H])];
      const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(addLayerNorm(a, null, g, b, 1e-12), tf.tensor(w, [rows, H]))))([a, g, b]);
      await Promise.all(grads.map((t) => t.data()));
      tf.dispose([a, g, b, ...grads]);
    });
    assert.equal(labels.filter((l) => l.includes("LayerNorm")), ["retromaeAddLayerNorm_plain_stats", `retromaeLayerNormDs_${Math.ceil(H / 64)}`, "retromaeLayerNormGammaBeta"], `[${rows}, ${H}]`);
  }
  await use("webgpu");
  assert.ok(tf.getKernel(ADD_LAYER_NORM, "webgpu"), "the fused kernel serves webgpu");
});

test("LayerNorm of GELU(x) on webgpu (geluLayerNorm, the MLM head's transform): one dispatch forward and two back, GELU applied as x is read and GELU′ as x's gradient is written; bit for bit GELU then the LayerNorm, each way; the cpu's values and gradients on odd shapes (a row of one, H not a multiple of a lane, more than a lane per invocation)", async () => {
  const rng = new Rng(43);
  await use("webgpu");
  for (const [N, H] of [[1, 5], [7, 33], [130, 64], [3, 200]]) {
    const name = `[${N}, ${H}]`;
    const [x, gamma, beta, c] = [N * H, H, H, N * H].map((n) => rng.fillNormal(new Float32Array(n)));
    const ins = () => [tf.tensor2d(x, [N, H]), tf.tensor1d(gamma), tf.tensor1d(beta)];
    const f = (fused: boolean) => (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => (fused ? geluLayerNorm(a, g, b, 1e-12) : addLayerNorm(gelu(a), null, g, b, 1e-12));
    const value = (fused: boolean) => () => tf.tidy(() => f(fused)(...(ins() as [tf.Tensor, tf.Tensor, tf.Tensor])));
    const grad = (fused: boolean, which: number) => () => tf.tidy(() => tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(fused)(a, g, b), tf.tensor2d(c, [N, H]))))(ins())[which]);
    for (const [fn, what] of [[value, "y"], [(k: boolean) => grad(k, 0), "dx"], [(k: boolean) => grad(k, 1), "dγ"], [(k: boolean) => grad(k, 2), "dβ"]] as const) {
      const r = await both(fn(true));
      for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-4 * Math.max(1, Math.abs(r.cpu[i])), `${name} ${what}[${i}]: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
      const read = (fused: boolean) => pipelineLabels(async () => { const t = fn(fused)(); const v = await t.data(); t.dispose(); return v; });
      const [fused, apart] = [await read(true), await read(false)];
      assert.equal(bits(fused.result), bits(apart.result), `${name} ${what}: GELU then the LayerNorm's bits`);
      if (what === "y") assert.equal(fused.labels, ["retromaeAddLayerNorm_gelu_y"], `${name}: ${fused.labels.join(", ")}`);
      if (what === "dx") {
        // no GELU program either way (tfjs programs by shader key), where GELU then the LayerNorm runs one each way
        const [keysFused, keysApart] = [(await programsOf(fn(true))).keys, (await programsOf(fn(false))).keys];
        assert.ok(!keysFused.some((k) => /^retromaeGelu/.test(k)), `${name}: ${keysFused.join(", ")}`);
        assert.equal(keysApart.filter((k) => /^retromaeGelu/.test(k)), ["retromaeGelu", "retromaeGeluGrad"], `${name}: ${keysApart.join(", ")}`);
        assert.equal(fused.labels.filter((l) => /LayerNorm/.test(l)), ["retromaeAddLayerNorm_gelu_stats", `retromaeLayerNormDs_gelu_${Math.ceil(H / 64)}`, "retromaeLayerNormGammaBeta"], name);
      }
    }
  }
});

test("the attention in training on webgpu reads q, k and v in place from their stacked projections (self-attention's [B, L, 3H]; q and [B, Lk, 2H] otherwise) and writes their gradients side by side: the cpu's split-and-merge composition (scores, masked softmax, dropout, context), values and gradients on odd shapes, the same bits twice, no transposes and no adds; where the heads split (the tiled matmul, RETROMAE_WEBGPU_HEADS=split) it does not apply", async () => {
  const rng = new Rng(32);
  const M = -3.4028234663852886e38;
  // [B, heads, Lq, Lk, dh, rate, self, order]: a batch of one, one head, tails past a 32 × 32 tile, dh not a multiple of 4, Lq ≠ Lk,
  // one query row; q, k and v's columns in another order (q not first: each operand of a product read from an offset)
  const shapes: [number, number, number, number, number, number, boolean, number[]][] = [
    [1, 1, 5, 5, 3, 0.3, true, [0, 1, 2]],
    [2, 3, 33, 33, 5, 0, true, [1, 2, 0]],
    [3, 2, 40, 40, 16, 0.1, true, [0, 1, 2]],
    [2, 3, 33, 70, 5, 0.3, false, [0, 1, 0]],
    [1, 4, 1, 9, 8, 0, false, [0, 0, 1]],
    [1, 1, 5, 7, 3, 0.5, false, [0, 1, 0]],
  ];
  registerCounterDropout("cpu");
  try {
    for (const [B, heads, Lq, Lk, dh, rate, self, order] of shapes) {
      const H = heads * dh;
      const name = `[${B}, ${heads}, ${Lq}, ${Lk}, ${dh}]${self ? " self" : ""} at ${rate}, columns ${order.join("")}`;
      const [Wq, Wkv] = self ? [3 * H, 3 * H] : [H, 2 * H];
      const [qv, kvv, u] = [B * Lq * Wq, B * Lk * Wkv, B * Lq * H].map((n) => rng.fillNormal(new Float32Array(n)));
      const mq = self ? Lq : 1; // the self cases take a mask per query row, its first row seeing nothing
      const mask = Float32Array.from({ length: B * mq * Lk }, () => (rng.int(3) === 0 ? M : 0));
      if (self) mask.fill(M, 0, Lk);
      const columns = order.map((o) => o * H) as [number, number, number];
      const call = () => (rate > 0 ? new DropoutSeeds(60 + Lk).next(rate) : undefined);
      const ms = () => tf.tensor4d(mask, [B, 1, mq, Lk]);
      // on webgpu attentionTraining; on the cpu the composition, from the same columns
      const attn = (q: tf.Tensor, kv: tf.Tensor) => {
        if (tf.getBackend() === "webgpu") {
          assert.ok(attentionTrainingApplies(B, heads, Lq, Lk, H, ms()), name);
          return attentionTraining(q as tf.Tensor3D, (self ? q : kv) as tf.Tensor3D, ms(), heads, 0.25, columns, call());
        }
        const cols = (t: tf.Tensor, c: number) => tf.slice(t, [0, 0, c], [-1, -1, H]) as tf.Tensor3D;
        const kvs = self ? q : kv;
        const p = scaledMaskedSoftmax(attentionScores(cols(q, columns[0]), cols(kvs, columns[1]), heads), ms(), 0.25, call());
        return attentionContext(p, cols(kvs, columns[2]), heads);
      };
      const loss = (...a: tf.Tensor[]) => tf.sum(tf.mul(attn(a[0], a[1] ?? a[0]), tf.tensor3d(u, [B, Lq, H])));
      const ins = () => (self ? [tf.tensor3d(qv, [B, Lq, Wq])] : [tf.tensor3d(qv, [B, Lq, Wq]), tf.tensor3d(kvv, [B, Lk, Wkv])]);
      const cases: [string, () => tf.Tensor][] = [
        ["the output", () => tf.tidy(() => attn(ins()[0], ins()[1] ?? ins()[0]))],
        [self ? "dqkv" : "dq", () => tf.tidy(() => tf.grads(loss)(ins())[0])],
        ...(self ? [] : ([["dkv", () => tf.tidy(() => tf.grads(loss)(ins())[1])]] as [string, () => tf.Tensor][])),
      ];
      for (const [what, f] of cases) {
        const r = await both(f);
        for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-4 * Math.max(1, Math.abs(r.cpu[i])), `${name} ${what}[${i}]: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
        const [first, second] = [await programsOf(f), await programsOf(f)];
        assert.equal(bits(first.values), bits(second.values), `${name} ${what}: the same bits twice`);
        assert.ok(first.keys.some((key) => key.startsWith("retromaeHeadMatMul_")) && !first.keys.some((key) => /^(transpose|binary_0_|slice|concat)/.test(key)), `${name} ${what}: ${first.keys.join(", ")}`);
      }
    }
  } finally {
    tf.unregisterKernel(DROPOUT, "cpu");
  }
  await use("webgpu");
  const mask = tf.zeros([1, 1, 1, 130]) as tf.Tensor4D;
  assert.ok(attentionTrainingApplies(1, 2, 128, 130, 8, mask));
  // where the batched [Lq, Lk] product takes the 128 × 128 tiled matmul (RETROMAE_WEBGPU_MATMUL=tiled here; a base model at 512 tokens by default), the heads are split
  process.env.RETROMAE_WEBGPU_MATMUL = "tiled";
  try {
    assert.not.ok(attentionTrainingApplies(1, 2, 128, 130, 8, mask));
  } finally {
    delete process.env.RETROMAE_WEBGPU_MATMUL;
  }
  // RETROMAE_WEBGPU_HEADS=split splits them everywhere (bench gpu's comparison); a bad value is one sentence
  process.env.RETROMAE_WEBGPU_HEADS = "split";
  try {
    assert.not.ok(attentionTrainingApplies(1, 2, 5, 7, 8, tf.zeros([1, 1, 1, 7]) as tf.Tensor4D));
    process.env.RETROMAE_WEBGPU_HEADS = "yes";
    assert.throws(() => attentionTrainingApplies(1, 2, 5, 7, 8, tf.zeros([1, 1, 1, 7]) as tf.Tensor4D), /^RETROMAE_WEBGPU_HEADS is "yes"; set it to inplace \(the default\) or split, or unset it\.$/);
  } finally {
    delete process.env.RETROMAE_WEBGPU_HEADS;
  }
  // a layout whose gradient would not cover the projection is refused, as a bug
  assert.throws(() => tf.tidy(() => attentionTraining(tf.ones([1, 5, 8]) as tf.Tensor3D, tf.ones([1, 5, 8]) as tf.Tensor3D, tf.zeros([1, 1, 1, 5]) as tf.Tensor4D, 2, 0.5, [0, 0, 0])), /a bug in this package/);
});

test("stacking rows on webgpu (a stacked projection's weights and biases) is tf.concat along the first axis, values and gradients, one dispatch each way; other tensors are concatenated", async () => {
  const rng = new Rng(33);
  // [rows of each piece] per group, with the groups' trailing shapes: three weights and their biases, two of each, one alone
  const layouts: [number[][], number[][]][] = [
    [[[7, 7, 7], [7, 7, 7]], [[5], []]],
    [[[3, 4], [3, 4]], [[2, 3], []]],
    [[[1]], [[9]]],
  ];
  for (const [rowsOf, trailing] of layouts) {
    const shapes = rowsOf.flatMap((rows, g) => rows.map((r) => [r, ...trailing[g]]));
    const values = shapes.map((sh) => rng.fillNormal(new Float32Array(sh.reduce((a, b) => a * b, 1))));
    const weights = shapes.map((sh) => rng.fillNormal(new Float32Array(sh.reduce((a, b) => a * b, 1))));
    const pieces = () => values.map((v, i) => tf.tensor(v, shapes[i]));
    const groupsOf = (ts: tf.Tensor[]) => {
      let at = 0;
      return rowsOf.map((rows) => ts.slice(at, (at += rows.length)));
    };
    const stackedWeights = () => groupsOf(weights.map((w, i) => tf.tensor(w, shapes[i]))).map((g) => tf.concat(g, 0));
    const loss = (...ts: tf.Tensor[]) => tf.addN(stackRows(groupsOf(ts)).map((t, g) => tf.sum(tf.mul(t, stackedWeights()[g]))));
    const name = JSON.stringify(rowsOf);
    const stacked = await both(() => tf.tidy(() => tf.concat(stackRows(groupsOf(pieces())).map((t) => t.reshape([-1])))));
    assert.equal(Array.from(stacked.gpu), Array.from(stacked.cpu), `${name}: the stacked values`);
    const grads = await both(() => tf.tidy(() => tf.concat(tf.grads(loss)(pieces()).map((t) => t.reshape([-1])))));
    assert.equal(Array.from(grads.gpu), Array.from(grads.cpu), `${name}: the gradients given back`);
    const { labels } = await pipelineLabels(async () => {
      const g = tf.tidy(() => tf.concat(tf.grads(loss)(pieces()).map((t) => t.reshape([-1]))));
      await g.data();
      g.dispose();
    });
    const counts = rowsOf.map((r) => r.length).join("_");
    assert.equal(labels.filter((l) => /[Ss]tackRows/.test(l)), [`retromaeStackRows_${counts}`, `retromaeUnstackRows_${counts}`], name);
  }
  // more pieces than one shader binds (six, with the two outputs: WebGPU's least 8 storage buffers): tf.concat
  const { keys, values } = await programsOf(() => tf.tidy(() => stackRows([Array.from({ length: 7 }, (_, i) => tf.fill([1, 2], i))])[0]));
  assert.ok(keys.some((k) => k.startsWith("concat")), keys.join(", "));
  assert.equal(Array.from(values), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]);
});

test("the attention softmax (scale and additive mask) on webgpu matches the cpu's composition, values and gradients; fully masked rows are uniform", async () => {
  const rng = new Rng(15);
  const M = -3.4028234663852886e38;
  for (const [B, heads, Lq, Lk, perQuery] of [[2, 3, 5, 7, false], [2, 2, 6, 6, true], [1, 1, 1, 70, false], [3, 2, 4, 130, true]] as const) {
    const x = rng.fillNormal(new Float32Array(B * heads * Lq * Lk));
    const mq = perQuery ? Lq : 1;
    const mask = Float32Array.from({ length: B * mq * Lk }, () => (rng.int(3) === 0 ? M : 0));
    if (perQuery) for (let c = 0; c < Lk; c++) mask[c] = M; // batch 0, query 0: sees nothing
    const w = rng.fillNormal(new Float32Array(x.length));
    const xs = () => tf.tensor4d(x, [B, heads, Lq, Lk]);
    const ms = () => tf.tensor4d(mask, [B, 1, mq, Lk]);
    const p = await both(() => scaledMaskedSoftmax(xs(), ms(), 0.125));
    const dx = await both(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(scaledMaskedSoftmax(t as tf.Tensor4D, ms(), 0.125), tf.tensor4d(w, [B, heads, Lq, Lk]))))(xs()));
    for (let i = 0; i < x.length; i++) {
      assert.ok(Math.abs(p.cpu[i] - p.gpu[i]) < 1e-6, `[${B}, ${heads}, ${Lq}, ${Lk}] p[${i}]: cpu ${p.cpu[i]} vs webgpu ${p.gpu[i]}`);
      assert.ok(Math.abs(dx.cpu[i] - dx.gpu[i]) < 1e-6, `dx[${i}]: cpu ${dx.cpu[i]} vs webgpu ${dx.gpu[i]}`);
    }
    if (perQuery) for (let c = 0; c < Lk; c++) assert.ok(Math.abs(p.gpu[c] - 1 / Lk) < 1e-6, "a row that sees nothing is uniform");
  }
  await use("webgpu");
  assert.ok(tf.getKernel(SCALED_MASKED_SOFTMAX, "webgpu"));
});

/** The labels of the pipelines that `fn` dispatches on webgpu (raw dispatches by their keys; tfjs's programs are all "Object"), and its result. */
async function pipelineLabels<T>(fn: () => Promise<T>): Promise<{ labels: string[]; result: T }> {
  await use("webgpu");
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  const pass = device.createCommandEncoder().beginComputePass();
  const proto = Object.getPrototypeOf(pass) as GPUComputePassEncoder;
  pass.end();
  const labels: string[] = [];
  const setPipeline = proto.setPipeline;
  proto.setPipeline = function (this: GPUComputePassEncoder, pipeline: GPUComputePipeline) {
    labels.push(pipeline.label);
    return setPipeline.call(this, pipeline);
  };
  try {
    return { labels, result: await fn() };
  } finally {
    proto.setPipeline = setPipeline;
  }
}

test("dropout inside Add & LayerNorm (of x), inside LayerNorm (of y, the embeddings' order, and with the embeddings' sum read from their tables in place) and inside the attention softmax (of the probabilities) on webgpu, a step's call drawn in the kernels: the cpu's dropout-then-LayerNorm and softmax-then-dropout, values and gradients on odd shapes, the same masks bit for bit, the same bits twice; no dropout pass and no dropped copy of x", async () => {
  const rng = new Rng(16);
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(a[i])), `${what}[${i}]: cpu ${a[i]} vs webgpu ${b[i]}`);
  };
  const zeros = (a: ArrayLike<number>) => Array.from(a, (v) => (v === 0 ? 1 : 0)).join("");
  /** call `k` of a step whose base seed is `base`, at `rate` */
  const callOf = (base: number, k: number, rate: number) => {
    const seeds = new DropoutSeeds(base);
    for (let i = 0; i < k; i++) seeds.next(rate);
    return seeds.next(rate);
  };
  const onBoth = async (fn: () => tf.Tensor) => {
    registerCounterDropout("cpu");
    try {
      return await both(fn);
    } finally {
      tf.unregisterKernel(DROPOUT, "cpu");
    }
  };
  // Add & LayerNorm: [rows, H], with and without the residual
  for (const [rows, H, rate, withResidual] of [[1, 5, 0.5, true], [130, 67, 0.1, true], [3, 300, 0.3, false]] as const) {
    const name = `[${rows}, ${H}] at ${rate}${withResidual ? "" : ", no residual"}`;
    const [x, res, beta, w] = [rows * H, rows * H, H, rows * H].map((n) => rng.fillNormal(new Float32Array(n)));
    const gamma = Float32Array.from(rng.fillNormal(new Float32Array(H)), (v) => 1 + 0.1 * v);
    const t = (a: Float32Array, s = [rows, H]) => tf.tensor(a, s);
    // (x, residual, γ, β), or (x, γ, β)
    const f = (...a: tf.Tensor[]) => tf.sum(tf.mul(addLayerNorm(a[0], withResidual ? a[1] : null, a[a.length - 2], a[a.length - 1], 1e-12, callOf(40 + rows, 2, rate)), t(w)));
    const args = () => [t(x), ...(withResidual ? [t(res)] : []), t(gamma, [H]), t(beta, [H])];
    const y = await onBoth(() => tf.tidy(() => addLayerNorm(t(x), withResidual ? t(res) : null, t(gamma, [H]), t(beta, [H]), 1e-12, callOf(40 + rows, 2, rate))));
    close(y.cpu, y.gpu, 2e-5, `${name} y`);
    for (const [k, what] of (withResidual ? ["dx", "dresidual", "dgamma", "dbeta"] : ["dx", "dgamma", "dbeta"]).entries()) {
      const g = await onBoth(() => tf.tidy(() => tf.grads(f)(args())[k]));
      close(g.cpu, g.gpu, 5e-4, `${name} ${what}`);
      if (what === "dx") {
        assert.is(zeros(g.gpu), zeros(g.cpu), `${name}: dx is 0 where the cpu's mask dropped x`);
        if (rate >= 0.3) assert.ok(zeros(g.gpu).includes("1"), `${name}: some of x dropped`);
      }
    }
    // the kernels: one raw dispatch forward, and the gradient's (ds and dx in one) with no tfjs program for the dropout
    const gradsOnce = () => tf.tidy(() => tf.grads(f)(args()));
    const run = () =>
      pipelineLabels(async () => {
        const { keys, values } = await programsOf(() => tf.tidy(() => tf.concat(gradsOnce().map((g) => g.reshape([-1])))));
        return { keys, values };
      });
    const [first, second] = [await run(), await run()];
    assert.equal(bits(first.result.values), bits(second.result.values), `${name}: the same bits twice`);
    assert.ok(!first.result.keys.some((k) => k.startsWith("retromaeDropout")), `${name}: ${first.result.keys.join(", ")}`);
    const key = `retromaeAddLayerNorm_${withResidual ? "residual" : "plain"}_stats_dropout`;
    assert.equal(first.labels.filter((l) => l.startsWith("retromae")).slice(0, 2), [key, `retromaeLayerNormDs_dropout_${Math.ceil(H / 64)}`], name);
    const forward = await pipelineLabels(async () => {
      const out = tf.tidy(() => addLayerNorm(t(x), withResidual ? t(res) : null, t(gamma, [H]), t(beta, [H]), 1e-12, callOf(1, 0, rate)));
      await out.data();
      out.dispose();
    });
    assert.equal(forward.labels, [`retromaeAddLayerNorm_${withResidual ? "residual" : "plain"}_y_dropout`], `${name}: untaped, one dispatch`);
  }
  // LayerNorm, then dropout of y (the embeddings' order): [rows, H]; dy read under y's mask for ds and γ's and β's sums
  for (const [rows, H, rate] of [[1, 5, 0.5], [130, 67, 0.1], [2051, 70, 0.3]] as const) {
    const name = `LayerNorm then dropout [${rows}, ${H}] at ${rate}`;
    const [x, beta, w] = [rows * H, H, rows * H].map((n) => rng.fillNormal(new Float32Array(n)));
    const gamma = Float32Array.from(rng.fillNormal(new Float32Array(H)), (v) => 1 + 0.1 * v);
    const t = (a: Float32Array, s = [rows, H]) => tf.tensor(a, s);
    const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(layerNormDropout(a, g, b, 1e-12, callOf(60 + rows, 1, rate)), t(w)));
    const args = () => [t(x), t(gamma, [H]), t(beta, [H])];
    const y = await onBoth(() => tf.tidy(() => layerNormDropout(t(x), t(gamma, [H]), t(beta, [H]), 1e-12, callOf(60 + rows, 1, rate))));
    close(y.cpu, y.gpu, 2e-5, `${name} y`);
    assert.is(zeros(y.gpu), zeros(y.cpu), `${name}: the cpu's mask`);
    if (rate >= 0.3) assert.ok(zeros(y.gpu).includes("1"), `${name}: some of y dropped`);
    for (const [k, what] of ["dx", "dgamma", "dbeta"].entries()) {
      const g = await onBoth(() => tf.tidy(() => tf.grads(f)(args())[k]));
      close(g.cpu, g.gpu, 5e-4, `${name} ${what}`);
    }
    const run = () => pipelineLabels(() => programsOf(() => tf.tidy(() => tf.concat(tf.grads(f)(args()).map((g) => g.reshape([-1]))))));
    const [first, second] = [await run(), await run()];
    assert.equal(bits(first.result.values), bits(second.result.values), `${name}: the same bits twice`);
    assert.ok(!first.result.keys.some((k) => k.startsWith("retromaeDropout")), `${name}: ${first.result.keys.join(", ")}`);
    assert.equal(first.labels.filter((l) => l.includes("LayerNorm")), ["retromaeAddLayerNorm_plain_stats_dropoutY", `retromaeLayerNormDs_dropoutY_${Math.ceil(H / 64)}`, "retromaeLayerNormGammaBeta"], name);
  }
  // BertEmbeddings with no token types: LayerNorm(x + positions[0, L) + types[0]), then dropout (or none), the tables read in
  // place; [B, L, H, positions P, types T]: a batch of one and a row of one, L = P, one type, rows past a workgroup's 1,024
  for (const [B, L, H, P, T, rate] of [[1, 1, 5, 3, 2, 0.5], [3, 5, 67, 7, 2, 0.1], [2, 130, 9, 130, 1, 0.3], [9, 120, 70, 128, 2, 0], [2, 4, 6, 8, 2, 0]] as const) {
    const name = `the embeddings [${B}, ${L}, ${H}] at ${rate}`;
    const [x, pos, types, beta, w] = [B * L * H, P * H, T * H, H, B * L * H].map((n) => rng.fillNormal(new Float32Array(n)));
    const gamma = Float32Array.from(rng.fillNormal(new Float32Array(H)), (v) => 1 + 0.1 * v);
    const call = () => (rate > 0 ? callOf(70 + L, 3, rate) : undefined);
    // the fused kernel where the backend has it (webgpu), else the composition it replaces
    const embed = (a: tf.Tensor, p: tf.Tensor, ty: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const c = call();
      const fused = embeddingsLayerNorm(a as tf.Tensor3D, p as tf.Tensor2D, ty as tf.Tensor2D, g, b, 1e-12, c);
      if (fused) return fused;
      const sum = tf.add(tf.add(a, tf.slice(p, [0, 0], [L, H])), tf.slice(ty, [0, 0], [1, H]));
      return c ? layerNormDropout(sum, g, b, 1e-12, c) : addLayerNorm(sum, null, g, b, 1e-12);
    };
    const args = () => [tf.tensor3d(x, [B, L, H]), tf.tensor2d(pos, [P, H]), tf.tensor2d(types, [T, H]), tf.tensor1d(gamma), tf.tensor1d(beta)];
    const f = (...a: tf.Tensor[]) => tf.sum(tf.mul(embed(a[0], a[1], a[2], a[3], a[4]), tf.tensor3d(w, [B, L, H])));
    const y = await onBoth(() => tf.tidy(() => embed(...(args() as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]))));
    close(y.cpu, y.gpu, 2e-5, `${name} y`);
    assert.is(zeros(y.gpu), zeros(y.cpu), `${name}: the cpu's mask`);
    for (const [k, what] of ["dx", "dpositions", "dtypes", "dgamma", "dbeta"].entries()) {
      const g = await onBoth(() => tf.tidy(() => tf.grads(f)(args())[k]));
      close(g.cpu, g.gpu, 5e-4, `${name} ${what}`);
    }
    const run = () => pipelineLabels(() => programsOf(() => tf.tidy(() => tf.concat(tf.grads(f)(args()).map((g) => g.reshape([-1]))))));
    const [first, second] = [await run(), await run()];
    assert.equal(bits(first.result.values), bits(second.result.values), `${name}: the same bits twice`);
    // one dispatch forward, four back (ds with γ's and β's sums, their sum, each table's): no slice, add, pad, reduction or dropout
    const drop = rate > 0 ? "_dropoutY" : "";
    const ours = [`retromaeAddLayerNorm_embeddings_stats${drop}`, `retromaeLayerNormDs${drop}_${Math.ceil(H / 64)}`, "retromaeLayerNormGammaBeta", "retromaeEmbeddingTablesGrad_positions", "retromaeEmbeddingTablesGrad_types"];
    assert.equal(first.labels.filter((l) => l.startsWith("retromae") && !l.startsWith("retromaeFill")), ours, name);
    // (the test's own product with w, its sum and gradient, and the concat aside)
    assert.equal(first.result.keys.filter((k) => !/^(binary_17_|reduce_sum|concat)/.test(k)), [], name);
  }
  // the attention softmax: [B, heads, Lq, Lk], the mask per key or per query and key (one row that sees nothing)
  const M = -3.4028234663852886e38;
  for (const [B, heads, Lq, Lk, perQuery, rate] of [[2, 3, 5, 7, false, 0.5], [1, 1, 1, 70, false, 0.1], [3, 2, 4, 130, true, 0.3]] as const) {
    const name = `[${B}, ${heads}, ${Lq}, ${Lk}] at ${rate}`;
    const x = rng.fillNormal(new Float32Array(B * heads * Lq * Lk));
    const mq = perQuery ? Lq : 1;
    const mask = Float32Array.from({ length: B * mq * Lk }, () => (rng.int(3) === 0 ? M : 0));
    if (perQuery) for (let c = 0; c < Lk; c++) mask[c] = M;
    const w = rng.fillNormal(new Float32Array(x.length));
    const xs = () => tf.tensor4d(x, [B, heads, Lq, Lk]);
    const ms = () => tf.tensor4d(mask, [B, 1, mq, Lk]);
    const call = () => callOf(50 + Lk, 1, rate);
    const p = await onBoth(() => tf.tidy(() => scaledMaskedSoftmax(xs(), ms(), 0.125, call())));
    const dx = await onBoth(() => tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(scaledMaskedSoftmax(t as tf.Tensor4D, ms(), 0.125, call()), tf.tensor4d(w, [B, heads, Lq, Lk]))))(xs())));
    close(p.cpu, p.gpu, 1e-6, `${name} p`);
    close(dx.cpu, dx.gpu, 1e-6, `${name} dx`);
    assert.is(zeros(p.gpu), zeros(p.cpu), `${name}: the cpu's mask`);
    const run = () =>
      pipelineLabels(() => programsOf(() => tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(scaledMaskedSoftmax(t as tf.Tensor4D, ms(), 0.125, call()), tf.tensor4d(w, [B, heads, Lq, Lk]))))(xs()))));
    const [first, second] = [await run(), await run()];
    assert.equal(bits(first.result.values), bits(second.result.values), `${name}: the same bits twice`);
    assert.equal(first.labels.filter((l) => l.startsWith("retromae")), ["retromaeScaledMaskedSoftmax_dropout"], name);
    assert.equal(first.result.keys.filter((k) => k.startsWith("retromae")), ["retromaeScaledSoftmaxGradDropout_64"], name);
  }
  await use("webgpu");
  assert.ok(tf.getKernel(DROPOUT_ADD_LAYER_NORM, "webgpu") && tf.getKernel(DROPOUT_SOFTMAX, "webgpu"));
  assert.not.ok(tf.getKernel(DROPOUT_ADD_LAYER_NORM, "cpu") || tf.getKernel(DROPOUT_SOFTMAX, "cpu"), "the cpu composes them");
});

test("the masked cross-entropy's pieces on webgpu match the cpu's composition: log-sum-exp, argmax, softmax − onehot and its column sums, with row weights (0 at padding) too", async () => {
  const rng = new Rng(16);
  for (const [N, V] of [[1, 5], [7, 64], [130, 67], [3, 5000]]) {
    const z = Float32Array.from(rng.fillNormal(new Float32Array(N * V)), (v) => 4 * v);
    z[0] = z[1]; // a tie: argmax takes the first
    const y = Int32Array.from({ length: N }, () => rng.int(V));
    const zs = () => tf.tensor2d(z, [N, V]);
    const lse = await both(() => logSumExpRows(zs()));
    const am = await both(() => logSumExpArgMax(zs())[1]);
    const dz = await both(() => softmaxMinusOneHotColSum(zs(), tf.tensor1d(y, "int32"))[0]);
    const col = await both(() => softmaxMinusOneHotColSum(zs(), tf.tensor1d(y, "int32"))[1]);
    const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(a[i])), `[${N}, ${V}] ${what}[${i}]: cpu ${a[i]} vs webgpu ${b[i]}`);
    };
    close(lse.cpu, lse.gpu, 1e-6, "lse");
    assert.equal(Array.from(am.gpu), Array.from(am.cpu), "argmax");
    close(dz.cpu, dz.gpu, 1e-6, "dz");
    close(col.cpu, col.gpu, 1e-5, "colsum");
    // row weights, as static shapes pad: the weighted rows' sums only, zero rows at padding
    const w = Float32Array.from({ length: N }, (_, i) => [1, 0, 0.5][i % 3]);
    const wdz = await both(() => softmaxMinusOneHotColSum(zs(), tf.tensor1d(y, "int32"), tf.tensor1d(w))[0]);
    const wcol = await both(() => softmaxMinusOneHotColSum(zs(), tf.tensor1d(y, "int32"), tf.tensor1d(w))[1]);
    close(wdz.cpu, wdz.gpu, 1e-6, "weighted dz");
    close(wcol.cpu, wcol.gpu, 1e-5, "weighted colsum");
    for (let r = 1; r < N; r += 3) assert.ok(wdz.gpu.slice(r * V, (r + 1) * V).every((v) => v === 0), `padded row ${r} is zero`);
    close(dz.cpu.slice(0, V), wdz.gpu.slice(0, V), 1e-6, "a row of weight 1");
  }
});

test("the mean cross-entropy and accuracy of the MLM rows on webgpu, from each row's log-sum-exp, label logit and argmax: the cpu's values, weighted (0 at padding; no weight at all: the divisor 1) and not, past a workgroup's 256 rows, in one dispatch", async () => {
  const rng = new Rng(17);
  for (const N of [1, 7, 300, 1030]) {
    const lse = Float32Array.from(rng.fillNormal(new Float32Array(N)), (v) => 10 + v);
    const picked = rng.fillNormal(new Float32Array(N));
    const labels = Int32Array.from({ length: N }, () => rng.int(9));
    const predicted = Int32Array.from(labels, (y, i) => (i % 3 === 0 ? y : (y + 1) % 9)); // a third right
    for (const weights of [null, Float32Array.from({ length: N }, (_, i) => [1, 0, 1, 1][i % 4]), new Float32Array(N)]) {
      const name = `N ${N}, ${weights ? (weights.some((w) => w > 0) ? "weighted" : "no weight") : "unweighted"}`;
      const parts = () => {
        const out = meanNllAndAccuracy(tf.tensor1d(lse), tf.tensor1d(picked), tf.tensor1d(predicted, "int32"), tf.tensor1d(labels, "int32"), weights ? tf.tensor1d(weights) : undefined);
        return tf.stack([out.loss, out.accuracy, ...(out.rowCount ? [out.rowCount] : [])]);
      };
      const r = await both(() => tf.tidy(parts));
      assert.is(r.gpu.length, weights ? 3 : 2, name);
      for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) <= 2e-6 * Math.max(1, Math.abs(r.cpu[i])), `${name} [${i}]: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
      if (weights && !weights.some((w) => w > 0)) assert.equal(Array.from(r.gpu), [0, 0, 1], `${name}: nothing counts`);
      // (the test's stack of the scalars aside: no tfjs program)
      const run = await pipelineLabels(() => programsOf(() => tf.tidy(parts)));
      assert.equal([run.labels.filter((l) => l.startsWith("retromae")), run.result.keys.filter((k) => !/^(concat|stack|pack)/i.test(k))], [[`retromaeMeanNllAccuracy_${weights ? "weighted" : "plain"}`], []], name);
    }
  }
});

atScale("row kernels past 65,535 rows (tfjs then spreads the dispatch over a square with spare workgroups, as at base 32 × 512's 196,608 attention rows): the attention softmax and its gradient, Add & LayerNorm, log-sum-exp with argmax, and the whole attention give the cpu's values to the last row", async () => {
  const rng = new Rng(31);
  const R = 65_537; // 257² = 66,049 workgroups: 512 spare, each past the last row
  const C = 4;
  const x = rng.fillNormal(new Float32Array(R * C));
  const w = rng.fillNormal(new Float32Array(R * C));
  const gamma = rng.fillNormal(new Float32Array(C));
  const xs = () => tf.tensor2d(x, [R, C]);
  const ws = () => tf.tensor2d(w, [R, C]);
  const as4 = (t: tf.Tensor) => t.reshape([R, 1, 1, C]) as tf.Tensor4D;
  const drop = (rate: number) => new DropoutSeeds(R).next(rate);
  const smx = (t: tf.Tensor, rate?: number) => scaledMaskedSoftmax(as4(t), tf.zeros([R, 1, 1, C]) as tf.Tensor4D, 0.5, rate ? drop(rate) : undefined);
  // (one shell, rowWorkgroupProgram, serves these and softmax and softmax − onehot, and one, rawRowsShader, Add & LayerNorm, its
  // gradient and the softmax with dropout; argmax has its own)
  // each is some 4 s on SwiftShader, for 66,049 workgroups
  const checks: [string, () => tf.Tensor, number][] = [
    ["the attention softmax", () => smx(xs()), 1e-6],
    ["the attention softmax's gradient", () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(smx(t), as4(ws()))))(xs()), 1e-6],
    ["Add & LayerNorm", () => addLayerNorm(xs(), ws(), tf.tensor1d(gamma), tf.ones([C]), 1e-12), 1e-5],
    ["log-sum-exp, then argmax", () => tf.concat(logSumExpArgMax(xs()).map((t) => t.toFloat())), 1e-6],
    // with dropout drawn in the kernels (the cpu: the counter-based dropout, then the op): values and gradients
    ["the attention softmax with dropout, and its gradient", () => tf.concat([smx(xs(), 0.3).reshape([-1]), tf.grad((t: tf.Tensor) => tf.sum(tf.mul(smx(t, 0.3), as4(ws()))))(xs()).reshape([-1])]), 1e-6],
    ["Add & LayerNorm with dropout, and the gradients of x and the residual", () => tf.concat(tf.grads((a: tf.Tensor, r: tf.Tensor) => tf.sum(tf.mul(addLayerNorm(a, r, tf.tensor1d(gamma), tf.ones([C]), 1e-12, drop(0.3)), tf.square(ws()))))([xs(), ws()]).map((g) => g.reshape([-1]))), 5e-4],
  ];
  registerCounterDropout("cpu");
  try {
    for (const [what, fn, tol] of checks) {
      const r = await both(() => tf.tidy(fn));
      assert.is(r.gpu.length, r.cpu.length, what);
      for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) <= tol * Math.max(1, Math.abs(r.cpu[i])), `${what} at ${i} (row ${Math.floor(i / C) % R}): cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
    }
  } finally {
    tf.unregisterKernel(DROPOUT, "cpu");
  }
  // the whole attention, 65,537 sequences of one query over two keys: 65,537 workgroups
  const q = rng.fillNormal(new Float32Array(R * 3 * C)); // [R, 1, 3C]: q, k0 | k1, v0 | v1 below
  const kv = rng.fillNormal(new Float32Array(R * 2 * 2 * C)); // [R, 2, 2C]: keys then values
  const expected = new Float32Array(R * C);
  for (let b = 0; b < R; b++) {
    const s = [0, 1].map((j) => 0.5 * [0, 1, 2, 3].reduce((acc, c) => acc + q[b * 3 * C + c] * kv[(b * 2 + j) * 2 * C + c], 0));
    const m = Math.max(...s);
    const e = s.map((v) => Math.exp(v - m));
    for (let c = 0; c < C; c++) expected[b * C + c] = (e[0] * kv[(b * 2) * 2 * C + C + c] + e[1] * kv[(b * 2 + 1) * 2 * C + C + c]) / (e[0] + e[1]);
  }
  const { values } = await programsOf(() => tf.tidy(() => {
    const k = tf.tensor3d(kv, [R, 2, 2 * C]);
    return attentionInference(tf.tensor3d(q, [R, 1, 3 * C]), k, k, tf.zeros([R, 1, 1, 2]) as tf.Tensor4D, 1, 0.5, { hidden: C, columns: [0, 0, C] })!;
  }));
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(expected[i] - values[i]) < 1e-5 * Math.max(1, Math.abs(expected[i])), `attention at ${i}: ${expected[i]} vs webgpu ${values[i]}`);
});

/** The shader keys of the programs `fn` dispatches on webgpu, with its result read. */
async function programsOf(fn: () => tf.Tensor): Promise<{ keys: string[]; values: Float32Array }> {
  await use("webgpu");
  const b = tf.backend() as unknown as WebGPUBackendLike;
  const keys: string[] = [];
  const own = Object.prototype.hasOwnProperty.call(b, "runWebGPUProgram"); // (the backend's start wraps it)
  const run = b.runWebGPUProgram;
  b.runWebGPUProgram = function (this: WebGPUBackendLike, program: object, ...rest: unknown[]) {
    keys.push((program as { shaderKey: string }).shaderKey);
    return (run as (...a: unknown[]) => ReturnType<typeof run>).call(this, program, ...rest);
  } as typeof run;
  try {
    const t = fn();
    const values = (await t.data()) as Float32Array;
    t.dispose();
    return { keys, values };
  } finally {
    if (own) b.runWebGPUProgram = run;
    else delete (b as Partial<WebGPUBackendLike>).runWebGPUProgram;
  }
}

test("the dense layer with GELU in its epilogue (inference on webgpu): one dispatch, the cpu's dense-then-GELU on odd shapes; under the tape, two passes and the cpu's gradients", async () => {
  const rng = new Rng(21);
  // [N, in, out]: a batch of one, row tails, widths that are and are not multiples of 4, and an output small enough for tfjs's reduce program
  for (const [N, K, O] of [[1, 67, 129], [5, 64, 36], [130, 67, 33], [3, 2, 2], [64, 32, 64]]) {
    const x = rng.fillNormal(new Float32Array(N * K));
    const W = rng.fillNormal(new Float32Array(O * K));
    const bias = rng.fillNormal(new Float32Array(O));
    const make = () => [tf.tensor2d(x, [N, K]), tf.tensor2d(W, [O, K]), tf.tensor1d(bias)] as const;
    const f = () => tf.tidy(() => linearGelu(...make()));
    const r = await both(f);
    assert.equal(r.shape, [N, O]);
    for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-5 * Math.max(1, Math.abs(r.cpu[i])), `[${N}, ${K}, ${O}] at ${i}: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
    const { keys, values } = await programsOf(f);
    assert.equal(keys.length, 1, `one program, got ${keys.join(", ")}`);
    assert.ok(keys[0].endsWith("_retromaeGelu"), keys[0]);
    // The same values as the two passes (the same matmul, then the same GELU)
    const twoPass = await programsOf(() => tf.tidy(() => gelu(linear(...make()))));
    assert.equal(twoPass.keys.length, 2);
    for (let i = 0; i < values.length; i++) assert.ok(Math.abs(values[i] - twoPass.values[i]) < 1e-6 * Math.max(1, Math.abs(values[i])));
  }
  // Under the tape: the dense layer then GELU, whose gradient needs the pre-activation
  const [N, K, O] = [7, 33, 65];
  const x = rng.fillNormal(new Float32Array(N * K));
  const W = rng.fillNormal(new Float32Array(O * K));
  const bias = rng.fillNormal(new Float32Array(O));
  const dy = rng.fillNormal(new Float32Array(N * O));
  for (const which of [0, 1, 2]) {
    const g = await both(() => {
      const ins = [tf.tensor2d(x, [N, K]), tf.tensor2d(W, [O, K]), tf.tensor1d(bias)];
      const grads = tf.grads((a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(linearGelu(a as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), tf.tensor2d(dy, [N, O]))))(ins);
      return grads[which];
    });
    for (let i = 0; i < g.cpu.length; i++) assert.ok(Math.abs(g.cpu[i] - g.gpu[i]) < 1e-4 * Math.max(1, Math.abs(g.cpu[i])), `grad ${which} at ${i}: cpu ${g.cpu[i]} vs webgpu ${g.gpu[i]}`);
  }
  assert.ok(tf.getKernel(DENSE_GELU, "webgpu"), "the epilogue kernel serves webgpu");
});

test("RETROMAE_WEBGPU_DENSE=transposed: the dense layer as x·(Wᵀ) (tfjs's vec4 matmul) gives the cpu's values and gradients on odd shapes, the default's gradients bit for bit, and a recorded training step; a bad value is one sentence", async () => {
  const rng = new Rng(23);
  const layout = async <T>(v: string | undefined, fn: () => Promise<T>): Promise<T> => {
    const before = process.env.RETROMAE_WEBGPU_DENSE;
    if (v === undefined) delete process.env.RETROMAE_WEBGPU_DENSE;
    else process.env.RETROMAE_WEBGPU_DENSE = v;
    try {
      return await fn();
    } finally {
      if (before === undefined) delete process.env.RETROMAE_WEBGPU_DENSE;
      else process.env.RETROMAE_WEBGPU_DENSE = before;
    }
  };
  for (const [N, K, O] of [[1, 68, 128], [7, 33, 65], [130, 64, 36]]) {
    const [x, W, bias, dy] = [N * K, O * K, O, N * O].map((n) => rng.fillNormal(new Float32Array(n)));
    const ins = () => [tf.tensor2d(x, [N, K]), tf.tensor2d(W, [O, K]), tf.tensor1d(bias)];
    const value = () => tf.tidy(() => linear(...(ins() as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D])));
    const grad = (which: number) => () =>
      tf.tidy(() => tf.grads((a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(linear(a as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), tf.tensor2d(dy, [N, O]))))(ins())[which]);
    const v = await layout("transposed", () => both(value));
    for (let i = 0; i < v.cpu.length; i++) assert.ok(Math.abs(v.cpu[i] - v.gpu[i]) < 1e-5 * Math.max(1, Math.abs(v.cpu[i])), `[${N}, ${K}, ${O}] y at ${i}: cpu ${v.cpu[i]} vs webgpu ${v.gpu[i]}`);
    if (O % 4 === 0 && K % 4 === 0) {
      const { keys } = await layout("transposed", () => programsOf(value));
      assert.ok(keys.some((k) => /^matMulPacked_.*_false_false_.*_true_false_false$/.test(k) || /^matMul.*_false_false/.test(k)), `x·(Wᵀ) with B not transposed: ${keys.join(", ")}`);
    }
    for (const which of [0, 1, 2]) {
      const g = await layout("transposed", () => both(grad(which)));
      for (let i = 0; i < g.cpu.length; i++) assert.ok(Math.abs(g.cpu[i] - g.gpu[i]) < 1e-4 * Math.max(1, Math.abs(g.cpu[i])), `grad ${which} at ${i}: cpu ${g.cpu[i]} vs webgpu ${g.gpu[i]}`);
      const [a, b] = [await layout("transposed", () => programsOf(grad(which))), await layout(undefined, () => programsOf(grad(which)))];
      assert.equal(bits(a.values), bits(b.values), `grad ${which}: the same products as the default's`);
    }
  }
  // a training step, recorded and replayed, with the layout: the default's losses to 1e-5
  const losses = async (v: string | undefined) =>
    layout(v, async () => {
      const t = makeTrainer();
      const e = await train(t, 6);
      assert.ok(t.recordedSteps!.replayed >= 2, JSON.stringify(t.recordedSteps));
      t.model.dispose();
      t.dispose();
      return e.map((x) => x.loss);
    });
  const [lt, ld] = [await losses("transposed"), await losses(undefined)];
  for (let i = 0; i < ld.length; i++) assert.ok(Math.abs(lt[i] - ld[i]) < 1e-5 * Math.abs(ld[i]), `step ${i + 1}: ${lt[i]} vs ${ld[i]}`);
  await layout("vec4", async () => {
    assert.throws(() => linear(tf.zeros([2, 4]), tf.zeros([4, 4]), tf.zeros([4])), /^RETROMAE_WEBGPU_DENSE is "vec4"; set it to xwt \(the default\) or transposed, or unset it\.$/);
  });
});

test("a dense layer's weight and bias gradients on webgpu: where dyᵀ·x splits along the rows, one dispatch makes both from the same tiles of dy and one adds their parts (two, where there were four); where the output has as few tiles but the rows are too few to split, that dispatch alone (one, where there were two or three); the cpu's values on odd shapes, the same bits twice; a large output keeps BatchMatMul and the column sum", async () => {
  const rng = new Rng(31);
  // [rows, in, out, how]: a weight of one tile, row and column tails with K not a multiple of the parts, rows of the
  // bias in a second and third tile of dy (out 70), tiny's [128, 128] over 2,048 tokens; then shapes too short to split
  // (tiny's [128, 128] over 512 tokens, K not a multiple of a tile, a row of one); then an output of 512 tiles
  const cases: [number, number, number, "split" | "one" | "apart"][] = [[2048, 32, 32, "split"], [2050, 33, 7, "split"], [1100, 40, 6, "split"], [1024, 130, 70, "split"], [2048, 128, 128, "split"], [512, 128, 128, "one"], [100, 33, 70, "one"], [64, 16, 8, "one"], [1, 5, 3, "one"], [3, 32, 16384, "apart"]];
  for (const [N, I, O, how] of cases) {
    const name = `[${N}, ${I}] → ${O}`;
    const split = how === "split";
    assert.is(splitKParts(O, I, N) > 1, split, `${name}: split`);
    const [x, W, bias, dy] = [N * I, O * I, O, N * O].map((n) => rng.fillNormal(new Float32Array(n)));
    const grad = (which: number) => () =>
      tf.tidy(() => tf.grads((a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(linear(a as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), tf.tensor2d(dy, [N, O]))))([tf.tensor2d(x, [N, I]), tf.tensor2d(W, [O, I]), tf.tensor1d(bias)])[which]);
    for (const [which, what] of [[0, "dx"], [1, "dW"], [2, "db"]] as const) {
      const g = await both(grad(which));
      for (let i = 0; i < g.cpu.length; i++) assert.ok(Math.abs(g.cpu[i] - g.gpu[i]) < 1e-4 * Math.max(1, Math.abs(g.cpu[i])), `${name} ${what}[${i}]: cpu ${g.cpu[i]} vs webgpu ${g.gpu[i]}`);
    }
    // the kernel alone: the pipelines it dispatches, and its bits twice
    const run = () =>
      pipelineLabels(async () => {
        const outs = tf.tidy(() => tf.engine().runKernel(DENSE_WEIGHT_GRADS, { dy: tf.tensor2d(dy, [N, O]), x: tf.tensor2d(x, [N, I]) }, {}) as tf.Tensor[]);
        assert.equal(outs.map((t) => t.shape), [[O, I], [O]], `${name}: shapes`);
        const values = [...(await outs[0].data()), ...(await outs[1].data())];
        tf.dispose(outs);
        return values;
      });
    const [first, second] = [await run(), await run()];
    assert.equal(bits(first.result), bits(second.result), `${name}: the same bits twice`);
    if (split) assert.equal(first.labels, ["retromaeMatMulSplitK_true_false_rowSums", "retromaeMatMulSumOfParts_2"], name);
    else if (how === "one") assert.equal(first.labels, ["retromaeMatMulSplitK_true_false_rowSums"], name);
    else assert.ok(first.labels.length >= 2 && !first.labels.some((l) => /rowSums|SumOfParts/.test(l)), `${name}: ${first.labels.join(", ")}`);
  }
});

test("a dense layer that starts a sub-layer gives its input back for the residual (linearAndInput): on webgpu under the tape, y is the cpu's and the input is x's own buffer; x's gradient, dy·W plus the residual's, is added as dx's product is written (tfjs's programs, the tiled matmul's addend, the transposed layout; a product split along K adds after its sum), bit for bit the tape's add of the two gradients, with no add of its own; untaped, linear and x itself", async () => {
  const rng = new Rng(37);
  // [N, in, out, environment, whether dx's product adds]: tfjs's programs on odd shapes and a row of one; the tiled
  // program (an addend of dx's shape); x·(Wᵀ); dx = dy·W with few tiles over K = 1,024 (split along K: its sum, then the add)
  const cases: [number, number, number, Record<string, string>, boolean][] = [
    [7, 33, 65, {}, false],
    [1, 68, 128, {}, false],
    [130, 128, 160, { RETROMAE_WEBGPU_MATMUL: "tiled" }, false],
    [9, 36, 20, { RETROMAE_WEBGPU_DENSE: "transposed" }, false],
    [64, 32, 1024, {}, true],
  ];
  await use("webgpu");
  for (const [N, I, O, vars, splits] of cases) {
    const name = `[${N}, ${I}] → ${O} ${JSON.stringify(vars)}`;
    const [x, W, bias, c1, c2] = [N * I, O * I, O, N * O, N * I].map((n) => rng.fillNormal(new Float32Array(n)));
    const ins = () => [tf.tensor2d(x, [N, I]), tf.tensor2d(W, [O, I]), tf.tensor1d(bias)];
    // Σ y ⊙ c1 + Σ input ⊙ c2: the residual's gradient of x is c2, the dense layer's dy·W with dy = c1
    const loss = (fork: boolean) => (a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => {
      const [y, input] = fork ? linearAndInput(a as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D) : [linear(a as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), a];
      return tf.addN([tf.sum(tf.mul(y, tf.tensor2d(c1, [N, O]))), tf.sum(tf.mul(input, tf.tensor2d(c2, [N, I])))]); // (addN: the one Add is x's gradients')
    };
    const grad = (fork: boolean, which: number) => () => tf.tidy(() => tf.grads(loss(fork))(ins())[which]);
    await withEnv(vars, async () => {
      // y and the input, made under the tape
      const taped = () => {
        let out: tf.Tensor | null = null;
        tf.tidy(() => tf.grads((a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => {
          const [y, input] = linearAndInput(a as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D);
          out = tf.keep(tf.concat([y.flatten(), input.flatten()]));
          return tf.sum(y);
        })(ins()));
        return out!;
      };
      const value = await both(taped);
      for (let i = 0; i < value.cpu.length; i++) assert.ok(Math.abs(value.cpu[i] - value.gpu[i]) < 1e-5 * Math.max(1, Math.abs(value.cpu[i])), `${name}: y and the input at ${i}: cpu ${value.cpu[i]} vs webgpu ${value.gpu[i]}`);
      for (const [which, what] of [[0, "dx"], [1, "dW"], [2, "db"]] as const) {
        const g = await both(grad(true, which));
        for (let i = 0; i < g.cpu.length; i++) assert.ok(Math.abs(g.cpu[i] - g.gpu[i]) < 1e-4 * Math.max(1, Math.abs(g.cpu[i])), `${name} ${what}[${i}]: cpu ${g.cpu[i]} vs webgpu ${g.gpu[i]}`);
        const [fork, tape] = [await programsOf(grad(true, which)), await programsOf(grad(false, which))];
        assert.equal(bits(fork.values), bits(tape.values), `${name} ${what}: the tape's bits`);
        if (which !== 0) continue;
        const adds = (keys: string[]) => keys.filter((k) => k.startsWith("binary_0_")).length; // tfjs's Add
        assert.is(adds(tape.keys), 1, `${name}: the tape adds x's two gradients: ${tape.keys.join(", ")}`);
        assert.is(adds(fork.keys), splits ? 1 : 0, `${name}: ${fork.keys.join(", ")}`);
      }
    });
  }
  // the input is x's buffer, not a copy, under the tape; untaped, x itself
  const [x, W, b] = [tf.randomNormal([5, 8]) as tf.Tensor2D, tf.randomNormal([3, 8]) as tf.Tensor2D, tf.zeros([3]) as tf.Tensor1D];
  tf.grads((a: tf.Tensor) => {
    const [y, input] = linearAndInput(a as tf.Tensor2D, W, b);
    assert.ok(input !== a && input.dataId === a.dataId && tf.util.arraysEqual(input.shape, a.shape), "under the tape: x's buffer as a second output");
    return tf.add(tf.sum(y), tf.sum(input));
  })([x]).forEach((t) => t.dispose());
  const [y, input] = linearAndInput(x, W, b);
  assert.ok(input === x, "untaped: x itself");
  tf.dispose([x, W, b, y]);
});

test("the feed-forward block on webgpu under the tape (feedForward): GELU′ applied as the second dense layer's input gradient is written (tfjs's programs, scalar and vec4, with the activation swapped; the tiled matmul's epilogue; x·(Wᵀ)), bit for bit the product then GELU's gradient pass, with no such pass; a product split along K keeps the pass; the cpu's values and gradients on odd shapes; untaped, the dense layer with GELU in its epilogue", async () => {
  const rng = new Rng(41);
  // [N, H, I, environment, how dx of the second layer is made]: tfjs's scalar program (I odd) and vec4 (I a multiple of 4), a row
  // of one, the tiled program, x·(Wᵀ), and a product with few tiles over K = H = 1,024 (split along K, then GELU's pass)
  const cases: [number, number, number, Record<string, string>, "swap" | "tiled" | "split"][] = [
    [7, 33, 65, {}, "swap"],
    [9, 36, 64, {}, "swap"],
    [1, 20, 12, {}, "swap"],
    [130, 40, 136, { RETROMAE_WEBGPU_MATMUL: "tiled" }, "tiled"],
    [9, 36, 20, { RETROMAE_WEBGPU_DENSE: "transposed" }, "swap"],
    [64, 1024, 32, {}, "split"],
  ];
  await use("webgpu");
  for (const [N, H, I, vars, how] of cases) {
    const name = `[${N}, ${H}] → ${I} → ${H} ${JSON.stringify(vars)}`;
    // (the weights at 1/√fan-in, as initialised: sums of H or I terms of order one)
    const [x, W1, b1, W2, b2, c1, c2] = [N * H, I * H, I, H * I, H, N * H, N * H].map((n, i) => rng.fillNormal(new Float32Array(n)).map((v) => v / Math.sqrt(i === 1 ? H : i === 3 ? I : 1)));
    const ins = () => [tf.tensor2d(x, [N, H]), tf.tensor2d(W1, [I, H]), tf.tensor1d(b1), tf.tensor2d(W2, [H, I]), tf.tensor1d(b2)];
    // Σ out ⊙ c1 + Σ input ⊙ c2, through feedForward or the layers one by one (the tape's GELU gradient pass)
    const loss = (fused: boolean) => (a: tf.Tensor, w1: tf.Tensor, v1: tf.Tensor, w2: tf.Tensor, v2: tf.Tensor) => {
      const [out, input] = fused ? feedForward(a as tf.Tensor2D, w1 as tf.Tensor2D, v1 as tf.Tensor1D, w2 as tf.Tensor2D, v2 as tf.Tensor1D) : [linear(gelu(linear(a as tf.Tensor2D, w1 as tf.Tensor2D, v1 as tf.Tensor1D)) as tf.Tensor2D, w2 as tf.Tensor2D, v2 as tf.Tensor1D), a];
      return tf.addN([tf.sum(tf.mul(out, tf.tensor2d(c1, [N, H]))), tf.sum(tf.mul(input, tf.tensor2d(c2, [N, H])))]);
    };
    const grad = (fused: boolean, which: number) => () => tf.tidy(() => tf.grads(loss(fused))(ins())[which]);
    await withEnv(vars, async () => {
      for (const [which, what] of [[0, "dx"], [1, "dW1"], [2, "db1"], [3, "dW2"], [4, "db2"]] as const) {
        const g = await both(grad(true, which));
        for (let i = 0; i < g.cpu.length; i++) assert.ok(Math.abs(g.cpu[i] - g.gpu[i]) < 1e-4 * Math.max(1, Math.abs(g.cpu[i])), `${name} ${what}[${i}]: cpu ${g.cpu[i]} vs webgpu ${g.gpu[i]}`);
        const [fused, apart] = [await programsOf(grad(true, which)), await programsOf(grad(false, which))];
        assert.equal(bits(fused.values), bits(apart.values), `${name} ${what}: the bits of the product then GELU's gradient`);
        if (which !== 0) continue;
        const passes = (keys: string[]) => keys.filter((k) => k === "retromaeGeluGrad").length;
        assert.is(passes(apart.keys), 1, `${name}: the tape's GELU gradient pass: ${apart.keys.join(", ")}`);
        assert.is(passes(fused.keys), how === "split" ? 1 : 0, `${name}: ${fused.keys.join(", ")}`);
        const epilogue = { swap: /^matMul.*_prelu_.*_retromaeGeluGrad$/, tiled: /^retromaeMatMulTiled_false_false_geluGrad$/, split: /^retromaeMatMul(SplitK|Tiled_.*_splitK)/ }[how];
        assert.ok(fused.keys.some((k) => epilogue.test(k)), `${name}: ${fused.keys.join(", ")}`);
      }
    });
  }
  // untaped: the dense layer with GELU in its epilogue, then the second
  const { keys } = await programsOf(() => tf.tidy(() => feedForward(tf.ones([3, 8]), tf.ones([16, 8]), tf.zeros([16]), tf.ones([8, 16]), tf.zeros([8]))[0]));
  assert.ok(keys[0].endsWith("_retromaeGelu") && keys.length === 2, keys.join(", "));
});

test("tfjs's matmul programs read B within its bounds (a tile past K or N read past B, which without Dawn's bounds checks reads the NaN past the tensor): the cpu's values where K and N are not multiples of a tile, every transpose, batched and small outputs", async () => {
  const rng = new Rng(23);
  const cases: [number, number, number, number, boolean, boolean][] = [
    [16, 32, 16, 32, false, true], // the attention's dO·Vᵀ at 16-wide heads, where NaN gradients came from
    [16, 32, 16, 30, false, false],
    [3, 33, 20, 17, true, true],
    [2, 5, 37, 9, false, true], // small outputs
    [1, 4, 70, 3, true, false],
  ];
  for (const [batch, M, K, N, ta, tb] of cases) {
    const a = rng.fillNormal(new Float32Array(batch * M * K));
    const b = rng.fillNormal(new Float32Array(batch * K * N));
    const r = await both(() => tf.matMul(tf.tensor3d(a, ta ? [batch, K, M] : [batch, M, K]), tf.tensor3d(b, tb ? [batch, N, K] : [batch, K, N]), ta, tb));
    const worst = Array.from(r.gpu).reduce((m: number, x, i) => Math.max(m, Number.isFinite(x) ? Math.abs(x - r.cpu[i]) : Infinity), 0);
    assert.ok(worst < 1e-4, `${JSON.stringify([batch, M, K, N, ta, tb])}: max diff ${worst}`);
  }
});

test("a matmul tfjs would split along K (float atomics) runs without them: the same bits run after run, and the cpu's values", async () => {
  const rng = new Rng(22);
  // A hidden-32 weight's gradient over 2,048 tokens: dzᵀ·x, and a fused matmul with a bias
  const dz = rng.fillNormal(new Float32Array(2048 * 32));
  const xs = rng.fillNormal(new Float32Array(2048 * 32));
  const a = rng.fillNormal(new Float32Array(24 * 2048));
  const bw = rng.fillNormal(new Float32Array(16 * 2048));
  const bias = rng.fillNormal(new Float32Array(16));
  const info = (shape: number[]) => ({ dataId: {}, shape, dtype: "float32" as const });
  assert.ok(splitsAlongK(info([2048, 32]), info([2048, 32]), true, false, 8), "tfjs's rule splits the weight gradient along K");
  assert.ok(splitsAlongK(info([24, 2048]), info([16, 2048]), false, true, 8), "and the fused matmul");
  assert.not.ok(splitsAlongK(info([2048, 128]), info([2048, 128]), true, false, 8), "a hidden-128 gradient has tiles enough");
  // tfjs's own kernel does split it (so the rule above is tfjs's)
  await use("webgpu");
  const own = (tf.getKernel(tf.BatchMatMul, "webgpu") as unknown as { original: (args: object) => { dataId: object } }).original;
  const seen = await programsOf(() => {
    const [p, q] = [tf.tensor2d(dz, [2048, 32]), tf.tensor2d(xs, [2048, 32])];
    const out = own({ inputs: { a: p, b: q }, backend: tf.backend(), attrs: { transposeA: true, transposeB: false } });
    tf.dispose([p, q]);
    return tf.engine().makeTensorFromDataId(out.dataId, [32, 32], "float32");
  });
  assert.ok(seen.keys.some((k) => k.startsWith("matMulSplitK")), `tfjs's kernel alone: ${seen.keys.join(", ")}`);
  const cases: [string, () => tf.Tensor][] = [
    ["dzᵀ·x", () => tf.matMul(tf.tensor2d(dz, [2048, 32]), tf.tensor2d(xs, [2048, 32]), true, false)],
    ["x·Wᵀ + b", () => tf.fused.matMul({ a: tf.tensor2d(a, [24, 2048]), b: tf.tensor2d(bw, [16, 2048]), transposeB: true, bias: tf.tensor1d(bias) })],
  ];
  for (const [name, f] of cases) {
    const g = () => tf.tidy(f);
    const first = await programsOf(g);
    const second = await programsOf(g);
    assert.ok(first.keys.every((k) => !k.startsWith("matMulSplitK")), `${name}: ${first.keys.join(", ")}`);
    assert.equal(bits(first.values), bits(second.values), `${name}: the same bits twice`);
    const r = await both(g);
    for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-3 * Math.max(1, Math.abs(r.cpu[i])), `${name} at ${i}: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
  }
  assert.equal(tf.env().getNumber("WEBGPU_MATMUL_PROGRAM_TYPE"), -1, "tfjs's own choice is back for other matmuls");
});

test("a matmul with few output tiles and a long K is split along K (weight gradients of small models, the tied decoder's dz·E), in 32 × 32 tiles or, where the parts fill a GPU, 128 × 128: the cpu's values on odd shapes and every transpose, the same bits run after run, a split and a sum; RETROMAE_WEBGPU_SPLIT_K=0 turns it off", async () => {
  const rng = new Rng(24);
  assert.is(splitKParts(128, 128, 2048), 8, "a [128, 128] weight's gradient over 2,048 tokens: 16 tiles, parts of 256");
  assert.is(splitKParts(608, 128, 30522), 14, "the encoder's dz·E at tiny 16 × 128: 76 tiles, to about 1,024 workgroups");
  assert.is(splitKParts(768, 768, 16384), 1, "base's [768, 768] gradient has tiles enough");
  assert.is(splitKParts(64, 64, 512), 1, "a short K is not split");
  await use("webgpu");
  const cases: [number, number, number, boolean, boolean][] = [
    [32, 32, 2048, true, false], // dyᵀ·x
    [7, 33, 2050, false, false], // row and column tails, K not a multiple of the parts
    [19, 5, 1500, false, true], // x·Wᵀ
    [6, 40, 1100, true, true],
    [1, 64, 4096, false, false], // a batch of one row
  ];
  for (const [M, N, K, tA, tB] of cases) {
    const a = rng.fillNormal(new Float32Array(M * K));
    const b = rng.fillNormal(new Float32Array(K * N));
    const g = () => tf.tidy(() => tf.matMul(tf.tensor2d(a, tA ? [K, M] : [M, K]), tf.tensor2d(b, tB ? [N, K] : [K, N]), tA, tB));
    const name = `[${M}, ${N}, ${K}] ${tA ? "Aᵀ" : "A"}·${tB ? "Bᵀ" : "B"}`;
    const [first, second] = [await programsOf(g), await programsOf(g)];
    assert.equal(first.keys, [`retromaeMatMulSplitK_${tA}_${tB}`, "retromaeColumnSum_pat"], name);
    assert.equal(bits(first.values), bits(second.values), `${name}: the same bits twice`);
    const r = await both(g);
    assert.equal(r.shape, [M, N]);
    for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-4 * Math.max(1, Math.abs(r.cpu[i])), `${name} at ${i}: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
    // a batch of one as rank 3 keeps its shape
    const three = await programsOf(() => tf.tidy(() => tf.matMul(tf.tensor3d(a, tA ? [1, K, M] : [1, M, K]), tf.tensor3d(b, tB ? [1, N, K] : [1, K, N]), tA, tB)));
    assert.equal(bits(three.values), bits(first.values), `${name} as [1, …]`);
  }
  // in 128 × 128 tiles where the parts make 128 workgroups or more (auto), or wherever both sides are a tile (RETROMAE_WEBGPU_MATMUL=tiled)
  assert.is(tiledSplitKParts(1008, 128, 30522), 32, "the decoder's dz·E at tiny 16 × 128: 8 tiles in 32 parts");
  assert.is(tiledSplitKParts(128, 128, 2048), 0, "one tile in 8 parts: the 32 × 32 split's 128 workgroups instead");
  const tiledCases: [number, number, number, boolean, boolean, string | undefined][] = [
    [1000, 130, 4100, true, false, undefined], // 16 tiles in 16 parts, every edge partial
    [128, 128, 2048, false, true, "tiled"],
    [129, 200, 1500, true, true, "tiled"], // K not a multiple of the parts
  ];
  for (const [M, N, K, tA, tB, mode] of tiledCases) {
    if (mode) process.env.RETROMAE_WEBGPU_MATMUL = mode;
    try {
      const a = rng.fillNormal(new Float32Array(M * K));
      const b = rng.fillNormal(new Float32Array(K * N));
      const g = () => tf.tidy(() => tf.matMul(tf.tensor2d(a, tA ? [K, M] : [M, K]), tf.tensor2d(b, tB ? [N, K] : [K, N]), tA, tB));
      const name = `[${M}, ${N}, ${K}] ${tA ? "Aᵀ" : "A"}·${tB ? "Bᵀ" : "B"} (${mode ?? "auto"})`;
      const [first, second] = [await programsOf(g), await programsOf(g)];
      assert.equal(first.keys, [`retromaeMatMulTiled_${tA}_${tB}_false_splitK`, "retromaeColumnSum_pat"], name);
      assert.equal(bits(first.values), bits(second.values), `${name}: the same bits twice`);
      const r = await both(g);
      for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-4 * Math.max(1, Math.abs(r.cpu[i])), `${name} at ${i}: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
    } finally {
      delete process.env.RETROMAE_WEBGPU_MATMUL;
    }
  }
  process.env.RETROMAE_WEBGPU_MATMUL = "tfjs";
  assert.is(tiledSplitKParts(1008, 128, 30522), 0, "RETROMAE_WEBGPU_MATMUL=tfjs: the 32 × 32 split");
  delete process.env.RETROMAE_WEBGPU_MATMUL;
  process.env.RETROMAE_WEBGPU_SPLIT_K = "0";
  try {
    assert.is(splitKParts(128, 128, 2048), 1);
    const off = await programsOf(() => tf.tidy(() => tf.matMul(tf.ones([64, 2048]), tf.ones([2048, 64]))));
    assert.ok(off.keys.every((k) => !/SplitK/.test(k)), off.keys.join(", "));
    process.env.RETROMAE_WEBGPU_SPLIT_K = "yes";
    assert.throws(() => splitKParts(1, 1, 4096), /^RETROMAE_WEBGPU_SPLIT_K is "yes"; set it to 1 \(the default\) or 0 \(off\), or unset it\.$/);
  } finally {
    delete process.env.RETROMAE_WEBGPU_SPLIT_K;
  }
});

test("the 128 × 128 tiled matmul (RETROMAE_WEBGPU_MATMUL=tiled: every output of at least a tile each way) gives the cpu's values on odd shapes, every transpose, a bias, batches (one broadcast), the same bits twice; smaller ones keep tfjs's; a training step replays with it; by default (auto) outputs of at least 128 tiles take it, tfjs never; a bad value is one sentence", async () => {
  const rng = new Rng(25);
  await use("webgpu");
  process.env.RETROMAE_WEBGPU_MATMUL = "tiled";
  try {
    // [batchA, batchB, M, N, K, transposeA, transposeB, bias]
    const cases: [number, number, number, number, number, boolean, boolean, boolean][] = [
      [1, 1, 130, 129, 33, false, true, true], // x·Wᵀ + b with row, column and K tails
      [1, 1, 128, 256, 8, false, false, false],
      [1, 1, 200, 136, 67, true, false, false], // dyᵀ·x
      [1, 1, 129, 128, 20, true, true, false],
      [3, 3, 130, 128, 17, false, true, false], // batched, as the attention's scores
      [2, 1, 128, 140, 9, false, false, true], // B broadcast over the batch
    ];
    for (const [bA, bB, M, N, K, tA, tB, withBias] of cases) {
      const a = rng.fillNormal(new Float32Array(bA * M * K));
      const b = rng.fillNormal(new Float32Array(bB * K * N));
      const bias = rng.fillNormal(new Float32Array(N));
      const g = () =>
        tf.tidy(() => {
          const A = tf.tensor3d(a, tA ? [bA, K, M] : [bA, M, K]);
          const B = tf.tensor3d(b, tB ? [bB, N, K] : [bB, K, N]);
          return withBias ? tf.fused.matMul({ a: A, b: B, transposeA: tA, transposeB: tB, bias: tf.tensor1d(bias) }) : tf.matMul(A, B, tA, tB);
        });
      const name = `[${bA}/${bB}, ${M}, ${N}, ${K}] ${tA ? "Aᵀ" : "A"}·${tB ? "Bᵀ" : "B"}${withBias ? " + b" : ""}`;
      const [first, second] = [await programsOf(g), await programsOf(g)];
      assert.equal(first.keys, [`retromaeMatMulTiled_${tA}_${tB}_${withBias}`], name);
      assert.equal(bits(first.values), bits(second.values), `${name}: the same bits twice`);
      const r = await both(g);
      assert.equal(r.shape, [Math.max(bA, bB), M, N]);
      for (let i = 0; i < r.cpu.length; i++) assert.ok(Math.abs(r.cpu[i] - r.gpu[i]) < 1e-4 * Math.max(1, Math.abs(r.cpu[i])), `${name} at ${i}: cpu ${r.cpu[i]} vs webgpu ${r.gpu[i]}`);
    }
    const small = await programsOf(() => tf.tidy(() => tf.matMul(tf.ones([127, 64]), tf.ones([64, 300]))));
    assert.ok(small.keys.every((k) => !/Tiled/.test(k)), `an output under a tile keeps tfjs's program: ${small.keys.join(", ")}`);
    // a training step whose decoder logits (240 label slots × the vocabulary) take the tiled program, replayed: tfjs's losses
    const losses = async () => {
      const t = makeTrainer({ batchSize: 8 });
      const e = await train(t, 5);
      assert.ok(t.recordedSteps!.replayed >= 1, JSON.stringify(t.recordedSteps));
      t.model.dispose();
      t.dispose();
      return e.map((x) => x.loss);
    };
    const tiled = await losses();
    const keysInStep = await programsOf(() => tf.tidy(() => tf.fused.matMul({ a: tf.ones([240, 32]), b: tf.ones([tok.vocab.size, 32]), transposeB: true, bias: tf.zeros([tok.vocab.size]) })));
    assert.equal(keysInStep.keys, ["retromaeMatMulTiled_false_true_true"], "the logits' shape takes it");
    process.env.RETROMAE_WEBGPU_MATMUL = "tfjs";
    const plain = await losses();
    delete process.env.RETROMAE_WEBGPU_MATMUL;
    for (let i = 0; i < plain.length; i++) assert.ok(Math.abs(tiled[i] - plain[i]) < 1e-5 * Math.abs(plain[i]), `step ${i + 1}: ${tiled[i]} vs ${plain[i]}`);
    // auto (the default): an output of 128 tiles or more, in one matrix or over a batch; tfjs: never
    const keysOf = async (a: number[], b: number[]) => (await programsOf(() => tf.tidy(() => tf.matMul(tf.ones(a), tf.ones(b), false, true)))).keys;
    assert.equal(await keysOf([1024, 8], [2048, 8]), ["retromaeMatMulTiled_false_true_false"], "8 × 16 tiles");
    assert.equal(await keysOf([2, 1024, 8], [2, 1024, 8]), ["retromaeMatMulTiled_false_true_false"], "2 × 8 × 8 tiles");
    assert.ok((await keysOf([1024, 8], [1920, 8])).every((k) => !/Tiled/.test(k)), "8 × 15 tiles: tfjs's");
    process.env.RETROMAE_WEBGPU_MATMUL = "tfjs";
    assert.ok((await keysOf([1024, 8], [2048, 8])).every((k) => !/Tiled/.test(k)), "RETROMAE_WEBGPU_MATMUL=tfjs: tfjs's");
    process.env.RETROMAE_WEBGPU_MATMUL = "fast";
    assert.throws(() => tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])), /RETROMAE_WEBGPU_MATMUL is "fast"; set it to auto \(the default\), tiled or tfjs, or unset it\./);
  } finally {
    delete process.env.RETROMAE_WEBGPU_MATMUL;
  }
});

test("the whole attention for inference on webgpu (heads in place, online softmax): the cpu's composition on odd shapes, masked rows and stacked projections; one dispatch", async () => {
  const rng = new Rng(23);
  const MASK = -3.4028234663852886e38;
  // [B, Lq, Lk, H, heads, stacked (self-attention from one [B, L, 3H] projection), mask rows]
  const cases: [number, number, number, number, number, boolean, number][] = [
    [2, 5, 5, 32, 2, true, 1],      // padding in one sequence, a row tail
    [3, 67, 70, 32, 2, false, 67],  // the decoder's shape: its own mask per query row, some rows seeing nothing
    [1, 1, 9, 30, 3, false, 1],     // one query (the last layer at [CLS]); dh 10, not a multiple of 4
    [2, 130, 130, 128, 2, true, 1], // dh 64 as in every preset; three blocks of rows, a partial tile of keys
    [1, 3, 1, 8, 2, false, 1],      // one key
  ];
  for (const [B, Lq, Lk, H, heads, stacked, maskRows] of cases) {
    const dh = H / heads;
    const qIn = rng.fillNormal(new Float32Array(B * Lq * (stacked ? 3 * H : H)));
    const kvIn = stacked ? qIn : rng.fillNormal(new Float32Array(B * Lk * 2 * H));
    const mask = new Float32Array(B * maskRows * Lk);
    for (let b = 0; b < B; b++) for (let r = 0; r < maskRows; r++) for (let j = 0; j < Lk; j++) {
      const hidden = maskRows === 1 ? b === 1 && j >= Lk - 2 : r % 7 === 3 || (j + r + b) % 3 === 0;
      mask[(b * maskRows + r) * Lk + j] = hidden ? MASK : 0;
    }
    const scale = 1 / Math.sqrt(dh);
    const ldq = stacked ? 3 * H : H;
    const ldkv = stacked ? 3 * H : 2 * H;
    const columns: [number, number, number] = stacked ? [0, H, 2 * H] : [0, 0, H];
    const inputs = () => {
      const q = tf.tensor3d(qIn, [B, Lq, ldq]);
      const kv = stacked ? q : tf.tensor3d(kvIn, [B, Lk, ldkv]);
      return { q, kv, m: tf.tensor4d(mask, [B, 1, maskRows, Lk]) };
    };
    const heads4 = (t: tf.Tensor3D, column: number, L: number) => tf.transpose(tf.slice(t, [0, 0, column], [B, L, H]).reshape([B, L, heads, dh]), [0, 2, 1, 3]);
    const composed = () => tf.tidy(() => {
      const { q, kv, m } = inputs();
      const p = tf.softmax(tf.add(tf.mul(tf.matMul(heads4(q, columns[0], Lq), heads4(kv, columns[1], Lk), false, true), scale), m));
      return tf.transpose(tf.matMul(p, heads4(kv, columns[2], Lk)), [0, 2, 1, 3]).reshape([B, Lq, H]);
    });
    await use("cpu");
    const c = composed();
    const cpu = (await c.data()) as Float32Array;
    c.dispose();
    const { keys, values } = await programsOf(() => tf.tidy(() => {
      const { q, kv, m } = inputs();
      const out = attentionInference(q, kv, kv, m, heads, scale, { hidden: H, columns });
      if (!out) throw new Error(`attentionInference declined [${B}, ${Lq}, ${Lk}, ${H}/${heads}]`);
      return out;
    }));
    assert.equal(keys.length, 1, `one program: ${keys.join(", ")}`);
    assert.ok(keys[0].startsWith("retromaeAttention_"), keys[0]);
    assert.is(values.length, cpu.length);
    for (let i = 0; i < cpu.length; i++) assert.ok(Math.abs(cpu[i] - values[i]) < 1e-5 * Math.max(1, Math.abs(cpu[i])), `[${B}, ${Lq}, ${Lk}, ${H}/${heads}] at ${i}: cpu ${cpu[i]} vs webgpu ${values[i]}`);
  }
  await use("webgpu");
  assert.ok(tf.getKernel(ATTENTION, "webgpu"), "the kernel serves webgpu");
  // under the tape the model takes the differentiable path instead
  const q = tf.zeros([1, 2, 24]) as tf.Tensor3D;
  const grads = tf.grads((x: tf.Tensor) => tf.sum(attentionInference(x as tf.Tensor3D, x as tf.Tensor3D, x as tf.Tensor3D, tf.zeros([1, 1, 1, 2]) as tf.Tensor4D, 2, 0.5, { hidden: 8, columns: [0, 8, 16] }) ?? x))([q]);
  assert.is(grads.length, 1, "no fused attention while a gradient is recorded (attentionInference declines)");
  tf.dispose([q, ...grads]);
});

test("a sum over leading axes (bias gradients) on webgpu is one pass, or over many rows and few columns runs of rows and a pass that adds them (RETROMAE_WEBGPU_SPLIT_K=0: one): the cpu's sums on odd shapes, keepDims, the same bits run after run; an identity transpose dispatches nothing", async () => {
  const cases: { shape: number[]; axis: number[]; keepDims?: boolean }[] = [
    { shape: [1, 7], axis: [0] },
    { shape: [33, 17], axis: [0] },
    { shape: [2048, 64], axis: [0] }, // 16 runs of 128 rows
    { shape: [1000, 33], axis: [0] }, // 7 runs of 144 rows, the last of 136
    { shape: [16, 128, 128], axis: [0, 1] }, // tiny's bias gradient at 16 × 128: 16 runs
    { shape: [3, 5, 129], axis: [0, 1] },
    { shape: [4, 6, 10], axis: [0, 1], keepDims: true },
    { shape: [2, 3, 4], axis: [1] }, // not leading: tfjs's
    { shape: [9, 11], axis: [1] }, // trailing: tfjs's
  ];
  const rng = new Rng(21);
  for (const c of cases) {
    const values = rng.fillNormal(new Float32Array(c.shape.reduce((a, b) => a * b, 1)));
    await use("cpu");
    const cpu = tf.tidy(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims));
    // Σ|x| of each sum: float32's rounding in a sum of n terms grows with it (2,048 rows: some 1e-5 either way)
    const abs = tf.tidy(() => tf.sum(tf.abs(tf.tensor(values, c.shape)), c.axis, c.keepDims));
    const expected = { shape: cpu.shape, values: Array.from(await cpu.data()), abs: Array.from(await abs.data()) };
    tf.dispose([cpu, abs]);
    const { keys, values: got } = await programsOf(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims));
    const again = (await programsOf(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims))).values;
    const leading = c.axis.every((a, i) => a === i);
    const rows = c.shape.slice(0, c.axis.length).reduce((a, b) => a * b, 1);
    const passes = columnSumParts(rows, values.length / rows) > 1 ? 2 : 1;
    if (leading) assert.equal(keys.filter((k) => !k.startsWith("fill")).map((k) => k.split("_")[0]), Array(passes).fill("retromaeColumnSum"), `${JSON.stringify(c)}: ${passes} pass(es), no transpose`);
    assert.equal(bits(again), bits(got), "the same bits twice");
    const close = (got: ArrayLike<number>, what: string) => expected.values.forEach((x, i) => assert.ok(Math.abs(x - got[i]) <= 1e-5 * Math.max(1, Math.abs(x)) + 2e-7 * expected.abs[i], `${JSON.stringify(c)}${what}[${i}]: cpu ${x} vs webgpu ${got[i]}`));
    close(got, "");
    if (passes === 2) {
      process.env.RETROMAE_WEBGPU_SPLIT_K = "0";
      try {
        const one = await programsOf(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims));
        assert.equal(one.keys.filter((k) => !k.startsWith("fill")).map((k) => k.split("_")[0]), ["retromaeColumnSum"], "RETROMAE_WEBGPU_SPLIT_K=0: one pass");
        close(one.values, " unsplit");
      } finally {
        delete process.env.RETROMAE_WEBGPU_SPLIT_K;
      }
    }
    const shapeOf = tf.tidy(() => tf.sum(tf.tensor(values, c.shape), c.axis, c.keepDims).shape);
    assert.equal(shapeOf, expected.shape);
  }
  // the gather gradient's identity transposes: a relabelling, no program, the same values
  const x = new Rng(22).fillNormal(new Float32Array(6 * 5));
  const { keys, values } = await programsOf(() => tf.transpose(tf.tensor2d(x, [6, 5]), [0, 1]));
  assert.equal(keys, []);
  assert.equal(bits(values), bits(x));
  const g = await programsOf(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor1d([4, 0, 4], "int32")), 2)))(tf.tensor2d(x, [6, 5])));
  assert.ok(!g.keys.some((k) => k.startsWith("transpose")), `gather's gradient: ${g.keys.join(" ")}`);
  assert.equal(Array.from(g.values.slice(0, 5)), [2, 2, 2, 2, 2], "row 0 gathered once");
  assert.equal(Array.from(g.values.slice(20, 25)), [4, 4, 4, 4, 4], "row 4 gathered twice");
});

atScale("the MLM loss picks each row's label logit exactly past 2^24 logits (tfjs-webgpu reads gather indices as float32): the cpu's loss", async () => {
  // 100 rows × 200,000: 20 million logits; a flat index row·V + label above 16,777,216 was rounded to an even neighbour
  const [N, H, V] = [100, 8, 200_000];
  const rng = new Rng(31);
  const [xs, es] = [rng.fillNormal(new Float32Array(N * H)), rng.fillNormal(new Float32Array(V * H)).map((v) => v * 0.1)];
  const ys = Int32Array.from({ length: N }, (_, i) => (i * 7919 + 1) % V);
  const losses: number[] = [];
  for (const name of ["cpu", "webgpu"] as const) {
    await use(name);
    const [x, E, b, y] = [tf.tensor2d(xs, [N, H]), tf.tensor2d(es, [V, H]), tf.zeros([V]) as tf.Tensor1D, tf.tensor1d(ys, "int32")];
    const r = tiedSoftmaxCrossEntropy(x, E, b, y);
    losses.push((await r.loss.data())[0]);
    // pickLabels itself: z[i, y[i]] exactly, on logits whose values name their column
    const z = tf.tidy(() => tf.tile(tf.range(0, V, 1, "float32").reshape([1, V]), [N, 1])) as tf.Tensor2D;
    const picked = pickLabels(z, y);
    assert.equal(Array.from(await picked.data()), Array.from(ys), `${name}: each row's label column`);
    tf.dispose([x, E, b, y, r.loss, r.accuracy, z, picked]);
  }
  assert.ok(Math.abs(losses[1] - losses[0]) <= 1e-6 * losses[0], `loss: webgpu ${losses[1]} vs cpu ${losses[0]}`);
});

test("addN over more inputs than a shader may bind equals the cpu's sum", async () => {
  const rng = new Rng(4);
  const inputs = Array.from({ length: 23 }, () => rng.fillNormal(new Float32Array(130)));
  const r = await both(() => tf.addN(inputs.map((v) => tf.tensor1d(v))));
  assert.equal(bits(r.gpu), bits(r.cpu));
});

test("empty inputs on webgpu (0 rows, K = 0, a batch of none) give the cpu's results, with no validation error and no stale values from a pooled buffer; an op with no case for them is one sentence", async () => {
  const cases: [string, () => tf.Tensor[]][] = [
    ["matmul over K = 0", () => [tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 6]))]],
    ["a dense layer over K = 0 (its bias)", () => [linear(tf.zeros([3, 0]) as tf.Tensor2D, tf.zeros([6, 0]) as tf.Tensor2D, tf.range(0, 6) as tf.Tensor1D)]],
    ["batched matmul over K = 0, transposed", () => [tf.matMul(tf.zeros([2, 0, 3]), tf.zeros([2, 4, 0]), true, true)]],
    ["sums over no rows", () => [tf.sum(tf.zeros([0, 6]), 0), tf.sum(tf.zeros([0, 6])), tf.sum(tf.zeros([2, 0, 3]), [0, 1], true), tf.sum(tf.zeros([0, 4], "int32"), 0)]],
    ["the dense layer's gradients over no rows", () => tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D).sum())([tf.zeros([0, 4]), tf.ones([6, 4]), tf.ones([6])])],
    ["Add & LayerNorm's gradients over no rows", () => tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => addLayerNorm(x, null, g, b, 1e-12).sum())([tf.zeros([0, 8]), tf.ones([8]), tf.zeros([8])])],
    ["GELU's gradient", () => [tf.grad((x: tf.Tensor) => gelu(x).sum())(tf.zeros([0, 5]))]],
    ["the attention softmax's gradient", () => [tf.grad((x: tf.Tensor) => scaledMaskedSoftmax(x as tf.Tensor4D, tf.zeros([0, 1, 1, 4]) as tf.Tensor4D, 0.5).sum())(tf.zeros([0, 2, 4, 4]))]],
    ["the cross-entropy's pieces over no rows", () => [logSumExpRows(tf.zeros([0, 5]) as tf.Tensor2D), ...logSumExpArgMax(tf.zeros([0, 5]) as tf.Tensor2D), pickLabels(tf.zeros([0, 5]) as tf.Tensor2D, tf.zeros([0], "int32") as tf.Tensor1D), ...softmaxMinusOneHotColSum(tf.zeros([0, 5]) as tf.Tensor2D, tf.zeros([0], "int32") as tf.Tensor1D)]],
    ["the gather's gradient with no indices", () => [tf.grad((e: tf.Tensor) => tf.gather(e, tf.zeros([0], "int32")).sum())(tf.ones([3, 4]))]],
    ["addN of empty tensors", () => [tf.addN([tf.zeros([0, 3]), tf.zeros([0, 3]), tf.zeros([0, 3])])]],
  ];
  const run = async () => {
    const out: { shape: number[]; values: number[] }[][] = [];
    for (const [, f] of cases) {
      // a pooled buffer full of 7s, of each size the outputs take (read, so that their dispatches are
      // submitted and the buffers go back to the pool): a dispatch WebGPU rejected would leave them
      const sevens = [3 * 6, 2 * 3 * 4, 6, 8, 5, 4, 3 * 4, 1].map((n) => tf.fill([n], 7));
      await Promise.all(sevens.map((t) => t.data()));
      tf.dispose(sevens);
      const ts = f();
      out.push(await Promise.all(ts.map(async (t) => ({ shape: t.shape, values: Array.from(await t.data()) }))));
      tf.dispose(ts);
    }
    return out;
  };
  await use("cpu");
  const cpu = await run();
  await use("webgpu");
  takeDeviceError();
  const gpu = await run();
  cases.forEach(([what], i) => assert.equal(gpu[i], cpu[i], what));
  assert.is(takeDeviceError(), null, "no validation error");
  const attention = attentionInference(tf.zeros([0, 4, 8]) as tf.Tensor3D, tf.zeros([0, 4, 8]) as tf.Tensor3D, tf.zeros([0, 4, 8]) as tf.Tensor3D, tf.zeros([0, 1, 1, 4]) as tf.Tensor4D, 2, 0.5);
  assert.equal(attention!.shape, [0, 4, 8]);
  assert.is((await attention!.data()).length, 0, "the fused attention over a batch of none");
  assert.throws(() => tf.argMax(tf.zeros([0, 5]), 0), /^ArgMinMaxProgram on webgpu got an empty input \[5, 0\] for an output of \[5\]: WebGPU cannot bind an empty buffer, so skip this op where its input is empty, or run it on the native backend \(RETROMAE_BACKEND=native\)\.$/);
  assert.is(takeDeviceError(), null);
});

test("AdamW on webgpu updates weights and moments in place, several weights per dispatch, as the cpu composition does; a weight whose buffer another tensor shares is composed; a false flag leaves them", async () => {
  const sizes = [1, 7, 130, 4099, 5, 300, 64];
  const run = async (name: "cpu" | "webgpu", flag: boolean | null) => {
    await use(name);
    const params = new Map(sizes.map((n, i) => [i % 2 ? `w${i}.bias` : `w${i}.weight`, weight(new Rng(i).fillNormal(new Float32Array(n)))]));
    // a tensor sharing w2's buffer (refCount 2): an update in place would change it too
    const alias = params.get("w2.weight")!.clone();
    const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
    const ok = flag === null ? undefined : tf.scalar(flag, "bool");
    for (let step = 0; step < 3; step++) {
      const grads = new Map([...params].map(([k, p], i) => [k, tf.tensor1d(new Rng(100 * step + i).fillNormal(new Float32Array(p.size)))]));
      if (name === "webgpu") {
        const before = dispatches();
        const { keys } = await programsOf(() => (opt.apply(grads, 1e-2, ok), tf.scalar(0)));
        // at the first step the aliased weight is composed by tfjs (that gives w2 a buffer of its own), the
        // other six go in dispatches of as many as one shader binds; after it, all seven do
        const perDispatch = Math.min(8, Math.floor(((tf.backend() as unknown as { device: GPUDevice }).device.limits.maxStorageBuffersPerShaderStage - (ok ? 2 : 1)) / 4));
        assert.is(dispatches() - before - keys.length, Math.ceil((step === 0 ? 6 : 7) / perDispatch), `step ${step}: raw AdamW dispatches, ${perDispatch} weights each`);
        if (step === 0) assert.ok(keys.length > 0 && keys.length < 20, `the aliased weight composed (${keys.length} programs)`);
        else assert.equal(keys, [], "no tfjs program");
      } else opt.apply(grads, 1e-2, ok);
      tf.dispose([...grads.values()]);
      await params.get("w0.weight")!.data(); // a read caches values on the CPU: the next update must not be hidden by it
    }
    assert.equal(bits(await alias.data()), bits(new Rng(2).fillNormal(new Float32Array(sizes[2]))), "the tensor sharing w2's buffer keeps its values");
    alias.dispose();
    const out = [];
    for (const p of params.values()) out.push(Array.from(await p.data()));
    const state = await opt.getState();
    out.push(...[...state.m.values()].map((x) => Array.from(x)), ...[...state.v.values()].map((x) => Array.from(x)));
    ok?.dispose();
    opt.dispose();
    params.forEach((p) => p.dispose());
    return out;
  };
  for (const flag of [null, true]) {
    const [cpu, gpu] = [await run("cpu", flag), await run("webgpu", flag)];
    cpu.forEach((a, i) => a.forEach((x, j) => assert.ok(Math.abs(x - gpu[i][j]) <= 1e-6 * Math.max(1, Math.abs(x)), `flag ${flag}: array ${i}[${j}] cpu ${x} vs webgpu ${gpu[i][j]}`)));
  }
  const untouched = await run("webgpu", false);
  sizes.forEach((n, i) => assert.equal(bits(untouched[i]), bits(new Rng(i).fillNormal(new Float32Array(n))), `weight ${i} unchanged`));
  assert.ok(untouched.slice(sizes.length).every((a) => a.every((x) => x === 0)), "moments unchanged");
});

test("clipping and AdamW on webgpu in a few in-place dispatches (the norm, clip_grad_norm_'s coefficient, each weight's update) equal the cpu's clipGradNorm and AdamW; a false guard leaves everything; no tfjs program runs", async () => {
  // sizes with one to 35 partial sums each, more gradients than the smallest adapter binds in one shader
  const sizes = [1, 7, 130, 4099, 70001, 3, 9, 33, 2048, 5];
  const run = async (name: "cpu" | "webgpu", maxNorm: number, guard: boolean | null) => {
    await use(name);
    const params = new Map(sizes.map((n, i) => [i % 2 ? `w${i}.bias` : `w${i}.weight`, weight(new Rng(i).fillNormal(new Float32Array(n)))]));
    const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
    const norms: number[] = [];
    let programs = 0;
    for (let step = 0; step < 3; step++) {
      const grads = new Map([...params].map(([k, p], i) => [k, tf.tensor1d(new Rng(100 * step + i).fillNormal(new Float32Array(p.size)))]));
      let ok: tf.Scalar | null = null;
      const takeStep = () => {
        const r = opt.clipAndApply(grads, { maxNorm, lr: 1e-2, ...(guard === null ? {} : { guard: () => tf.scalar(guard, "bool") }) });
        ok = r.ok;
        return r.norm;
      };
      if (name === "webgpu") {
        const before = dispatches();
        const { keys, values } = await programsOf(takeStep);
        programs += keys.length;
        norms.push(values[0]);
        if (guard === null) {
          // the sums of squares (up to 15 gradients each), the norm, then AdamW (coef and the step's scalars bound beside each weight's four buffers)
          const limit = (tf.backend() as unknown as { device: GPUDevice }).device.limits.maxStorageBuffersPerShaderStage;
          const expected = Math.ceil(sizes.length / Math.min(limit - 1, 16)) + 1 + Math.ceil(sizes.length / Math.min(8, Math.floor((limit - (maxNorm > 0 ? 2 : 1)) / 4)));
          assert.is(dispatches() - before, expected, `dispatches of one step at maxNorm ${maxNorm} (${limit} storage buffers)`);
        }
      } else {
        const norm = takeStep();
        norms.push((await norm.data())[0]);
        norm.dispose();
      }
      if (ok) (ok as tf.Scalar).dispose();
      assert.ok([...grads.values()].every((g) => g.isDisposed), "the gradients are taken");
    }
    const out = [];
    for (const p of params.values()) out.push(Array.from(await p.data()));
    const state = await opt.getState();
    out.push(...[...state.m.values()].map((x) => Array.from(x)), ...[...state.v.values()].map((x) => Array.from(x)));
    opt.dispose();
    params.forEach((p) => p.dispose());
    return { out, norms, programs };
  };
  for (const [maxNorm, guard] of [[1.0, null], [1e9, true], [0, null]] as const) {
    const [cpu, gpu] = [await run("cpu", maxNorm, guard), await run("webgpu", maxNorm, guard)];
    cpu.norms.forEach((x, i) => assert.ok(Math.abs(x - gpu.norms[i]) <= 1e-6 * x, `maxNorm ${maxNorm}: norm ${i} cpu ${x} vs webgpu ${gpu.norms[i]}`));
    assert.ok(cpu.norms[0] > 1.0, "clipping is in effect at maxNorm 1");
    cpu.out.forEach((a, i) => a.forEach((x, j) => assert.ok(Math.abs(x - gpu.out[i][j]) <= 1e-6 * Math.max(1, Math.abs(x)), `maxNorm ${maxNorm}: array ${i}[${j}] cpu ${x} vs webgpu ${gpu.out[i][j]}`)));
    if (guard === null) assert.is(gpu.programs, 0, "no tfjs program: only this project's dispatches");
  }
  const untouched = await run("webgpu", 1.0, false);
  sizes.forEach((n, i) => assert.equal(bits(untouched.out[i]), bits(new Rng(i).fillNormal(new Float32Array(n))), `weight ${i} unchanged`));
  assert.ok(untouched.out.slice(sizes.length).every((a) => a.every((x) => x === 0)), "moments unchanged");
  assert.ok(untouched.norms.every((x) => x > 0), "the norm is still measured");
});

function makeTrainer(extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}): Trainer {
  const rng = new Rng(9);
  const model = microModel(tok.vocab.size, 9);
  return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 9, batchSize: 4, maxLength: 32, lr: 2e-3, warmupSteps: 1, totalSteps: 20, ...extra });
}

async function train(t: Trainer, steps: number): Promise<StepInfo[]> {
  const events: StepInfo[] = [];
  await t.fit({ steps, live: false, onEvent: (e) => e.type === "step" && events.push(e) });
  return events;
}

async function weightBits(t: Trainer): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const [k, w] of t.model.weights) out.set(k, bits(await w.data()));
  return out;
}

test("training on webgpu: the same seed gives bit-identical losses and weights, run after run, and the cpu's losses", async () => {
  await use("webgpu");
  const a = makeTrainer();
  const ea = await train(a, 5);
  const wa = await weightBits(a);
  const b = makeTrainer();
  const eb = await train(b, 5);
  assert.equal(eb.map((e) => bits([e.loss])[0]), ea.map((e) => bits([e.loss])[0]), "losses");
  assert.equal(eb.map((e) => e.gradNorm), ea.map((e) => e.gradNorm), "gradient norms");
  const wb = await weightBits(b);
  for (const [k, v] of wa) assert.equal(wb.get(k), v, k);
  for (const t of [a, b]) {
    t.model.dispose();
    t.dispose();
  }
  await use("cpu");
  registerCounterDropout("cpu"); // webgpu's dropout masks
  const c = makeTrainer();
  c.collator.staticShapes = true; // webgpu's batch shapes (its recorded steps), so the masks cover the same positions
  const ec = await train(c, 5);
  tf.unregisterKernel(DROPOUT, "cpu");
  ec.forEach((e, i) => {
    const rel = Math.abs(e.loss - ea[i].loss) / Math.abs(e.loss);
    assert.ok(rel < 1e-4, `step ${i + 1}: cpu ${e.loss} vs webgpu ${ea[i].loss}`);
  });
  c.model.dispose();
  c.dispose();
});

test("the same seed masks the same tokens on webgpu as on the cpu backend's own path (webgpu draws per step what cpu's dropout draws per call); with dropout off, the cpu's losses", async () => {
  type Masks = { enc: number[]; labels: number[]; dec: number[] }[];
  async function run(backend: "webgpu" | "cpu", dropout: boolean): Promise<{ masks: Masks; losses: number[] }> {
    await use(backend);
    const rng = new Rng(9);
    const model = microModel(tok.vocab.size, 9, 0.02, dropout ? {} : { hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 });
    const t = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 9, batchSize: 4, maxLength: 32, lr: 2e-3, warmupSteps: 1, totalSteps: 20 });
    t.collator.staticShapes = true; // webgpu's shapes (its recorded steps); the draws do not depend on them
    const masks: Masks = [];
    const collate = t.collator.collate.bind(t.collator);
    t.collator.collate = (examples, trace) => {
      const b = collate(examples, trace);
      masks.push({ enc: Array.from(b.encoderInputIds), labels: Array.from(b.encoderLabels), dec: Array.from(b.decoderAttentionMask) });
      return b;
    };
    if (backend === "webgpu") assert.ok(await collateAhead().whenReady());
    const losses = (await train(t, 4)).map((e) => e.loss);
    // the collating thread runs RetroMAECollator's own collate: with it replaced, the main thread collates
    if (backend === "webgpu") assert.equal(t.collatedAhead, { steps: 0, off: null });
    t.model.dispose();
    t.dispose();
    return { masks, losses };
  }
  for (const dropout of [true, false]) {
    const [gpu, cpu] = [await run("webgpu", dropout), await run("cpu", dropout)];
    assert.is(gpu.masks.length, 4);
    gpu.masks.forEach((m, i) => assert.equal(m, cpu.masks[i], `dropout ${dropout ? "on" : "off"}: step ${i + 1}'s masks`));
    if (!dropout) gpu.losses.forEach((l, i) => assert.ok(Math.abs(l - cpu.losses[i]) <= 1e-4 * Math.abs(l), `step ${i + 1}: webgpu ${l} vs cpu ${cpu.losses[i]}`));
  }
});

/**
 * The order in which `fn` encodes compute dispatches ("D", runs of them as
 * one) and starts reads from the GPU ("R": a staging buffer's mapAsync), with
 * `mark`'s labels where the caller puts them.
 */
async function readOrder(fn: (mark: (label: string) => void) => Promise<unknown>): Promise<string[]> {
  const log: string[] = [];
  const pass = GPUComputePassEncoder.prototype as unknown as { dispatchWorkgroups: (...a: unknown[]) => void };
  const buffer = GPUBuffer.prototype as unknown as { mapAsync: (...a: unknown[]) => Promise<void> };
  const [dispatch, map] = [pass.dispatchWorkgroups, buffer.mapAsync];
  pass.dispatchWorkgroups = function (this: unknown, ...a: unknown[]) {
    if (log[log.length - 1] !== "D") log.push("D");
    return dispatch.apply(this, a);
  };
  buffer.mapAsync = function (this: unknown, ...a: unknown[]) {
    log.push("R");
    return map.apply(this, a);
  };
  try {
    await fn((label) => log.push(label));
  } finally {
    [pass.dispatchWorkgroups, buffer.mapAsync] = [dispatch, map];
  }
  return log;
}

test("on webgpu a step's losses are read from a copy queued right after the step, one read per step, and awaited once the next step is queued: the device runs step s + 1 while the host reads step s (recorded steps and through tfjs)", async () => {
  await use("webgpu");
  for (const recordSteps of [true, "tfjs"] as const) {
    const t = makeTrainer({ recordSteps });
    const order = await readOrder((mark) => t.fit({ steps: 5, live: false, onEvent: (e) => e.type === "step" && mark(`step ${e.step}`) }));
    // step 1 queued, its read started; step 2 queued, step 1 read; …; step 5 queued, step 4 read, then step 5
    assert.equal(order, ["D", "R", "D", "R", "step 1", "D", "R", "step 2", "D", "R", "step 3", "D", "R", "step 4", "step 5"], `recordSteps ${recordSteps}`);
    t.model.dispose();
    t.dispose();
  }
});

/** Six SciFact training queries with one positive each, over their positives and 20 more documents. */
function finetuneSubset(): BeirDataset {
  const judged = [...ds.qrels].filter(([q]) => ds.queries.has(q)).slice(0, 6);
  const qrels = new Map(judged.map(([q, m]) => [q, new Map([[...m][0]])]));
  const ids = new Set([...qrels.values()].flatMap((m) => [...m.keys()]).concat([...ds.corpus.keys()].slice(0, 20)));
  return { name: "scifact-subset", corpus: new Map([...ids].map((d) => [d, ds.corpus.get(d)!])), queries: ds.queries, qrels };
}

test("contrastive fine-tuning on webgpu (recorded steps, padded to the maximum lengths): the cpu's losses (dropout off), each step's loss read as the trainer reads its losses (one step behind, the read started as the step is queued), and no tensor left", async () => {
  const train = finetuneSubset();
  const run = async (backend: "cpu" | "webgpu") => {
    await use(backend);
    const model = microModel(tok.vocab.size, 13, 0.5, { hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 });
    const before = tf.memory().numTensors;
    let losses: number[] = [];
    const order = await readOrder(async (mark) => {
      ({ losses } = await contrastiveFinetune(model, tok, train, { batchSize: 3, steps: 4, lr: 1e-3, maxLength: 48, queryMaxLength: 16, seed: 2, onStep: ({ step }) => mark(`step ${step}`) }));
    });
    assert.is(tf.memory().numTensors, before, `${backend}: tensors`);
    model.dispose();
    return { losses, order };
  };
  const cpu = await run("cpu");
  const gpu = await run("webgpu");
  assert.is(gpu.losses.length, 4);
  gpu.losses.forEach((l, i) => assert.ok(Math.abs(l - cpu.losses[i]) <= 1e-4 * Math.max(1, Math.abs(l)), `step ${i + 1}: webgpu ${l} vs cpu ${cpu.losses[i]}`));
  assert.equal(gpu.order, ["D", "R", "D", "R", "step 1", "D", "R", "step 2", "D", "R", "step 3", "step 4"]);
});

test("contrastive fine-tuning's recorded steps: replayed after the steps that record them, bit for bit the same steps run through tfjs (losses and weights; dropout on, a BM25 negative per query), and the replay's GPU memory given back when it ends", async () => {
  await use("webgpu");
  const train = finetuneSubset();
  const run = async (recordSteps: true | "tfjs") => {
    const model = microModel(tok.vocab.size, 13, 0.5); // dropout 0.1, as tiny's
    const r = await contrastiveFinetune(model, tok, train, { batchSize: 3, steps: 6, lr: 1e-3, maxLength: 48, queryMaxLength: 16, trainGroupSize: 2, seed: 2, recordSteps });
    const weights = new Map<string, number[]>();
    for (const [k, w] of model.weights) weights.set(k, bits(await w.data()));
    model.dispose();
    return { ...r, weights };
  };
  const [replayed, reference] = [await run(true), await run("tfjs")];
  const r = replayed.recordedSteps!;
  // the first step uploads the new model's weights: the recordings compared are the second's and the third's
  assert.equal([r.ran, r.replayed, r.refused], [3, 3, null], JSON.stringify(r));
  assert.is(reference.recordedSteps!.replayed, 0);
  assert.equal(bits(replayed.losses), bits(reference.losses), "losses");
  assert.ok(new Set(replayed.losses).size === 6, "every step has its own batch");
  for (const [k, v] of reference.weights) assert.equal(replayed.weights.get(k), v, k);
  assert.is(bytesHeldByReplays(), 0, "no replay held after the fine-tune");
});

test("a fine-tuning step that is not finite, replayed: the run stops with one sentence, and neither that step nor the one queued after it changes a weight (the guard decided on the device)", async () => {
  await use("webgpu");
  const train = finetuneSubset();
  const run = async (at4: (model: RetroMAE, controller: AbortController) => void) => {
    const model = microModel(tok.vocab.size, 13, 0.5);
    const controller = new AbortController();
    let error = "";
    const result = await contrastiveFinetune(model, tok, train, { batchSize: 3, steps: 8, lr: 1e-3, maxLength: 48, queryMaxLength: 16, seed: 2, signal: controller.signal, onStep: ({ step }) => step === 4 && at4(model, controller) }).catch((err: Error) => ((error = err.message), null));
    const weights = new Map<string, number[]>();
    for (const [k, w] of model.weights) weights.set(k, bits(await w.data()));
    model.dispose();
    return { result, error, weights };
  };
  // losses are read one step behind: at step 4's, step 5 is queued. Stopped there, the weights are step 5's
  const stopped = await run((_, controller) => controller.abort());
  assert.is(stopped.result!.steps, 5);
  assert.equal([stopped.result!.recordedSteps!.ran, stopped.result!.recordedSteps!.replayed], [3, 2]);
  // one weight poisoned in place (the replay keeps its buffer): step 6 is replayed on it, and step 7 is queued before step 6 is read
  const ln = "bert.embeddings.LayerNorm.weight";
  const poisoned = await run((model) => {
    const w = model.weights.get(ln)!;
    const nan = tf.fill(w.shape, NaN);
    assert.ok(copyInPlaceWebGPU(w, nan));
    nan.dispose();
  });
  assert.is(poisoned.result, null);
  assert.is(poisoned.error, "Fine-tuning stopped at step 6: the loss became NaN; no update was applied from that step on, so the encoder has step 5's weights. Lower lr (now 0.001) or check the data.");
  for (const [k, v] of stopped.weights) if (k !== ln) assert.equal(poisoned.weights.get(k), v, k);
  assert.is(bytesHeldByReplays(), 0, "no replay held after the failed fine-tune");
});

test("training on webgpu keeps tf.memory() flat over 20 steps", async () => {
  await use("webgpu");
  const t = makeTrainer();
  const before = tf.memory().numTensors;
  const events = await train(t, 20);
  assert.is(events.length, 20);
  assert.ok(events.every((e) => e.numTensors === events[0].numTensors), `tensors ${events.map((e) => e.numTensors)}`);
  assert.is(tf.memory().numTensors, before, "nothing left after the fit");
  t.model.dispose();
  t.dispose();
});

test("recorded steps: replayed after a few steps through tfjs, bit for bit the same steps run through tfjs (losses, norms, weights, moments), across fits, a mask ratio changed and the MLM-only baseline", async () => {
  await use("webgpu");
  const replayed = makeTrainer({ gradAccumulation: 2 });
  const reference = makeTrainer({ gradAccumulation: 2, recordSteps: "tfjs" });
  // One trainer's fits after another's (another trainer's fit gives a held replay's buffers back to the GPU)
  const counts = (t: Trainer) => ({ ran: t.recordedSteps!.ran, replayed: t.recordedSteps!.replayed });
  const phases = async (t: Trainer) => {
    const events = await train(t, 4);
    await weightBits(t); // a read between fits: tfjs caches the values on the CPU, and replays must not be hidden by it
    events.push(...(await train(t, 3)));
    const seen = [counts(t)];
    // a new encoder ratio (other label slots: recorded again), then the decoder off (another graph)
    t.change("encoderMaskRatio", 0.15);
    events.push(...(await train(t, 4)));
    seen.push(counts(t));
    t.model.decoderLossWeight = 0;
    events.push(...(await train(t, 4)));
    seen.push(counts(t));
    // DupMAE: the bag-of-words target is one more input of the step
    [t.model.decoderLossWeight, t.model.bowLossWeight] = [1, 0.1];
    events.push(...(await train(t, 4)));
    seen.push(counts(t));
    return { events, seen };
  };
  const [{ events: er, seen }, { events: et }] = [await phases(replayed), await phases(reference)];
  const replays = seen.map((c, i) => c.replayed - (i ? seen[i - 1].replayed : 0));
  assert.ok(replays[0] >= 3, `steps replayed: ${JSON.stringify(seen)}`);
  assert.is(seen[0].replayed + seen[0].ran, 7);
  assert.ok(replays.slice(1).every((n) => n >= 1), `recorded again after each change (the ratio, MLM-only, DupMAE), then replayed: ${JSON.stringify(seen)}`);
  assert.ok(er.slice(11, 15).every((e) => Number.isNaN(e.decoderLoss)), "MLM-only: no decoder loss");
  assert.ok(er.slice(-4).every((e) => e.bowLoss! > 0), "DupMAE's bag-of-words loss");
  assert.equal(bits(er.slice(-4).map((e) => e.bowLoss!)), bits(et.slice(-4).map((e) => e.bowLoss!)), "bag-of-words losses");
  assert.equal(reference.recordedSteps!.replayed, 0);
  assert.equal(er.map((e) => bits([e.loss, e.encoderLoss, e.decoderLoss, e.encoderAccuracy, e.gradNorm])), et.map((e) => bits([e.loss, e.encoderLoss, e.decoderLoss, e.encoderAccuracy, e.gradNorm])), "losses, accuracy and norms");
  assert.ok(new Set(er.map((e) => e.loss)).size === er.length, "every step has its own batch");
  const [wr, wt] = [await weightBits(replayed), await weightBits(reference)];
  for (const [k, v] of wt) assert.equal(wr.get(k), v, k);
  const [sr, st] = [await replayed.optimizer.getState(), await reference.optimizer.getState()];
  assert.is(sr.step, st.step);
  for (const [k, v] of st.m) assert.equal(bits(sr.m.get(k)!), bits(v), `m ${k}`);
  for (const [k, v] of st.v) assert.equal(bits(sr.v.get(k)!), bits(v), `v ${k}`);
  for (const t of [replayed, reference]) {
    t.model.dispose();
    t.dispose();
  }
});

test("the next step's batches are made on the collating thread while a step is issued: the batches, losses and weights of batches collated on the main thread, bit for bit, across gradient accumulation, a ratio changed mid-fit, a hook that draws from the generator and a second fit; RETROMAE_COLLATE_AHEAD=0 turns it off", async () => {
  await use("webgpu");
  assert.ok(await collateAhead().whenReady(), `the collating thread did not start: ${collateAhead().disabledReason}`);
  const run = async (thread: boolean) => {
    if (!thread) process.env.RETROMAE_COLLATE_AHEAD = "0";
    try {
      const t = makeTrainer({
        batchSize: 2,
        gradAccumulation: 2,
        changes: [{ step: 4, field: "decoderMaskRatio", old: 0.5, new: 0.7, source: "code" }],
        hooks: [{ every: 3, run: (tr) => ({ draw: tr.rng.uint32() }) }],
      });
      const batches: string[] = [];
      t.onBatch = (b, step) => batches.push(`${step}: ${b.encoderInputIds.join(",")} ${b.encoderLabels.join(",")} ${b.decoderAttentionMask.join("")}`);
      const events = [...(await train(t, 6)), ...(await train(t, 2))];
      const out = { batches, losses: events.map((e) => bits([e.loss, e.encoderLoss, e.decoderLoss, e.gradNorm])), weights: await weightBits(t), ahead: t.collatedAhead, ratio: t.collator.decoderMaskRatio };
      t.model.dispose();
      t.dispose();
      return out;
    } finally {
      delete process.env.RETROMAE_COLLATE_AHEAD;
    }
  };
  const [on, off] = [await run(true), await run(false)];
  // made ahead: steps 2, 3, 5, 6 and 8. Step 1 has nothing before it; step 4's batches were made before
  // the ratio changed and the hook drew (so the main thread made them), and step 7 opens a new fit.
  assert.equal(on.ahead, { steps: 5, off: null });
  assert.equal(off.ahead, { steps: 0, off: "RETROMAE_COLLATE_AHEAD=0" });
  assert.is(on.ratio, 0.7);
  assert.is(on.batches.length, 16, "Trainer.onBatch saw every micro-batch, 2 a step, wherever it was made");
  assert.equal(on.batches, off.batches, "the batches");
  assert.equal(on.losses, off.losses, "losses and norms");
  for (const [k, v] of off.weights) assert.equal(on.weights.get(k), v, k);
});

test("MLM-only from its first step, without gradient accumulation (the quickstart's baseline): replayed, bit for bit the steps run through tfjs (every step was refused before: its decoder parts were host constants, its decoder's moments never on the GPU)", async () => {
  await use("webgpu");
  const [replayed, reference] = [makeTrainer(), makeTrainer({ recordSteps: "tfjs" })];
  for (const t of [replayed, reference]) t.model.decoderLossWeight = 0;
  const [er, et] = [await train(replayed, 5), await train(reference, 5)];
  const r = replayed.recordedSteps!;
  assert.equal([r.ran, r.replayed, r.refused], [3, 2, null], JSON.stringify(r)); // the first step uploads the encoder's new moments: compared from the second on
  assert.ok(er.every((e) => Number.isNaN(e.decoderLoss) && Number.isNaN(e.decoderAccuracy)), "no decoder loss");
  assert.equal(er.map((e) => bits([e.loss, e.encoderLoss, e.encoderAccuracy, e.gradNorm])), et.map((e) => bits([e.loss, e.encoderLoss, e.encoderAccuracy, e.gradNorm])));
  const [wr, wt] = [await weightBits(replayed), await weightBits(reference)];
  for (const [k, v] of wt) assert.equal(wr.get(k), v, k);
  for (const t of [replayed, reference]) {
    t.model.dispose();
    t.dispose();
  }
});

test("a recorded step replayed on new inputs computes what tfjs computes from them, bit for bit", async () => {
  await use("webgpu");
  const W = weight(new Rng(5).fillNormal(new Float32Array(128)));
  const step = (ids: Int32Array, x: Float32Array) =>
    tf.tidy(() => {
      const [idsT, xT] = [tf.tensor1d(ids, "int32"), tf.tensor2d(x, [6, 16])];
      const { value, grads } = tf.variableGrads(() => {
        const w = W.reshape([16, 8]);
        return tf.sum(tf.mul(tf.softmax(tf.matMul(xT, w)), tf.gather(w, idsT))) as tf.Scalar;
      }, [W]);
      return [value, grads[W.name]];
    });
  const inputs = (s: number): [Int32Array, Float32Array] => [Int32Array.from({ length: 6 }, (_, i) => (i * 7 + s) % 16), new Rng(s).fillNormal(new Float32Array(96))];
  for (const s of [90, 91]) tf.dispose(step(...inputs(s)));
  const [a, b] = [1, 2].map((s) => {
    const arrays = inputs(s);
    const r = recordCommands(() => step(...arrays), { inputs: arrays, state: [W] });
    tf.dispose(r.result);
    return r;
  });
  const replay = StepReplay.build(a, b);
  if (!(replay instanceof StepReplay)) throw new Error(`refused: ${replay.refused}`);
  for (const s of [3, 4, 1]) {
    const got = replay.run(inputs(s));
    const want = step(...inputs(s));
    for (let i = 0; i < 2; i++) assert.equal(bits((await got[i].data()) as Float32Array), bits((await want[i].data()) as Float32Array), `inputs ${s}, output ${i}`);
    tf.dispose([...got, ...want]);
  }
  replay.dispose();
  W.dispose();
});

test("a profiled step (Trainer.profile) times every dispatch on the GPU, and is the step a replay runs, bit for bit", async () => {
  await use("webgpu");
  const [profiled, plain] = [makeTrainer(), makeTrainer()];
  // one trainer's fits after the other's: a fit gives another trainer's held replay back to the GPU
  await train(profiled, 5);
  const p = await profiled.profile();
  await train(plain, 5);
  const ep = await train(plain, 1);
  assert.is(p.step, 6);
  assert.is(profiled.step, plain.step);
  assert.is(p.dispatches, profiled.recordedSteps!.dispatches);
  assert.ok(p.gpuMs > 0, `GPU time ${p.gpuMs} ms`);
  assert.match(p.adapter, new RegExp(`${ADAPTER}.*software adapter: not GPU figures`));
  const sum = p.kernels.reduce((a, k) => a + k.ms, 0);
  assert.ok(Math.abs(sum - p.gpuMs) < 1e-3 * p.gpuMs + 1e-3, `kernels ${sum} ms vs step ${p.gpuMs} ms`);
  assert.is(p.kernels.reduce((a, k) => a + k.calls, 0), p.dispatches);
  const matmul = p.categories.find((c) => c.category === "matmul")!;
  assert.ok(matmul.calls > 0 && matmul.gflops! > 0, JSON.stringify(matmul));
  assert.ok(p.kernels.some((k) => k.category === "optimizer" && /^retromaeAdamW/.test(k.kernel)), "the raw AdamW shader is named by its pipeline's label");
  assert.ok(p.kernels.every((k) => k.ms >= 0 && k.category !== "other"), JSON.stringify(p.kernels.filter((k) => k.category === "other").map((k) => k.kernel)));
  assert.match(formatProfile(p), /GPU ms\s+share\s+calls\s+kind/);
  // the profiled step is the plain replayed step: same loss and weights, bit for bit
  assert.equal(bits([profiled.series.loss.at(-1)!]), bits([ep[0].loss]));
  const [wp, wq] = [await weightBits(profiled), await weightBits(plain)];
  for (const [k, v] of wq) assert.equal(wp.get(k), v, k);
  for (const t of [profiled, plain]) {
    t.model.dispose();
    t.dispose();
  }
});

test("a run resumed on webgpu gives the uninterrupted run's losses", async () => {
  await use("webgpu");
  const straight = makeTrainer();
  const all = (await train(straight, 4)).map((e) => e.loss);
  straight.model.dispose();
  straight.dispose();
  const dir = tmp();
  const first = makeTrainer({ runDir: dir });
  const head = (await train(first, 2)).map((e) => e.loss);
  first.model.dispose();
  first.dispose();
  const resumed = Trainer.resume(dir, { tokenizer: tok, data: corpus });
  const tail = (await train(resumed, 2)).map((e) => e.loss);
  assert.equal(bits([...head, ...tail]), bits(all), `straight ${all}, resumed ${[...head, ...tail]}`);
  resumed.model.dispose();
  resumed.dispose();
});

test("a device error mid-run stops the run with one sentence naming the last good checkpoint", async () => {
  await use("webgpu");
  const dir = tmp();
  const t = makeTrainer({ runDir: dir });
  await train(t, 1);
  // an invalid buffer (MAP_READ with STORAGE): Dawn reports a validation error, as it would an out-of-memory one
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
  try {
    await t.fit({ steps: 2, live: false });
    assert.unreachable("should stop");
  } catch (err) {
    const msg = (err as Error).message;
    assert.match(msg, /^The run stopped at step 2: the GPU reported error: Buffer usages .* is invalid.*; the weights on the GPU may be damaged, so resume from the last good checkpoint, .*checkpoint-1, with Trainer\.resume(, with recordSteps: false if it happens again \(every step issued through tfjs rather than replaying recorded ones\))?\.$/);
    assert.not.match(msg, /batchSize/, "not out of memory: no batch size to lower (that error has its own sentence)");
    assert.not.match(msg, /\n/);
  }
  t.model.dispose();
  t.dispose();
});

test("a probe on webgpu equals the cpu probe within 1e-4", async () => {
  const queries = [...ds.qrels.keys()].filter((q) => ds.queries.has(q)).slice(0, 4);
  const docIds = [...new Set(queries.flatMap((q) => [...ds.qrels.get(q)!.keys()]).filter((d) => ds.corpus.has(d)).concat([...ds.corpus.keys()].slice(0, 8)))];
  const set: ProbeSet = {
    queryIds: queries,
    queryTexts: queries.map((q) => ds.queries.get(q)!),
    docIds,
    docTexts: docIds.map((d) => ds.corpus.get(d)!.text),
    qrels: new Map(queries.map((q) => [q, ds.qrels.get(q)!])),
  };
  const results = [];
  for (const name of ["cpu", "webgpu"] as const) {
    await use(name);
    const model = microModel(tok.vocab.size, 21, 0.5);
    results.push(await runProbe(model, tok, set, { maxLength: 64, queryMaxLength: 32, batchSize: 8, k: 10 }));
    model.dispose();
  }
  const [cpu, gpu] = results;
  assert.ok(cpu.metrics["NDCG@10"] > 0, "the probe finds relevant documents at all");
  for (const [k, v] of Object.entries(cpu.metrics)) assert.ok(Math.abs(v - gpu.metrics[k]) < 1e-4, `${k}: cpu ${v} vs webgpu ${gpu.metrics[k]}`);
});

test("encoding on webgpu queues a batch of the shape of the one before before that one is read, and waits for the read before a batch of another shape; lengths padded to a multiple of 16 give the vectors of unpadded batches, and the cpu's", async () => {
  await use("webgpu");
  const model = microModel(tok.vocab.size, 23, 0.5);
  // four texts cut at 32 tokens (two batches of 2 × 32), then two short ones (2 × 16 with the multiple of 16)
  const long = texts.filter((t) => tok.encode(t).inputIds.length > 40).slice(0, 4);
  const short = ["cells grow", "the protein binds"];
  const input = [...long, ...short];
  // each read's map is held until its gate opens: what encoding queues before it waits on a read shows
  const log: string[] = [];
  const pass = GPUComputePassEncoder.prototype as unknown as { dispatchWorkgroups: (...a: unknown[]) => void };
  const buffer = GPUBuffer.prototype as unknown as { mapAsync: (...a: unknown[]) => Promise<void> };
  const [dispatch, map] = [pass.dispatchWorkgroups, buffer.mapAsync];
  const gates = [0, 1, 2].map(() => {
    let open = () => {};
    const opened = new Promise<void>((r) => (open = r));
    return { open, opened };
  });
  let reads = 0;
  pass.dispatchWorkgroups = function (this: unknown, ...a: unknown[]) {
    if (log[log.length - 1] !== "D") log.push("D");
    return dispatch.apply(this, a);
  };
  buffer.mapAsync = function (this: unknown, ...a: unknown[]) {
    const i = reads++;
    log.push(`R${i}`);
    return map.apply(this, a).then(async () => {
      await gates[i].opened;
      log.push(`read ${i}`);
    });
  };
  /** The log once nothing has been added to it for 300 ms. */
  const settled = async () => {
    for (let seen = -1; seen !== log.length; ) {
      seen = log.length;
      await new Promise((r) => setTimeout(r, 300));
    }
    return [...log];
  };
  const shapes: string[] = [];
  const padBatch = tok.padBatch;
  tok.padBatch = function (this: typeof tok, ...a: Parameters<typeof tok.padBatch>) {
    const b = padBatch.apply(this, a);
    shapes.push(`${b.batchSize}x${b.seqLength}`);
    return b;
  };
  let gated: Float32Array;
  try {
    const run = encodeTexts(model, tok, input, { batchSize: 2, maxLength: 32, progress: false });
    assert.equal(await settled(), ["D", "R0", "D", "R1"], "batch 2 (the shape of batch 1) queued before batch 1's read; nothing more");
    gates[0].open();
    assert.equal(await settled(), ["D", "R0", "D", "R1", "read 0"], "batch 3 (2 × 16) waits for batch 2's read");
    gates[1].open();
    assert.equal(await settled(), ["D", "R0", "D", "R1", "read 0", "read 1", "D", "R2"]);
    gates[2].open();
    gated = await run;
  } finally {
    [pass.dispatchWorkgroups, buffer.mapAsync] = [dispatch, map];
    for (const g of gates) g.open(); // a failed assertion above leaves no read waiting
  }
  assert.equal(log, ["D", "R0", "D", "R1", "read 0", "read 1", "D", "R2", "read 2"]);
  let unpadded: Float32Array;
  try {
    assert.equal(shapes.splice(0), ["2x32", "2x32", "2x16"], "on webgpu lengths go up to a multiple of 16");
    unpadded = await encodeTexts(model, tok, input, { batchSize: 2, maxLength: 32, progress: false, padToMultipleOf: 1 });
    assert.equal(shapes.slice(0, 2), ["2x32", "2x32"]);
    assert.ok(/^2x\d+$/.test(shapes[2]) && Number(shapes[2].slice(2)) < 16, shapes[2]);
  } finally {
    tok.padBatch = padBatch;
  }
  model.dispose();
  await use("cpu");
  const cpuModel = microModel(tok.vocab.size, 23, 0.5); // the same weights (seed 23), on the cpu
  const cpu = await encodeTexts(cpuModel, tok, input, { batchSize: 2, maxLength: 32, progress: false });
  cpuModel.dispose();
  await use("webgpu");
  const far = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  assert.ok(far(gated!, unpadded!) <= 1e-5, `padded to 16 vs unpadded: ${far(gated!, unpadded!)}`);
  assert.ok(far(gated!, cpu) <= 1e-4, `webgpu vs cpu: ${far(gated!, cpu)}`);
  assert.ok(gated!.some((v) => v !== 0) && gated!.every(Number.isFinite));
});

/** The two tests below' batch: 8 SciFact abstracts masked at 32 tokens. */
const batch8x32 = () => new RetroMAECollator({ tokenizer: tok, rng: new Rng(1), maxLength: 32 }).collate(texts.slice(0, 8));

test("with WebGPU's smallest limits (8 storage buffers, 128 MiB bindings, 16 KiB workgroup memory) a training step and the fused attention run and match, and a batch whose activations exceed a binding is one sentence", async () => {
  const st = await startWebGPU({ allowSoftware: true, limits: "default" });
  assert.is(st.limits.maxStorageBuffersPerShaderStage, 8);
  assert.is(st.limits.maxStorageBufferBindingSize, 128 * 2 ** 20);
  const t = makeTrainer();
  const smallEvents = await train(t, 2);
  const small = smallEvents.map((e) => e.loss);
  t.model.dispose();
  t.dispose();
  // A batch whose feed-forward activations exceed the binding is refused before anything is queued, naming a batch size that fits.
  const batch = batch8x32();
  const wideFfn = microModel(tok.vocab.size, 2, 0.02, { intermediateSize: 140_000 });
  const tensors = tf.memory().numTensors;
  try {
    await wideFfn.forwardBackward(batch);
    assert.unreachable("should refuse");
  } catch (err) {
    assert.match((err as Error).message, /^A batch of 8 × 32 needs \d+ MiB for the feed-forward activations \[256, 140000\], more than this GPU's largest buffer \(128 MiB\); use batchSize 7 \(with gradAccumulation 2 to keep the effective batch\)\.$/);
  }
  assert.is(tf.memory().numTensors, tensors, "nothing was made");
  wideFfn.dispose();
  // The fused attention at every preset's head width (dh 64) stages 16 KiB of keys and values: the least workgroup memory an adapter may have
  assert.is(st.limits.maxComputeWorkgroupStorageSize, 16384);
  const qkv = new Rng(7).fillNormal(new Float32Array(2 * 40 * 384));
  const attend = async () => {
    const out = tf.tidy(() => {
      const x = tf.tensor3d(qkv, [2, 40, 384]);
      return attentionInference(x, x, x, tf.zeros([2, 1, 1, 40]) as tf.Tensor4D, 2, 0.125, { hidden: 128, columns: [0, 128, 256] })!;
    });
    const v = await out.data();
    out.dispose();
    return v;
  };
  const attendedSmall = await attend();
  await startWebGPU({ allowSoftware: true });
  assert.ok(webgpuState()!.limits.maxStorageBuffersPerShaderStage > 8);
  assert.equal(bits(attendedSmall), bits(await attend()), "the same attention with the adapter's own limits");
  const u = makeTrainer();
  const fullEvents = await train(u, 2);
  const full = fullEvents.map((e) => e.loss);
  u.model.dispose();
  u.dispose();
  assert.equal(bits(small), bits(full));
  // the gradients' norm binds 7 gradients per shader here and more with the adapter's limits: the same sums in the same order
  assert.equal(bits(smallEvents.map((e) => e.gradNorm)), bits(fullEvents.map((e) => e.gradNorm)));
});

atScale("with WebGPU's smallest binding (128 MiB), logits past it go in parts: the loss and gradients of the model's step, which the native backend computes in one part", async () => {
  await startWebGPU({ allowSoftware: true, limits: "default" });
  // a vocabulary of 200,000: 167 rows of logits a buffer
  const batch = batch8x32();
  const decoderRows = batch.decoderLabels.filter((y) => y >= 0).length;
  assert.ok(decoderRows * 200_000 * 4 > 128 * 2 ** 20, `the decoder's ${decoderRows} rows of logits exceed one binding`);
  const wideStep = async () => {
    const wide = microModel(200_000, 2);
    const tensors = tf.memory().numTensors;
    const { grads, values } = await wide.forwardBackward(batch, { training: false });
    const g = new Map<string, Float32Array>();
    for (const [k, v] of grads) g.set(k, (await v.data()) as Float32Array);
    tf.dispose([...grads.values()]);
    assert.is(tf.memory().numTensors, tensors, "the parts leave no tensor");
    wide.dispose();
    return { values, g };
  };
  let inParts: Awaited<ReturnType<typeof wideStep>>;
  try {
    inParts = await wideStep();
  } finally {
    await startWebGPU({ allowSoftware: true }); // the adapter's own limits again
  }
  // the wide vocabulary's logits in one part on the native backend (no buffer limit): the same loss, and gradients within float rounding
  await use("native");
  const inOne = await wideStep();
  await use("webgpu");
  for (const k of ["loss", "encoderLoss", "decoderLoss", "decoderAccuracy"] as const) {
    assert.ok(Math.abs(inParts.values[k] - inOne.values[k]) <= 1e-5 * Math.abs(inOne.values[k]), `${k}: in parts on webgpu ${inParts.values[k]}, in one on native ${inOne.values[k]}`);
  }
  for (const [k, ref] of inOne.g) {
    const got = inParts.g.get(k)!;
    const scale = ref.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const worst = ref.reduce((m, x, i) => Math.max(m, Math.abs(x - got[i])), 0);
    assert.ok(worst <= 1e-4 * scale + 1e-9, `${k}: max diff ${worst} of ${scale}`); // (+1e-9: the attention key's bias has a zero gradient, up to rounding)
  }
});

test.run();
