/**
 * What a GPU's failures look like to the user (lib/engine/webgpu/backend.ts:
 * throwIfDeviceError, asDeviceFailure, the uncaptured-error listener), on
 * Dawn's Null backend: a real device that validates every command and runs
 * none, holding at most 512 MiB with buffers of at most 128 MiB, so running
 * out of either takes a tiny model and a large batch. Each of the three
 * paths that run a model (encoding for probes, fine-tuning, training) stops
 * with one sentence naming a size that fits, gives its memory back, and
 * leaves nothing behind that stops the next run.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import { spawnSync } from "child_process";
import * as tf from "../../lib/engine/tf";
import { Rng } from "../../lib/engine/rng";
import { NULL_ADAPTER } from "../../lib/engine/webgpu/dawn";
import { startWebGPU, stopWebGPU, takeDeviceError } from "../../lib/engine/webgpu/backend";
import { loadBeir } from "../../lib/data/beir";
import { encodeTexts } from "../../lib/probe/encode";
import { contrastiveFinetune } from "../../lib/probe/finetune";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { RetroMAE } from "../../lib/model/retromae";
import { SHARED_DATA } from "../helpers";

const allocated = () => (tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU: number }).numBytesAllocatedInGPU;
const scifact = loadBeir(path.join(SHARED_DATA, "beir-scifact"), "train");
const texts = [...scifact.corpus.values()].map((d) => `${d.title} ${d.text}`);
const tok = BertTokenizer.bertBaseUncased();

async function failure(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("expected the run to stop");
}

const oneSentence = (msg: string) => assert.ok(!msg.includes("\n") && !/While (calling|validating)|\bat [A-Z]\w+\./.test(msg), `not one sentence: ${msg}`);

test.before(async () => {
  await startWebGPU({ allowSoftware: true, adapterName: NULL_ADAPTER });
});

test.after(() => {
  stopWebGPU();
});

test("a batch with a tensor past the largest buffer: encoding and fine-tuning stop before queuing anything, naming the batch size that fits", async () => {
  const model = RetroMAE.create("tiny", { seed: 1 });
  const tensors = tf.memory().numTensors;
  // tiny's feed-forward activations at 240 × 512: [122880, 512] floats = 240 MiB, past the Null device's 128 MiB
  const long = texts.filter((t) => tok.encode(t, { maxLength: 512 }).inputIds.length === 512).slice(0, 240);
  assert.is(long.length, 240);
  const enc = await failure(() => encodeTexts(model, tok, long, { batchSize: 240, progress: false }));
  oneSentence(enc);
  assert.match(enc, /^Encoding a batch of 240 × 512 tokens needs 240 MiB for the feed-forward activations \[122880, 512\], more than this GPU's largest buffer \(128 MiB\); pass batchSize 128 to runProbe, probeHook or encodeTexts\.$/);
  // training-mode attention scores at 80 passages: [80, 2, L, L], 160 MiB at L = 512
  const ft = await failure(() => contrastiveFinetune(model, tok, scifact, { batchSize: 80, steps: 1, maxLength: 512 }));
  oneSentence(ft);
  assert.match(ft, /^Fine-tuning on 80 passages of \d+ tokens needs \d+ MiB for the (attention scores|feed-forward activations) \[[\d, ]+\], more than this GPU's largest buffer \(128 MiB\); use batchSize \d+\.$/);
  assert.is(takeDeviceError(), null, "nothing reached the device");
  assert.is(tf.memory().numTensors, tensors, "no tensor left behind");
  model.dispose();
});

test("out of memory while encoding: one sentence with a smaller batch size, the batch's memory given back, and the next encoding runs", async () => {
  const model = RetroMAE.create("tiny", { seed: 2 });
  await encodeTexts(model, tok, texts.slice(0, 2), { progress: false }); // the weights go to the GPU at their first use
  const tensors = tf.memory().numTensors;
  const before = allocated();
  // 128 × 512 fits every buffer (the feed-forward block is 128 MiB, the largest) but not the device's 512 MiB in all
  // (at 120 × 512 it ran out until the embeddings' adds went inside their LayerNorm; 122 fits now)
  const msg = await failure(() => encodeTexts(model, tok, texts.slice(0, 256), { batchSize: 128, progress: false }));
  oneSentence(msg);
  assert.match(msg, /^Encoding a batch of 128 × \d+ tokens failed: the GPU reported out of memory: Out of memory; pass a smaller batchSize \(e\.g\. 64\) to runProbe, probeHook or encodeTexts, or a lower maxLength\.$/);
  assert.is(tf.memory().numTensors, tensors, "no tensor left behind");
  assert.ok(allocated() - before < 2 ** 20, `the failed batch's buffers went back to the device: ${allocated() - before} bytes still pooled`);
  const vectors = await encodeTexts(model, tok, texts.slice(0, 32), { batchSize: 16, progress: false });
  assert.is(vectors.length, 32 * model.config.hiddenSize, "the error was taken: a smaller batch runs");
  assert.is(takeDeviceError(), null);
  model.dispose();
});

test("the quickstart's probe batches (64 documents of up to 512 tokens) fit tiny in 512 MiB: a batch of a new length is not allocated beside the last one's buffers", async () => {
  const model = RetroMAE.create("tiny", { seed: 3 });
  // four batches of 64 of falling length: with the last round's buffers kept, the second batch already held 540 MB
  await encodeTexts(model, tok, texts.slice(0, 256), { batchSize: 64, progress: false });
  assert.is(takeDeviceError(), null);
  model.dispose();
});

test("a device error that is not memory (here a validation error) stops encoding with one sentence that proposes no smaller batch, and the next encoding runs", async () => {
  const model = RetroMAE.create("tiny", { seed: 1 });
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE }); // invalid: Dawn reports it as the next batch runs
  const msg = await failure(() => encodeTexts(model, tok, texts.slice(0, 4), { batchSize: 4, progress: false }));
  oneSentence(msg);
  assert.match(msg, /^Encoding a batch of 4 × \d+ tokens failed: the GPU reported error: Buffer usages .* is invalid.*; the GPU may be unusable now, so restart the kernel \(or the script\) and run it again; if it fails the same way, RETROMAE_WEBGPU_ROBUSTNESS=1 turns Dawn's bounds checks on, and RETROMAE_BACKEND=native uses the CPU\.$/);
  assert.not.match(msg, /batchSize/);
  const again = await encodeTexts(model, tok, texts.slice(0, 4), { batchSize: 4, progress: false });
  assert.is(again.length, 4 * model.config.hiddenSize);
  model.dispose();
});

test("an error that only follows from one already recorded (an object it made invalid, used later) is not recorded again: a run stopped for the first is not stopped again by what it left queued", async () => {
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  const settle = async () => {
    await device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 50));
  };
  takeDeviceError();
  const bad = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE }); // invalid
  await settle();
  assert.match(takeDeviceError() ?? "", /^the GPU reported error: Buffer usages .* is invalid/);
  // the invalid buffer bound: Dawn reports that the bind group is invalid due to the buffer's error
  const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } }] });
  device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: bad } }] });
  await settle();
  assert.is(takeDeviceError(), null);
  // an error of its own is still recorded
  device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.STORAGE });
  await settle();
  assert.match(takeDeviceError() ?? "", /^the GPU reported error: Buffer usages .* is invalid/);
});

test("out of memory in training stops the run at that step with the fix, and a run started again with a smaller batch trains", async () => {
  const corpus = PackedCorpus.fromTexts(texts.slice(0, 200), tok, 128);
  const model = RetroMAE.create("tiny", { seed: 4 });
  const big = new Trainer({ model, tokenizer: tok, data: corpus, rng: new Rng(4), seed: 4, batchSize: 8, maxLength: 128, totalSteps: 10 });
  const msg = await failure(() => big.fit({ steps: 2, live: false }));
  oneSentence(msg);
  // tfjs throws where it cannot allocate a buffer while queuing the step; where the device reports it later instead, the
  // step's read stops the run: the same fix either way
  assert.match(msg, /^(The webgpu backend ran out of memory at batch size 8 × length 128|The run stopped at step 1: the GPU ran out of memory at batch size 8 × length 128 \(Out of memory\)); lower batchSize \(e\.g\. 4\) and raise gradAccumulation to keep the effective batch, or lower maxLength, and start again \(this run saved no checkpoint\): the weights on the GPU may be damaged\.$/);
  big.dispose();
  model.dispose();
  const fresh = RetroMAE.create("tiny", { seed: 4 });
  const small = new Trainer({ model: fresh, tokenizer: tok, data: corpus, rng: new Rng(4), seed: 4, batchSize: 1, maxLength: 64, totalSteps: 10 });
  const r = await small.fit({ steps: 2, live: false });
  assert.is(r.stepsTaken, 2);
  small.dispose();
  fresh.dispose();
});

test("Dawn's own report of an out-of-memory error, and of every error it causes, is replaced by one line", () => {
  const script = `
    const { startWebGPU, stopWebGPU } = require("./lib/engine/webgpu/backend");
    const { RetroMAE } = require("./lib/model/retromae");
    const { BertTokenizer } = require("./lib/text/tokenizer");
    const { encodeTexts } = require("./lib/probe/encode");
    (async () => {
      await startWebGPU({ allowSoftware: true, adapterName: "null-backend" });
      const texts = Array.from({ length: 128 }, (_, i) => "claim " + i + " " + "word ".repeat(600));
      await encodeTexts(RetroMAE.create("tiny", { seed: 1 }), BertTokenizer.bertBaseUncased(), texts, { batchSize: 128, progress: false }).catch((e) => console.log("THROWN " + e.message));
      stopWebGPU();
    })();`;
  const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { cwd: path.resolve(__dirname, "..", ".."), encoding: "utf8", timeout: 120_000 });
  const out = r.stdout + r.stderr;
  assert.match(out, /THROWN Encoding a batch of 128 × 512 tokens failed: the GPU reported out of memory/);
  assert.is(out.match(/webgpu: the GPU is out of memory \(Out of memory\.\); what needed the memory has no result\./g)?.length, 1, out);
  assert.not.match(out, /While calling|is invalid due to a previous error|out of memory:\n/, out.slice(0, 2000));
});

test.run();
