/**
 * Recorded and replayed steps (lib/engine/webgpu/replay.ts) on Dawn's Null
 * backend: a device that validates and records every command and executes
 * none, so what a recording captures, what it refuses, who owns the
 * buffers, and what a replayed training step costs the host are tested in
 * seconds. That a replay computes the same bits as tfjs is tested on
 * SwiftShader (webgpu.test.ts), where commands run.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { Rng } from "../../lib/engine/rng";
import { NULL_ADAPTER } from "../../lib/engine/webgpu/dawn";
import { startWebGPU, stopWebGPU, trimGpuPool } from "../../lib/engine/webgpu/backend";
import { encodeTexts } from "../../lib/probe/encode";
import { bytesHeldByReplays, recordCommands, StepReplay } from "../../lib/engine/webgpu/replay";
import { countDispatches } from "../../lib/engine/webgpu/profile";
import { loadBeir } from "../../lib/data/beir";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { RetroMAE } from "../../lib/model/retromae";
import { SHARED_DATA } from "../helpers";

test.before(async () => {
  await startWebGPU({ allowSoftware: true, adapterName: NULL_ADAPTER });
});

test.after(() => {
  stopWebGPU();
});

/** A weight that owns its buffer, as a model's do. */
const weightOf = (shape: number[], seed: number) => {
  const t = tf.tensor(new Rng(seed).fillNormal(new Float32Array(shape.reduce((a, b) => a * b))), shape);
  const v = tf.variable(t);
  t.dispose();
  return v;
};

/** A small step: a gather, a matmul, softmax and their gradients, from two host arrays. */
function stepOf(W: tf.Variable) {
  return (ids: Int32Array, x: Float32Array) =>
    tf.tidy(() => {
      const idsT = tf.tensor1d(ids, "int32");
      const xT = tf.tensor2d(x, [6, 16]);
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.softmax(tf.matMul(xT, W)), tf.gather(W, idsT))) as tf.Scalar, [W]);
      return [value, tf.sum(tf.square(grads[W.name]))];
    });
}

const inputs = (s: number): [Int32Array, Float32Array] => [Int32Array.from({ length: 6 }, (_, i) => (i * 7 + s) % 16), new Rng(s).fillNormal(new Float32Array(96))];

/** Two recordings of `step` (warmed up first, so the pool is steady), and what build makes of them. */
function recordTwice(step: (ids: Int32Array, x: Float32Array) => tf.Tensor[], state: tf.Tensor[]) {
  for (let i = 0; i < 2; i++) tf.dispose(step(...inputs(90 + i)));
  const recordings = [1, 2].map((s) => {
    const arrays = inputs(s);
    const r = recordCommands(() => step(...arrays), { inputs: arrays, state });
    tf.dispose(r.result);
    return r;
  });
  return StepReplay.build(recordings[0], recordings[1]);
}

