/**
 * The bound on tfjs-webgpu's buffer pool (lib/engine/webgpu/pool.ts), on
 * Dawn's Null backend: a real device that validates and records every
 * command and executes none, so memory accounting and the host's side of a
 * step can be tested in milliseconds (values read back are not computed).
 * Dawn's Null device holds at most 512 MiB, so a pool that grows past it
 * fails there as a GPU would.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { backend } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { NULL_ADAPTER } from "../../lib/engine/webgpu/dawn";
import { startWebGPU, stopWebGPU, trimGpuPool } from "../../lib/engine/webgpu/backend";
import { loadBeir } from "../../lib/data/beir";
import { encodeTexts, searchTopK } from "../../lib/probe/encode";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { RetroMAE } from "../../lib/model/retromae";
import { SHARED_DATA } from "../helpers";

const allocated = () => (tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU: number }).numBytesAllocatedInGPU;
const bufferManager = () => (tf.backend() as unknown as { bufferManager: { numBytesAllocated: number; numBytesUsed: number; freeBuffers: Map<string, GPUBuffer[]>; acquireBuffer: (...a: unknown[]) => GPUBuffer } }).bufferManager;
/** Bytes in tfjs's pool that no tensor holds. */
const pooledFree = () => bufferManager().numBytesAllocated - bufferManager().numBytesUsed;
/** The most bytes tfjs's pool held (in use and free) while `f` ran. */
async function peakAllocated(f: () => Promise<unknown>): Promise<number> {
  const bm = bufferManager();
  const acquire = bm.acquireBuffer;
  let peak = bm.numBytesAllocated;
  bm.acquireBuffer = (...a: unknown[]) => {
    const b = acquire.apply(bm, a);
    peak = Math.max(peak, bm.numBytesAllocated);
    return b;
  };
  try {
    await f();
  } finally {
    bm.acquireBuffer = acquire;
  }
  return peak;
}
const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].map((d) => d.text);

test.before(async () => {
  await startWebGPU({ allowSoftware: true, adapterName: NULL_ADAPTER });
});

test.after(() => {
  stopWebGPU();
});

test("Dawn's Null backend opens by name and reports itself as no GPU", () => {
  const info = backend.info();
  assert.is(info.backend, "webgpu");
  assert.is(info.webgpu!.device, "null-backend");
  assert.is(info.webgpu!.backend, "null");
  assert.is(info.webgpu!.software, true);
});

test("shapes that change every round: without a trim the pool keeps each round's buffers; trimGpuPool gives back those two rounds did not use", async () => {
  const round = async (n: number) => {
    const y = tf.tidy(() => tf.mul(tf.add(tf.ones([n]), 1), 2));
    await y.data();
    y.dispose();
  };
  await round(1000);
  for (let i = 0; i < 3; i++) trimGpuPool(); // three rounds without it: its buffers go back too
  const start = allocated();
  for (let r = 1; r <= 20; r++) await round(1000 + r);
  const grown = allocated();
  assert.ok(grown > start + 20 * 4000, `the pool kept every size: ${start} → ${grown} bytes`);
  assert.is(trimGpuPool(), 0, "the round that ends used every one of them");
  assert.is(trimGpuPool(), 0, "a round with nothing in it: the round before used them");
  const released = trimGpuPool();
  assert.is(released, grown - start, "every size the rounds used, and only those");
  assert.is(allocated(), start, "the accounting follows what was given back");
  for (let r = 21; r <= 60; r++) {
    await round(1000 + r);
    trimGpuPool();
    assert.ok(allocated() <= start + 3 * 4 * (1000 + r) * 3, `round ${r}: ${allocated()} bytes pooled`);
  }
});

test("shapes that recur: after the first round the pool neither grows nor gives back", async () => {
  const round = async () => {
    const y = tf.tidy(() => tf.matMul(tf.ones([64, 32]), tf.ones([32, 48])).sum(1));
    await y.data();
    y.dispose();
  };
  await round();
  trimGpuPool();
  await round();
  trimGpuPool();
  const steady = allocated();
  for (let r = 0; r < 10; r++) {
    await round();
    assert.is(trimGpuPool(), 0, `round ${r}: nothing to give back`);
    assert.is(allocated(), steady);
  }
});

