import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { loadBeir } from "../../lib/data/beir";
import { RetroMAE } from "../../lib/model/retromae";
import { compare, PUBLISHED_SCIFACT } from "../../lib/probe/compare";
import { encodeTexts, encodingBatches, paddedLength, searchTopK } from "../../lib/probe/encode";
import { makeProbeSet, probeHook, runProbe } from "../../lib/probe/probe";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();
const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));
const small = () => RetroMAE.create("tiny", { rng: new Rng(3), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });

test("blocked exact search equals brute force", async () => {
  await use("wasm");
  const rng = new Rng(1);
  const H = 8;
  const q = rng.fillNormal(new Float32Array(5 * H));
  const d = rng.fillNormal(new Float32Array(37 * H));
  const { indices, scores } = await searchTopK(q, d, H, 6, 10);
  for (let i = 0; i < 5; i++) {
    const all = Array.from({ length: 37 }, (_, j) => {
      let s = 0;
      for (let h = 0; h < H; h++) s += q[i * H + h] * d[j * H + h];
      return [j, s] as const;
    }).sort((a, b) => b[1] - a[1]);
    assert.equal(Array.from(indices[i]), all.slice(0, 6).map(([j]) => j));
    all.slice(0, 6).forEach(([, s], r) => assert.ok(Math.abs(scores[i][r] - s) < 1e-4));
  }
});

test("encoding keeps input order, normalises on request and leaks no tensors", async () => {
  await use("wasm");
  const model = small();
  const texts = ["a longer text about dense retrieval and masked auto-encoders", "short", "a middle sized sentence here"];
  const before = tf.memory().numTensors;
  const all = await encodeTexts(model, tok, texts, { batchSize: 2, progress: false });
  assert.is(tf.memory().numTensors, before);
  for (let i = 0; i < texts.length; i++) {
    const one = await encodeTexts(model, tok, [texts[i]], { progress: false });
    const diff = Math.max(...Array.from(one, (v, h) => Math.abs(v - all[i * 32 + h])));
    assert.ok(diff < 1e-5, `row ${i}: ${diff}`);
  }
  // batch 1 at the longest text's length: the two shorter texts fit one batch of as many tokens
  const grouped = await encodeTexts(model, tok, texts, { batchSize: 1, progress: false });
  assert.ok(Math.max(...Array.from(grouped, (v, j) => Math.abs(v - all[j]))) < 1e-5, "shorter texts grouped");
  const unit = await encodeTexts(model, tok, texts, { normalize: true, progress: false });
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(Math.hypot(...unit.subarray(i * 32, i * 32 + 32)) - 1) < 1e-5);
  model.dispose();
});

test("encoding's batches: longest first, as many texts as fit batchSize × the longest length in tokens (at least one), every text once, ties in input order; a bad batchSize is one sentence", () => {
  assert.equal(encodingBatches([5, 3, 10, 10, 2, 4], 2), [[2, 3], [0, 5, 1, 4]]);
  assert.equal(encodingBatches([7, 7, 7], 1), [[0], [1], [2]]);
  assert.equal(encodingBatches([], 4), []);
  const rng = new Rng(5);
  const lengths = Array.from({ length: 500 }, () => 2 + rng.int(511));
  const batches = encodingBatches(lengths, 16);
  const budget = 16 * Math.max(...lengths);
  assert.equal(batches.flat().sort((a, b) => a - b), [...lengths.keys()]);
  for (const b of batches) {
    const padded = Math.max(...b.map((i) => lengths[i]));
    assert.is(padded, lengths[b[0]], "the first text is the batch's longest");
    assert.ok(b.length * padded <= budget, `${b.length} × ${padded} tokens within ${budget}`);
  }
  assert.ok(batches.length < 500 / 16, `${batches.length} batches, where 16 texts a batch take ${Math.ceil(500 / 16)}`);
  assert.throws(() => encodingBatches([3], 0), /^batchSize must be a whole number ≥ 1; got 0\.$/);
});

test("padToMultipleOf pads each batch's length up to a multiple (HF's pad_to_multiple_of), never past maxLength: the same vectors; off (1) by default off webgpu; a bad value is one sentence", async () => {
  assert.equal([1, 15, 16, 17, 500, 512].map((l) => paddedLength(l, 16, 512)), [16, 16, 16, 32, 512, 512]);
  assert.equal([7, 300].map((l) => paddedLength(l, 1, 512)), [7, 300]);
  assert.is(paddedLength(290, 16, 300), 300);
  await use("wasm");
  const model = small();
  const texts = ["a longer text about dense retrieval and masked auto-encoders", "short", "a middle sized sentence here"];
  const shapes: string[] = [];
  const padBatch = tok.padBatch;
  tok.padBatch = function (this: BertTokenizer, ...a: Parameters<BertTokenizer["padBatch"]>) {
    const b = padBatch.apply(this, a);
    shapes.push(`${b.batchSize}x${b.seqLength}`);
    return b;
  };
  try {
    const plain = await encodeTexts(model, tok, texts, { batchSize: 1, progress: false });
    assert.equal(shapes.splice(0), ["1x15", "2x7"]);
    const padded = await encodeTexts(model, tok, texts, { batchSize: 1, progress: false, padToMultipleOf: 8 });
    assert.equal(shapes.splice(0), ["1x16", "2x8"]);
    assert.ok(Math.max(...Array.from(padded, (v, j) => Math.abs(v - plain[j]))) < 1e-5, "padding is masked");
    for (const bad of [0, 1.5, NaN]) {
      const err = await encodeTexts(model, tok, texts, { progress: false, padToMultipleOf: bad }).then(() => null, (e: Error) => e.message);
      assert.is(err, `padToMultipleOf must be a whole number ≥ 1; got ${bad}.`);
    }
  } finally {
    tok.padBatch = padBatch;
    model.dispose();
  }
});