test("a recorded step replays: the same dispatches, new inputs, output tensors of the recorded shapes; its buffers are out of tfjs's pool until it is disposed", async () => {
  const W = weightOf([16, 8], 1);
  const before = tf.memory().numTensors;
  const replay = recordTwice(stepOf(W), [W]);
  if (!(replay instanceof StepReplay)) throw new Error(`refused: ${replay.refused}`);
  assert.ok(replay.dispatches >= 10, `dispatches ${replay.dispatches}`);
  assert.ok(replay.valid());
  assert.ok(bytesHeldByReplays() > 0);
  const pool = (tf.backend() as unknown as { bufferManager: { freeBuffers: Map<string, GPUBuffer[]> } }).bufferManager;
  for (let s = 3; s < 8; s++) {
    const out = replay.run(inputs(s));
    assert.equal(out.map((t) => t.shape), [[], []]);
    await Promise.all(out.map((t) => t.data()));
    tf.dispose(out);
    assert.is(tf.memory().numTensors, before, "nothing left behind");
  }
  // every buffer a replay holds is its own: tfjs never hands one to another tensor
  const free = new Set([...pool.freeBuffers.values()].flat());
  const owned = (replay as unknown as { owned: Set<GPUBuffer> }).owned;
  assert.ok(owned.size > 0);
  for (const b of owned) assert.not.ok(free.has(b), "a replay's buffer is in tfjs's free pool");
  assert.throws(() => replay.run([new Int32Array(5), inputs(1)[1]]), /Input 0 of a recorded step has 20 bytes where the recording had 24; batches must keep the shapes recorded\./);
  replay.dispose();
  assert.is(bytesHeldByReplays(), 0, "disposed: every buffer given back");
  assert.throws(() => replay.run(inputs(1)), /no longer matches its model's tensors/);
  W.dispose();
});

test("a state tensor replaced (assign, not in place) makes the replay invalid: it is recorded again", () => {
  const W = weightOf([16, 8], 2);
  const replay = recordTwice(stepOf(W), [W]);
  if (!(replay instanceof StepReplay)) throw new Error(`refused: ${replay.refused}`);
  W.assign(tf.zeros([16, 8]));
  assert.not.ok(replay.valid());
  replay.dispose();
  W.dispose();
});

test("what cannot be replayed is refused, with the reason: host values that change and are not inputs, a read, a leak, a replaced state, a tensor that is not state", async () => {
  const W = weightOf([16, 8], 3);
  const step = stepOf(W);
  let n = 0;
  const undeclared = recordTwice((ids, x) => tf.tidy(() => [tf.add(step(ids, x)[0], tf.scalar(n++))]), [W]);
  assert.ok(!(undeclared instanceof StepReplay));
  assert.match((undeclared as { refused: string }).refused, /uploads values that change from step to step and are not a declared input \(made at .*webgpu-replay\.test\.ts:\d+/);

  let pending: Promise<unknown> | null = null;
  const reads = recordCommands(() => {
    const t = tf.add(W, 1);
    pending = t.data();
    return [t];
  });
  assert.is(reads.refused, "a step reads the GPU (mapAsync)");
  await pending;
  tf.dispose(reads.result);

  const leaky = recordCommands(() => {
    tf.add(W, 1); // never disposed
    return [tf.add(W, 2)];
  });
  assert.is(leaky.refused, "the step left 2 new tensors alive and returned 1; dispose everything but the outputs");
  tf.dispose(leaky.result);

  const replaced = recordTwice((ids, x) => tf.tidy(() => {
    const out = step(ids, x);
    W.assign(tf.add(W, 0)); // a new buffer each step
    return out;
  }), [W]);
  assert.match((replaced as { refused: string }).refused, /a state tensor moved to another buffer|binds another buffer/);

  const V = weightOf([16, 8], 4);
  const notState = recordTwice((ids, x) => tf.tidy(() => [...step(ids, x), tf.sum(V)]), [W]);
  assert.is((notState as { refused: string }).refused, "the step reads a tensor that existed before it and is not in its state (pass it as state, or make it inside the step)");
  V.dispose();
  W.dispose();
});

test("a trainer on webgpu replays its steps after at most four through tfjs, every dispatch of the step in each, tf.memory() flat; recordSteps false runs every step through tfjs", async () => {
  const tok = BertTokenizer.bertBaseUncased();
  const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].slice(0, 300).map((d) => d.text);
  const corpus = PackedCorpus.fromTexts(texts, tok, 32);
  const make = (recordSteps: boolean) => {
    const rng = new Rng(1);
    const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 16, intermediateSize: 64 } });
    return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: 2, maxLength: 32, totalSteps: 40, recordSteps });
  };
  const t = make(true);
  const counts: number[] = [];
  await t.fit({ steps: 3, live: false });
  await t.fit({ steps: 12, live: false, onEvent: (e) => e.type === "step" && counts.push(e.numTensors) });
  const r = t.recordedSteps!;
  assert.is(r.refused, null, "replaying was not refused");
  assert.ok(r.replayed >= 11, JSON.stringify(r));
  assert.ok(counts.every((c) => c === counts[0]), `tensors ${counts}`);
  t.model.dispose();
  t.dispose();
  assert.is(bytesHeldByReplays(), 0, "the trainer's replay is disposed with it");
  const plain = make(false);
  await plain.fit({ steps: 1, live: false });
  // a replayed step encodes the whole step: at least the dispatches of a step through tfjs (which computes a few
  // small ops on the CPU from host values, where a recorded step runs them on the GPU)
  const dispatched = countDispatches((tf.backend() as unknown as { device: GPUDevice }).device);
  await plain.fit({ steps: 1, live: false });
  const throughTfjs = dispatched();
  assert.ok(throughTfjs > 200 && r.dispatches! >= throughTfjs, `a replayed step: ${r.dispatches} dispatches; through tfjs: ${throughTfjs}`);
  assert.is(plain.recordedSteps, null);
  plain.model.dispose();
  plain.dispose();
});