test("training with a different number of masked positions every step stays within the steps' own memory (it grew without bound before)", async () => {
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = PackedCorpus.fromTexts(texts.slice(0, 300), tok, 64);
  const rng = new Rng(3);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 64, numAttentionHeads: 2, intermediateSize: 128, numHiddenLayers: 1 } });
  const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 3, batchSize: 4, maxLength: 64, totalSteps: 60 });
  const seen: number[] = [];
  await trainer.fit({ steps: 40, live: false, onEvent: (e) => e.type === "step" && seen.push(allocated()) });
  const early = Math.max(...seen.slice(0, 10));
  assert.ok(Math.max(...seen.slice(10)) <= 1.5 * early, `bytes pooled per step: ${seen.join(" ")}`);
  trainer.dispose();
  model.dispose();
});

test("encoding length-sorted batches (a new padded length nearly every batch) keeps the pool near one batch's working set", async () => {
  const tok = BertTokenizer.bertBaseUncased();
  const model = RetroMAE.create("tiny", { seed: 4 });
  trimGpuPool(true);
  const before = allocated();
  const twoBatches = (await peakAllocated(() => encodeTexts(model, tok, texts.slice(0, 16), { batchSize: 8, maxLength: 256, progress: false }))) - before;
  // 300 documents in 38 batches of 8: without the trim the pool held every length's buffers (past the Null device's 512 MiB)
  const all = (await peakAllocated(() => encodeTexts(model, tok, texts.slice(0, 300), { batchSize: 8, maxLength: 256, progress: false }))) - before;
  assert.ok(twoBatches > 0);
  assert.ok(all <= 1.5 * twoBatches, `the pool held at most ${all} bytes over 38 batches; ${twoBatches} over two`);
  assert.is(pooledFree(), 0, "when encoding ends, what it pooled goes back: what runs next has shapes of its own");
  model.dispose();
});

test("a search's top-k gives its sorting buffers back (300 queries over 5,183 documents left 230 MB pooled, and the training step after a probe ran out of memory)", async () => {
  const rng = new Rng(5);
  const H = 8, Q = 300, D = 5183;
  const vectors = (n: number) => Float32Array.from({ length: n * H }, () => rng.float() - 0.5);
  trimGpuPool(true);
  const before = allocated();
  const peak = (await peakAllocated(() => searchTopK(vectors(Q), vectors(D), H, 100))) - before;
  assert.ok(peak > 100 * 2 ** 20, `the sort used ${peak} bytes at its peak`);
  assert.is(pooledFree(), 0);
});

test("a fit starts by giving back what earlier work left pooled, so a batch that fits is not refused for want of that memory", async () => {
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = PackedCorpus.fromTexts(texts.slice(0, 100), tok, 64);
  const model = RetroMAE.create("tiny", { seed: 6, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  // the tied decoder's logits at 8 × 62 labelled positions and their gradient: 2 × 60 MB
  const trainer = new Trainer({ model, tokenizer: tok, data: corpus, seed: 6, batchSize: 8, maxLength: 64, totalSteps: 2 });
  // 400 MiB left pooled by a cell's own work: with it, the Null device's 512 MiB cannot hold that step
  trimGpuPool(true);
  const left = Array.from({ length: 4 }, () => tf.fill([25 * 2 ** 20], 1));
  const ran = tf.tidy(() => tf.addN(left.map((t) => tf.slice(t, 0, 1))));
  await ran.data();
  tf.dispose([ran, ...left]);
  assert.ok(pooledFree() >= 400 * 2 ** 20, `${pooledFree()} bytes pooled`);
  const result = await trainer.fit({ steps: 1, live: false });
  assert.is(result.status, "done");
  const leftOver = [...bufferManager().freeBuffers.values()].flat().filter((b) => b.size === 100 * 2 ** 20);
  assert.is(leftOver.length, 0, "the cell's buffers went back to the GPU");
  trainer.dispose();
  model.dispose();
});

test.run();
