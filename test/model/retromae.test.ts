import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { IGNORE, RetroMAEBatch } from "../../lib/masking/batch";
import { RetroMAECollator } from "../../lib/masking/collator";
import { RetroMAE } from "../../lib/model/retromae";
import { BertTokenizer } from "../../lib/text/tokenizer";

const tok = BertTokenizer.bertBaseUncased();
const TEXTS = [
  "Dense retrieval needs a good sentence embedding.",
  "RetroMAE masks the encoder input moderately and the decoder input aggressively.",
  "Short.",
  "The [CLS] embedding alone must carry the sentence to the decoder.",
];

function setup(seed = 1) {
  const rng = new Rng(seed);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, maxPositionEmbeddings: 64 } });
  const collator = new RetroMAECollator({ tokenizer: tok, rng, maxLength: 32 });
  return { rng, model, collator };
}

/** Per weight, the largest |a − b| between two sets of gradients. */
function worstGradientGaps(a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, g] of a) {
    const [x, y] = [g.dataSync(), b.get(name)!.dataSync()];
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
    out.set(name, worst);
  }
  return out;
}

test("weights use Hugging Face names, decoder under c_head", async () => {
  await use("wasm");
  const { model } = setup();
  const names = [...model.weights.keys()];
  assert.ok(names.includes("bert.embeddings.word_embeddings.weight"));
  assert.ok(names.includes("bert.encoder.layer.1.attention.self.query.weight"));
  assert.ok(names.includes("cls.predictions.transform.LayerNorm.bias"));
  assert.ok(names.includes("c_head.attention.output.LayerNorm.weight"));
  assert.ok(names.includes("c_head.output.dense.weight"));
  assert.equal(model.weights.get("bert.encoder.layer.0.intermediate.dense.weight")!.shape, [64, 32]); // [out, in]
  assert.not.ok(names.some((n) => n.startsWith("c_head.") && n.includes("embeddings")));
  assert.is([...model.encoderWeights().keys()].filter((n) => n.startsWith("c_head")).length, 0);
  model.dispose();
});

test("at init both losses are near ln(V) and finite, with padded rows present", async () => {
  await use("wasm");
  const { model, collator, rng } = setup();
  const batch = collator.collate(TEXTS);
  assert.ok(batch.lengths[2] < batch.seqLength, "batch has padding rows");
  const out = await model.forwardBackward(batch, { training: true, rng });
  const lnV = Math.log(30522);
  assert.ok(Math.abs(out.values.encoderLoss - lnV) < 0.3, `encoder ${out.values.encoderLoss}`);
  assert.ok(Math.abs(out.values.decoderLoss - lnV) < 0.3, `decoder ${out.values.decoderLoss}`);
  assert.ok(Math.abs(out.values.loss - out.values.encoderLoss - out.values.decoderLoss) < 1e-4);
  for (const g of out.grads.values()) assert.ok(g.dataSync().every(Number.isFinite), "finite gradients");
  tf.dispose([...out.grads.values()]);
  model.dispose();
});

test("decoderLossWeight: 0 is the MLM-only baseline (no decoder pass, no decoder gradient); other weights scale the decoder loss", async () => {
  await use("wasm");
  const { model, collator, rng } = setup();
  const batch = collator.collate(TEXTS);
  const full = await model.forwardBackward(batch, { training: false, rng });
  model.decoderLossWeight = 0.5;
  const half = await model.forwardBackward(batch, { training: false, rng });
  assert.ok(Math.abs(half.values.loss - (full.values.encoderLoss + 0.5 * full.values.decoderLoss)) < 1e-4);
  const before = tf.memory().numTensors;
  model.decoderLossWeight = 0;
  const mlm = await model.forwardBackward(batch, { training: false, rng });
  assert.ok(Math.abs(mlm.values.loss - full.values.encoderLoss) < 1e-5);
  assert.ok(Number.isNaN(mlm.values.decoderLoss) && Number.isNaN(mlm.values.decoderAccuracy));
  assert.not.ok([...mlm.grads.keys()].some((k) => k.startsWith("c_head.")), "no decoder gradients");
  assert.ok(mlm.grads.has("bert.embeddings.word_embeddings.weight"));
  tf.dispose([...mlm.grads.values()]);
  assert.is(tf.memory().numTensors, before);
  assert.throws(() => (model.decoderLossWeight = -1), /decoderLossWeight must be a number >= 0/);
  tf.dispose([...full.grads.values(), ...half.grads.values()]);
  model.dispose();
});

