import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { BeirDataset, loadBeir } from "../../lib/data/beir";
import { RetroMAE } from "../../lib/model/retromae";
import { contrastiveFinetune, trainingPairs } from "../../lib/probe/finetune";
import { BertTokenizer } from "../../lib/text/tokenizer";
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
  const { losses } = await contrastiveFinetune(model, tok, ds, { batchSize: 8, steps: 12, lr: 1e-3, warmupRatio: 0, maxLength: 64, seed: 1 });
  assert.is(losses.length, 12);
  assert.is(tf.memory().numTensors, before);
  const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3;
  const last = losses.slice(-3).reduce((a, b) => a + b) / 3;
  assert.ok(last < first, `loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  assert.ok(first > Math.log(8) * 0.5, "starts near ln(batch)");
  assert.equal(Array.from(model.weights.get("cls.predictions.transform.dense.weight")!.dataSync()), Array.from(headBefore), "MLM head untouched");
  model.dispose();
});

test("BM25 hard negatives double the passages; a temperature and cosine are accepted", async () => {
  await use("wasm");
  const model = RetroMAE.create("tiny", { rng: new Rng(6), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  // cosine scores (in [-1, 1]) at temperature 1 are near uniform, so the first loss is near ln(#passages):
  // ln(2B) = ln 8 with one hard negative per query, ln(B) = ln 4 without
  const withNeg = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 1, maxLength: 48, bm25HardNegatives: true, normalize: true, lr: 0 });
  const without = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 1, maxLength: 48, normalize: true, lr: 0 });
  assert.ok(Math.abs(withNeg.losses[0] - Math.log(8)) < 0.3, `${withNeg.losses[0]}`);
  assert.ok(Math.abs(without.losses[0] - Math.log(4)) < 0.3, `${without.losses[0]}`);
  const sharp = await contrastiveFinetune(model, tok, subset(), { batchSize: 4, steps: 2, maxLength: 48, bm25HardNegatives: true, normalize: true, temperature: 0.05 });
  assert.ok(sharp.losses.every(Number.isFinite));
  model.dispose();
  try {
    await contrastiveFinetune(model, tok, { ...subset(), qrels: new Map() }, { batchSize: 4 });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /Only 0 training pairs, fewer than one batch of 4/);
  }
});

test.run();