test("encoding the same array of texts again reuses their token ids (a probe during training tokenized the corpus every time), only while the array holds the same strings", async () => {
  await use("wasm");
  const model = small();
  const texts = [...ds.corpus.values()].slice(0, 4).map((d) => d.text);
  const encode = tok.encode;
  let calls = 0;
  tok.encode = (...a: Parameters<typeof encode>) => (calls++, encode.apply(tok, a));
  try {
    const first = await encodeTexts(model, tok, texts, { batchSize: 2, maxLength: 64, progress: false });
    assert.is(calls, 4);
    assert.equal(Array.from(await encodeTexts(model, tok, texts, { batchSize: 2, maxLength: 64, progress: false })), Array.from(first));
    assert.is(calls, 4, "the second encoding tokenized nothing");
    await encodeTexts(model, tok, texts, { batchSize: 2, maxLength: 32, progress: false });
    assert.is(calls, 8, "another length is tokenized");
    texts[1] = "a text put in place of another";
    const changed = await encodeTexts(model, tok, texts, { batchSize: 2, maxLength: 64, progress: false });
    assert.is(calls, 12, "an array whose strings changed is tokenized again");
    const diff = (row: number) => Math.max(...Array.from(changed.subarray(row * 32, row * 32 + 32), (v, h) => Math.abs(v - first[row * 32 + h])));
    assert.ok(diff(0) < 1e-5 && diff(1) > 1e-3, `row 0 the same (${diff(0)}), row 1 another text's (${diff(1)})`);
    await encodeTexts(model, tok, [...texts], { batchSize: 2, maxLength: 64, progress: false });
    assert.is(calls, 16, "another array is tokenized");
  } finally {
    tok.encode = encode;
  }
  model.dispose();
});