/** The same batch with `extra` more padding columns. */
function widen(b: RetroMAEBatch, extra: number): RetroMAEBatch {
  const B = b.batchSize;
  const L = b.seqLength;
  const W = L + extra;
  const grow = <T extends Int32Array | Uint8Array>(x: T, fill: number, make: (n: number) => T): T => {
    const out = make(B * W).fill(fill) as T;
    for (let r = 0; r < B; r++) out.set(x.subarray(r * L, r * L + L), r * W);
    return out;
  };
  const mask = new Uint8Array(B * W * W);
  for (let r = 0; r < B; r++) for (let i = 0; i < L; i++) mask.set(b.decoderAttentionMask.subarray((r * L + i) * L, (r * L + i + 1) * L), (r * W + i) * W);
  const i32 = (n: number) => new Int32Array(n);
  return {
    ...b,
    seqLength: W,
    encoderInputIds: grow(b.encoderInputIds, 0, i32),
    attentionMask: grow(b.attentionMask, 0, i32),
    encoderLabels: grow(b.encoderLabels, IGNORE, i32),
    decoderInputIds: grow(b.decoderInputIds, 0, i32),
    decoderLabels: grow(b.decoderLabels, IGNORE, i32),
    encoderMaskKinds: grow(b.encoderMaskKinds, 0, (n) => new Uint8Array(n)),
    decoderAttentionMask: mask,
  };
}

test("extra padding changes no loss and no gradient ([PAD] lookups add nothing; padded decoder rows stay finite)", async () => {
  await use("wasm");
  const { model, collator } = setup(3);
  const batch = collator.collate(TEXTS);
  const a = await model.forwardBackward(batch, { training: false });
  const b = await model.forwardBackward(widen(batch, 7), { training: false });
  assert.ok(Math.abs(a.values.loss - b.values.loss) < 1e-5, `${a.values.loss} vs ${b.values.loss}`);
  for (const [name, worst] of worstGradientGaps(a.grads, b.grads)) assert.ok(worst < 1e-5, `${name}: ${worst}`);
  tf.dispose([...a.grads.values(), ...b.grads.values()]);
  model.dispose();
});

test("static shapes (labelled rows padded to the batch's labelSlots with weight 0) change no loss, accuracy or gradient", async () => {
  await use("wasm");
  const { model, collator } = setup(4);
  const batch = collator.collate(TEXTS);
  const encoder = batch.encoderLabels.filter((x) => x !== IGNORE).length;
  const decoder = batch.decoderLabels.filter((x) => x !== IGNORE).length;
  const padded: RetroMAEBatch = { ...batch, labelSlots: { encoder: encoder + 9, decoder: decoder + 13 } };
  const a = await model.forwardBackward(batch, { training: false });
  const b = await model.forwardBackward(padded, { training: false });
  for (const k of ["loss", "encoderLoss", "decoderLoss", "encoderAccuracy", "decoderAccuracy"] as const) {
    assert.ok(Math.abs(a.values[k] - b.values[k]) < 1e-5, `${k}: ${a.values[k]} vs ${b.values[k]}`);
  }
  for (const [name, worst] of worstGradientGaps(a.grads, b.grads)) assert.ok(worst < 1e-6, `${name}: ${worst}`);
  tf.dispose([...a.grads.values(), ...b.grads.values()]);
  const stepArrays = model.stepInputs(padded);
  assert.is(stepArrays[2].byteLength, (encoder + 9) * 4, "the encoder's rows, padded");
  assert.is(model.stepInputs(padded)[2], stepArrays[2], "the same arrays each time: the step's tensors are made from them");
  const few = { ...batch, labelSlots: { encoder: encoder - 1, decoder } };
  assert.throws(() => model.stepInputs(few), new RegExp(`The batch labels ${encoder} positions but its labelSlots hold ${encoder - 1}; make batches with the collator that set them, or without staticShapes\\.`));
  model.dispose();
});

