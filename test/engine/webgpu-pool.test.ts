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
import { encodeTexts } from "../../lib/probe/encode";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { RetroMAE } from "../../lib/model/retromae";
import { SHARED_DATA } from "../helpers";

const allocated = () => (tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU: number }).numBytesAllocatedInGPU;
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
  trimGpuPool();
  const before = allocated();
  await encodeTexts(model, tok, texts.slice(0, 16), { batchSize: 8, maxLength: 256, progress: false });
  const oneBatch = allocated() - before;
  // 300 documents in 38 batches of 8: without the trim the pool held every length's buffers (past the Null device's 512 MiB)
  await encodeTexts(model, tok, texts.slice(0, 300), { batchSize: 8, maxLength: 256, progress: false });
  assert.ok(allocated() - before <= 3 * oneBatch, `pooled ${allocated() - before} bytes after 38 batches; ${oneBatch} after two`);
  model.dispose();
});

test.run();
