import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { BeirDataset, loadBeir } from "../../lib/data/beir";
import { RetroMAE } from "../../lib/model/retromae";
import { contrastiveFinetune, trainingPairs, trainingQueries, TrainGroups } from "../../lib/probe/finetune";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { LossChart } from "../../lib/plot/loss-chart";
import { setDisplay } from "../../lib/display";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();
const full = loadBeir(path.join(SHARED_DATA, "beir-scifact"), "train");

/** `n` training queries with one positive each, the docs they need, and a few others. */
function subset(n = 8): BeirDataset {
  const qrels = new Map([...full.qrels].slice(0, n).map(([q, m]) => [q, new Map([[...m][0]])]));
  const docs = new Set([...qrels.values()].flatMap((m) => [...m.keys()]));
  [...full.corpus.keys()].slice(0, 40).forEach((d) => docs.add(d));
  return { name: "scifact-train-subset", corpus: new Map([...docs].map((d) => [d, full.corpus.get(d)!])), queries: full.queries, qrels };
}

test("SciFact has 919 train pairs with positive relevance", () => {
  assert.is(trainingPairs(full).length, 919);
});

test("in-batch contrastive fine-tuning lowers the loss, trains only the encoder, and leaks nothing", async () => {
  await use("wasm");
  const model = RetroMAE.create("tiny", { rng: new Rng(5), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  const headBefore = model.weights.get("cls.predictions.transform.dense.weight")!.dataSync().slice();
  const before = tf.memory().numTensors;
  const ds = subset();
  // one batch holds all 8 pairs, so every step sees the same task and the loss must fall
  const chart = new LossChart("fine-tuning", { lossTitle: "contrastive loss" });
  const shown: unknown[] = [];
  const previous = setDisplay({ show: (v) => (shown.push(v), { update: (u) => shown.push(u) }) });
  let losses: number[];
  try {
    ({ losses } = await contrastiveFinetune(model, tok, ds, { batchSize: 8, steps: 12, lr: 1e-3, warmupRatio: 0, maxLength: 64, seed: 1, chart, name: "tiny" }));
  } finally {
    setDisplay(previous);
  }
  assert.is(losses.length, 12);
  // the losses are drawn live on the chart given, as a run of that name, with a progress bar
  assert.is(chart.runs.length, 1);
  assert.equal(chart.runs[0].settings, { name: "tiny" });
  assert.equal(chart.runs[0].encoderLoss, losses);
  assert.ok(shown.length >= 3, "a chart, a progress bar, and their final update");
  assert.is(tf.memory().numTensors, before);
  const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3;
  const last = losses.slice(-3).reduce((a, b) => a + b) / 3;
  assert.ok(last < first, `loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  assert.ok(first > Math.log(8) * 0.5, "starts near ln(batch)");
  assert.equal(Array.from(model.weights.get("cls.predictions.transform.dense.weight")!.dataSync()), Array.from(headBefore), "MLM head untouched");
  model.dispose();
});

test("fine-tuning with a tokenizer whose ids run past the model's vocabulary, lengths past its positions, or a recordSteps it does not know, is one sentence", async () => {
  await use("wasm");
  const m = RetroMAE.create("tiny", { rng: new Rng(3), overrides: { vocabSize: 500, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  try {
    await contrastiveFinetune(m, tok, subset(), { batchSize: 4, steps: 1 });
    assert.unreachable("should throw");
  } catch (err) {
    assert.match((err as Error).message, /^The tokenizer has token ids up to 30,521, past this model's vocabulary of 500 \(config\.vocabSize\)/);
  }
  m.dispose();
  const short = RetroMAE.create("tiny", { rng: new Rng(3), overrides: { maxPositionEmbeddings: 64, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  for (const [options, message] of [
    [{}, /^maxLength 128 exceeds the model's 64 positions; lower maxLength\.$/],
    [{ maxLength: 64, queryMaxLength: 65 }, /^queryMaxLength 65 exceeds the model's 64 positions; lower queryMaxLength\.$/],
    [{ maxLength: 64, recordSteps: "yes" as unknown as boolean }, /^Fine-tuning's recordSteps must be true, false or "tfjs", got "yes"\.$/],
  ] as const) {
    try {
      await contrastiveFinetune(short, tok, subset(), { batchSize: 4, steps: 1, ...options });
      assert.unreachable("should throw");
    } catch (err) {
      assert.match((err as Error).message, message);
    }
  }
  short.dispose();
});

test("an epoch visits each training query once, with one of its positives drawn at random", () => {
  const qs = trainingQueries(full);
  const multi = qs.filter((q) => q.positives.length > 1);
  assert.ok(qs.length < trainingPairs(full).length && multi.length > 0, "SciFact train has multi-positive queries");
  const groups = new TrainGroups(full, 1, new Rng(3));
  const batches = groups.epoch(16);
  assert.is(batches.length, Math.floor(qs.length / 16));
  const seen = batches.flat();
  assert.is(new Set(seen).size, seen.length, "no query twice in an epoch");
  // a multi-positive query's positive varies across draws, and is always one of its judged positives
  const drawn = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const [p] = groups.group(multi[0]);
    assert.ok(multi[0].positives.includes(p));
    drawn.add(p);
  }
  assert.ok(drawn.size > 1, "positives are drawn, not iterated");
});

test("negatives come from BM25's top 200 for the query, never a judged positive, without repeats", () => {
  const groups = new TrainGroups(full, 8, new Rng(4));
  for (const q of trainingQueries(full).slice(0, 20)) {
    const g = groups.group(q);
    assert.is(g.length, 8);
    assert.ok(q.positives.includes(g[0]));
    const mined = groups.negativesOf(q.query);
    assert.ok(mined.length > 150 && mined.length <= 200);
    for (const n of g.slice(1)) {
      assert.ok(mined.includes(n), "from the mined list");
      assert.not.ok((full.qrels.get(q.query)!.get(n) ?? 0) > 0, "not a positive");
    }
    assert.is(new Set(g.slice(1)).size, 7);
  }
  assert.throws(() => new TrainGroups(full, 0, new Rng(1)), /trainGroupSize must be a whole number ≥ 1/);
});

test("a group size of G puts B·G passages in the batch; a temperature and cosine are accepted", async () => {
  await use("wasm");
  const model = RetroMAE.create("tiny", { rng: new Rng(6), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  // cosine scores (in [-1, 1]) at temperature 1 are near uniform, so the first loss is near ln(#passages):
  // ln(B·G) = ln 12 with groups of 3, ln(B) = ln 4 with in-batch negatives only
  const withNeg = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 1, maxLength: 48, trainGroupSize: 3, normalize: true, lr: 0 });
  const without = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 1, maxLength: 48, normalize: true, lr: 0 });
  assert.ok(Math.abs(withNeg.losses[0] - Math.log(12)) < 0.3, `${withNeg.losses[0]}`);
  assert.ok(Math.abs(without.losses[0] - Math.log(4)) < 0.3, `${without.losses[0]}`);
  const sharp = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 2, maxLength: 48, bm25HardNegatives: true, normalize: true, temperature: 0.05 });
  assert.ok(sharp.losses.every(Number.isFinite));
  model.dispose();
  try {
    await contrastiveFinetune(model, tok, { ...subset(), qrels: new Map() }, { batchSize: 4 });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /Only 0 training queries with a positive judgement, fewer than one batch of 4/);
  }
});


test("a fine-tuning step that is not finite stops the run with one sentence, and neither it nor the step queued after it changes a weight", async () => {
  await use("cpu");
  const model = RetroMAE.create("tiny", { rng: new Rng(5), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  const ln = model.weights.get("bert.embeddings.LayerNorm.weight")!;
  const before = tf.memory().numTensors;
  let snapshot = new Map<string, Float32Array>();
  const seen: number[] = [];
  const onStep = ({ step, gradNorm }: { step: number; gradNorm: number }) => {
    seen.push(step);
    assert.ok(gradNorm > 0 && Number.isFinite(gradNorm), `step ${step}'s gradient norm ${gradNorm}`);
    if (step !== 2) return;
    // losses are read one step behind: step 3 is taken, and step 4 will see one weight with a NaN
    snapshot = new Map([...model.weights].map(([k, w]) => [k, (w.dataSync() as Float32Array).slice()]));
    const poisoned = snapshot.get("bert.embeddings.LayerNorm.weight")!.slice();
    poisoned[0] = NaN;
    const t = tf.tensor1d(poisoned);
    ln.assign(t);
    t.dispose();
  };
  try {
    await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 6, lr: 1e-3, maxLength: 48, seed: 1, onStep });
    assert.unreachable("should throw");
  } catch (err) {
    assert.match((err as Error).message, /^Fine-tuning stopped at step 4: the loss became NaN; no update was applied from that step on, so the encoder has step 3's weights\. Lower lr \(now 0\.001\) or check the data\.$/);
  }
  assert.equal(seen, [1, 2, 3]);
  for (const [k, w] of model.weights) {
    const want = snapshot.get(k)!.slice();
    if (k === "bert.embeddings.LayerNorm.weight") want[0] = NaN;
    assert.equal(Array.from(w.dataSync()), Array.from(want), `${k}: steps 4 and 5 applied no update`);
  }
  assert.is(tf.memory().numTensors, before, "no tensor left");
  model.dispose();
});
test("each query and passage is tokenized once per fine-tune, however many epochs revisit it", async () => {
  await use("cpu");
  const model = RetroMAE.create("tiny", { rng: new Rng(5), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  const encode = tok.encode;
  const texts: string[] = [];
  tok.encode = function (this: BertTokenizer, text: string, options?: Parameters<BertTokenizer["encode"]>[1]) {
    texts.push(text);
    return encode.call(this, text, options);
  } as BertTokenizer["encode"];
  try {
    // 8 queries with one positive each, at batch 4: 2 steps an epoch, 3 epochs
    const { steps } = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, epochs: 3, maxLength: 48, seed: 1 });
    assert.is(steps, 6);
  } finally {
    tok.encode = encode;
  }
  assert.is(texts.length, new Set(texts).size, "no text tokenized twice");
  assert.ok(texts.length <= 16, `${texts.length} texts: the 8 queries and their positives`);
  model.dispose();
});

test.run();