test("dropoutCalls() counts the generator's draws of one training forward, and clsDropoutCalls() those of the encoder alone, with dropout on, off or attention-only, in DupMAE mode, MLM-only and with two layers", async () => {
  await use("cpu");
  const cases: [string, Record<string, number>, (m: RetroMAE) => void, number][] = [
    // encoder: embeddings + 3 per layer; decoder: its embeddings + its layer's 3
    ["default (0.1, 0.1)", {}, () => {}, 1 + 3 + 1 + 3],
    ["dropout off", { hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 }, () => {}, 0],
    ["attention only", { hiddenDropoutProb: 0 }, () => {}, 1 + 1],
    ["DupMAE (the query through the embeddings too)", {}, (m) => (m.bowLossWeight = 0.1), 1 + 3 + 2 + 3],
    ["MLM-only (no decoder pass)", {}, (m) => (m.decoderLossWeight = 0), 1 + 3],
    ["two layers", { numHiddenLayers: 2 }, () => {}, 1 + 6 + 1 + 3],
  ];
  for (const [name, overrides, adjust, expected] of cases) {
    const before = tf.memory().numTensors;
    const rng = new Rng(3);
    const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1, maxPositionEmbeddings: 64, ...overrides } });
    adjust(model);
    const batch = new RetroMAECollator({ tokenizer: tok, rng, maxLength: 32 }).collate(TEXTS);
    let draws = 0;
    const counting = { seed: () => (draws++, rng.seed()) } as unknown as Rng;
    tf.tidy(() => {
      model.losses(batch, { training: true, rng: counting });
    });
    assert.is(draws, expected, `${name}: the forward drew ${draws}`);
    assert.is(model.dropoutCalls(), expected, name);
    // the encoder alone (fine-tuning's pass): its draws are clsDropoutCalls()
    draws = 0;
    tf.tidy(() => {
      model.cls(tf.tensor2d(batch.encoderInputIds, [batch.batchSize, batch.seqLength], "int32"), tf.tensor2d(batch.attentionMask, [batch.batchSize, batch.seqLength], "int32"), { training: true, rng: counting });
    });
    assert.is(model.clsDropoutCalls(), draws, `${name}: cls drew ${draws}`);
    model.dispose();
    assert.is(tf.memory().numTensors, before, `${name}: tensors left`);
  }
});

test("losses inside tf.tidy leave no tensor behind, the accuracies included (computed inside the loss's own op)", async () => {
  for (const name of ["cpu", "wasm"] as const) {
    await use(name);
    const { model, collator, rng } = setup();
    const before = tf.memory().numTensors;
    const batch = collator.collate(TEXTS);
    const loss = tf.tidy(() => model.losses(batch, { training: true, rng }).loss);
    assert.is(tf.memory().numTensors, before + 1, `${name}: only the loss returned`);
    loss.dispose();
    model.dispose();
  }
});

test("tf.memory().numTensors after 20 forward/backward steps equals the count after 1", async () => {
  await use("wasm");
  const { model, collator, rng } = setup();
  const counts: number[] = [];
  for (let step = 0; step < 20; step++) {
    const out = await model.forwardBackward(collator.collate(TEXTS), { training: true, rng });
    tf.dispose([...out.grads.values()]);
    counts.push(tf.memory().numTensors);
  }
  assert.ok(counts.every((c) => c === counts[0]), `counts ${counts}`);
  assert.is(counts[0], model.weights.size);
  model.dispose();
});

test("plain gradient steps on one batch lower the loss (the gradients point downhill)", async () => {
  await use("wasm");
  const { model, collator } = setup(2);
  const batch = collator.collate(TEXTS);
  const losses: number[] = [];
  for (let step = 0; step < 6; step++) {
    const out = await model.forwardBackward(batch, { training: false });
    losses.push(out.values.loss);
    tf.tidy(() => {
      for (const [name, v] of model.weights) v.assign(tf.sub(v, tf.mul(out.grads.get(name)!, 0.5)));
    });
    tf.dispose([...out.grads.values()]);
  }
  assert.ok(losses[5] < losses[0] - 0.5, `losses ${losses.map((l) => l.toFixed(3))}`);
  model.dispose();
});

test("encode returns the [CLS] hidden state and leaks nothing", async () => {
  await use("wasm");
  const { model } = setup();
  const enc = tok.encodeBatch(TEXTS);
  const ids = tf.tensor2d(enc.inputIds, [enc.batchSize, enc.seqLength], "int32");
  const mask = tf.tensor2d(enc.attentionMask, [enc.batchSize, enc.seqLength], "int32");
  const before = tf.memory().numTensors;
  const cls = model.encode(ids, mask);
  assert.equal(cls.shape, [4, 32]);
  assert.is(tf.memory().numTensors, before + 1);
  // padding does not change a row's embedding
  const one = tok.encodeBatch([TEXTS[2]]);
  const alone = model.encode(tf.tensor2d(one.inputIds, [1, one.seqLength], "int32"), tf.tensor2d(one.attentionMask, [1, one.seqLength], "int32"));
  const a = (cls.arraySync() as number[][])[2];
  const b = (alone.arraySync() as number[][])[0];
  assert.ok(Math.max(...a.map((x, i) => Math.abs(x - b[i]))) < 1e-5);
  tf.dispose([ids, mask, cls, alone]);
  model.dispose();
});

test.run();