test("encoding with a tokenizer whose ids run past the model's vocabulary is one sentence, before anything is queued", async () => {
  await use("wasm");
  const m = RetroMAE.create("tiny", { rng: new Rng(3), overrides: { vocabSize: 500, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  const before = tf.memory().numTensors;
  try {
    await encodeTexts(m, tok, ["protein folding"], { progress: false });
    assert.unreachable("should throw");
  } catch (err) {
    assert.match((err as Error).message, /^The tokenizer has token ids up to 30,521, past this model's vocabulary of 500 \(config\.vocabSize\); use the tokenizer the model was made with/);
  }
  assert.is(tf.memory().numTensors, before);
  m.dispose();
});

test("encoding cuts texts at the model's positions (as HF's tokenizers cut at model_max_length); a longer input tensor is one sentence", async () => {
  await use("wasm");
  const m = RetroMAE.create("tiny", { rng: new Rng(3), overrides: { maxPositionEmbeddings: 24, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  const texts = [...ds.corpus.values()].slice(0, 3).map((d) => d.text); // each far longer than 24 tokens
  const cut = await encodeTexts(m, tok, texts, { progress: false }); // default maxLength 512
  assert.equal(Array.from(cut), Array.from(await encodeTexts(m, tok, texts, { maxLength: 24, progress: false })));
  const ids = tf.zeros([1, 25], "int32") as tf.Tensor2D;
  assert.throws(() => m.encode(ids, tf.onesLike(ids)), /^Input length 25 exceeds the model's 24 positions; truncate the inputs to 24 tokens\.$/);
  tf.dispose(ids);
  m.dispose();
});

test("the default probe set: all 300 test queries, their relevant docs and a seeded sample of distractors", () => {
  const set = makeProbeSet(ds, { distractors: 500, seed: 1 });
  assert.is(set.queryIds.length, 300);
  const relevant = new Set([...ds.qrels.values()].flatMap((m) => [...m.keys()]));
  assert.ok([...relevant].every((d) => set.docIds.includes(d)));
  assert.is(set.docIds.length, relevant.size + 500);
  assert.equal(makeProbeSet(ds, { distractors: 500, seed: 1 }).docIds, set.docIds);
  assert.not.equal(makeProbeSet(ds, { distractors: 500, seed: 2 }).docIds, set.docIds);
  assert.is(makeProbeSet(ds, { distractors: "all" }).docIds.length, 5183);
  assert.ok(set.docTexts[0].startsWith(ds.corpus.get(set.docIds[0])!.title + " "));
});

test("a probe returns BEIR metrics, and the hook emits nDCG@10, MRR@10 and Recall@100", async () => {
  await use("wasm");
  const model = small();
  const set = makeProbeSet(ds, { distractors: 50, seed: 1 });
  set.queryIds = set.queryIds.slice(0, 40);
  set.queryTexts = set.queryTexts.slice(0, 40);
  const r = await runProbe(model, tok, set, { maxLength: 64, progress: false });
  assert.is(r.queries, 40);
  for (const k of ["NDCG@10", "MRR@10", "Recall@100", "MAP@10", "P@10"]) assert.ok(r.metrics[k] >= 0 && r.metrics[k] <= 1, k);
  assert.ok(r.metrics["Recall@100"] > 0, "some relevant docs are found among ~390");
  const hook = probeHook(set, 5, { maxLength: 64 });
  const m = await hook.run({ model, tokenizer: tok } as never);
  assert.equal(Object.keys(m).sort(), ["MRR@10", "NDCG@10", "Recall@100"]);
  model.dispose();
});

test("compare renders runs against metrics as HTML and text, marking the best", () => {
  const t = compare([
    { name: "enc 0.3 / dec 0.5", metrics: { "NDCG@10": 0.31, "MRR@10": 0.28 } },
    { name: "BM25", metrics: { "NDCG@10": 0.6869 } },
  ]);
  const text = t.toString();
  assert.match(text, /^run\s+NDCG@10\s+MRR@10$/m);
  assert.match(text, /BM25\s+0\.6869\*\s+–/);
  assert.match(t.toMimeBundle()["text/html"] as string, /<b>0\.6869<\/b>/);
  assert.throws(() => compare([]), /at least one run/);
});

test("compare with per-query metrics: intervals, paired tests against a baseline, seeds as mean ± sd, and refusals", () => {
  const q = (vals: number[]) => new Map(vals.map((v, i) => [`q${i}`, { "NDCG@10": v }]));
  const base = Array.from({ length: 40 }, (_, i) => (i % 5) / 5);
  const run = (name: string, vals: number[], extra: Partial<{ group: string; probeId: string }> = {}) => ({ name, metrics: { "NDCG@10": vals.reduce((a, b) => a + b, 0) / vals.length }, perQuery: q(vals), probeId: "p1", ...extra });
  const t = compare(
    [run("start", base), run("better s1", base.map((v) => v + 0.1), { group: "better" }), run("better s2", base.map((v) => v + 0.12), { group: "better" }), run("same", base.map((v, i) => v + (i % 2 ? 0.001 : -0.001)))],
    ["NDCG@10"],
    { baseline: "start", samples: 2000 },
  );
  const text = t.toString();
  assert.match(text, /better\s+0\.5100 ± 0\.0141 \(2 seeds\) \[0\.\d+, 0\.\d+\] p=<0\.001/);
  assert.match(text, /same\s+0\.4000 \[0\.\d+, 0\.\d+\] p=1\.000 n\.s\./);
  assert.match(text, /paired randomization test against "start"; n\.s\. = not significant at 0\.05/);
  assert.match(text, /\*: the best run in its column \(not a test\)\./);
  assert.match(t.toMimeBundle()["text/html"] as string, /bold: the best run in its column \(not a test\)\./);
  const json = t.toJSON();
  assert.is(json.rows.find((r) => r.name === "better")!.cells["NDCG@10"]!.seeds, 2);
  assert.throws(() => compare([run("a", base), run("b", base, { probeId: "p2" })]), /different probe sets \(p1, p2\); score every run on the same ProbeSet/);
  assert.throws(() => compare([run("a", base), { ...run("b", base), perQuery: q(base.slice(1)) }], ["NDCG@10"], { baseline: "a" }), /"b" and "a" were scored on different queries \(39 and 40\)/);
  assert.throws(() => compare([run("a", base)], ["NDCG@10"], { baseline: "nobody" }), /baseline "nobody" is not one of the runs/);
  // published lines: shown with their source, never tested, never best
  const withRefs = compare([run("start", base), run("better", base.map((v) => v + 0.1)), ...PUBLISHED_SCIFACT], ["NDCG@10"], { baseline: "start", samples: 500 });
  const refText = withRefs.toString();
  assert.match(refText, /BM25 \(published\), BEIR, Thakur et al\. 2021\s+0\.6650$/m);
  assert.match(refText, /RetroMAE \(published\), Xiao et al\. 2022, BERT-base\s+0\.6530$/m);
  assert.match(refText, /better\s+0\.5000 \[[^\]]+\] p=0\.00\d\*/);
  assert.match(withRefs.toMimeBundle()["text/html"] as string, /font-style:italic"><td style="text-align:left">BM25 \(published\)/);
});

test.run();