test("a replay's buffers go back to the GPU when other work needs them: another trainer's fit, encoding; the trainer's own fits keep it, and it records again after", async () => {
  const tok = BertTokenizer.bertBaseUncased();
  const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].slice(0, 100).map((d) => d.text);
  const corpus = PackedCorpus.fromTexts(texts, tok, 16);
  const make = (seed: number) => {
    const rng = new Rng(seed);
    const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
    return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed, batchSize: 2, maxLength: 16, totalSteps: 60 });
  };
  const [a, b] = [make(1), make(2)];
  await a.fit({ steps: 4, live: false });
  const held = bytesHeldByReplays();
  assert.ok(held > 0 && a.recordedSteps!.replayed > 0, "a replays, and holds its step's buffers");
  await a.fit({ steps: 2, live: false });
  assert.equal([a.recordedSteps!.ran, a.recordedSteps!.replayed], [3, 3], "a's own next fit replays at once");
  // b's fit: a's step's buffers are of no use to it (the quickstart's MLM-only run after RetroMAE's held both)
  await b.fit({ steps: 4, live: false });
  assert.ok(b.recordedSteps!.replayed > 0);
  assert.is(bytesHeldByReplays(), held, "only b's replay is held (the same model shapes: the same bytes)");
  // encoding (a probe): the replay's buffers go back, as a probe between steps needs them
  await encodeTexts(b.model, tok, texts.slice(0, 8), { batchSize: 4, maxLength: 64, progress: false });
  assert.is(bytesHeldByReplays(), 0);
  // and a records again: two steps through tfjs, then replays
  await a.fit({ steps: 4, live: false });
  assert.equal([a.recordedSteps!.ran, a.recordedSteps!.replayed, a.recordedSteps!.refused], [5, 5, null]);
  assert.is(bytesHeldByReplays(), held);
  for (const t of [a, b]) {
    t.model.dispose();
    t.dispose();
  }
  assert.is(bytesHeldByReplays(), 0);
});

test("after a mask ratio changes, the new step is recorded and replayed within three steps, with buffers new or pooled alike (it was refused for good before)", async () => {
  const tok = BertTokenizer.bertBaseUncased();
  const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].slice(0, 300).map((d) => d.text);
  const corpus = PackedCorpus.fromTexts(texts, tok, 16);
  const rng = new Rng(1);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  const t = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: 2, maxLength: 16, totalSteps: 60 });
  // fits of three steps, as a notebook's cells run them; the first replay comes after three steps through tfjs
  await t.fit({ steps: 3, live: false });
  await t.fit({ steps: 3, live: false });
  assert.equal([t.recordedSteps!.ran, t.recordedSteps!.replayed], [3, 3]);
  // A new ratio: another number of labelled slots, so new buffer sizes. tfjs uploads into a new buffer by
  // mapping it at creation and into a pooled one through a staging copy; which one a step gets changes
  // from step to step here, and the recordings differed ("command 108 (upload) differs in kind") every time.
  t.change("encoderMaskRatio", 0.15);
  for (let i = 0; i < 4; i++) await t.fit({ steps: 3, live: false });
  const r = t.recordedSteps!;
  assert.is(r.refused, null, JSON.stringify(r));
  assert.equal([r.ran, r.replayed], [5, 13], "two steps recorded at the new ratio, then replayed");
  // the decoder's ratio changes values, not sizes: the replay goes on
  t.change("decoderMaskRatio", 0.3);
  await t.fit({ steps: 2, live: false });
  assert.equal([t.recordedSteps!.ran, t.recordedSteps!.replayed], [5, 15]);
  // and when the pool was emptied before a step (a probe's encoding does), the steps after it still record alike
  trimGpuPool(true);
  t.change("encoderMaskRatio", 0.3);
  await t.fit({ steps: 6, live: false });
  assert.equal([t.recordedSteps!.ran, t.recordedSteps!.replayed, t.recordedSteps!.refused], [7, 19, null]);
  model.dispose();
  t.dispose();
});

test.run();
