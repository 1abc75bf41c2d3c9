import { test } from "uvu";
import * as assert from "uvu/assert";
import { Rng } from "../../lib/engine/rng";
import { alignment, anisotropy, effectiveRank, geometryOf, geometryTable, kendallTau, uniformity, GEOMETRY_METRICS, geometryMetrics } from "../../lib/probe/geometry";
import { positivePairs, probeSetGeometry } from "../../lib/probe/probe";

const gaussian = (n: number, H: number, seed: number): Float32Array => {
  const rng = new Rng(seed);
  const x = new Float32Array(n * H);
  for (let i = 0; i < x.length; i += 2) {
    // Box–Muller
    const u = Math.max(rng.float(), 1e-12);
    const v = rng.float();
    const r = Math.sqrt(-2 * Math.log(u));
    x[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < x.length) x[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return x;
};
const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} is not within ${tol} of ${b}`);

test("isotropic Gaussian vectors: anisotropy near 0, effective rank near full, uniformity near the sphere's −4", () => {
  const H = 32;
  const n = 4000;
  const x = gaussian(n, H, 1);
  // the mean cosine of independent directions has sd 1/√H per pair, averaged over ~n²/2 pairs
  close(anisotropy(x, H), 0, 2e-3, "anisotropy");
  const r = effectiveRank(x, H);
  assert.ok(r > 0.97 * H && r <= H, `effective rank ${r} of ${H}`);
  // E exp(4 cos − 4) for random directions in 32 dimensions is about exp(−4 + 8/H) = −3.75 in log
  const u = uniformity(x, H, { uniformitySample: 1000 });
  assert.is(u.over, 1000);
  close(u.value, -4 + 8 / H, 0.02, "uniformity");
});

test("uniformity is the log mean of exp(−2‖x − y‖²) over every pair of normalised rows, whatever the row count (its rows go four at a time), and over the seeded sample it names", () => {
  const H = 13;
  const reference = (x: Float32Array, rows: number[]) => {
    const unit = rows.map((r) => {
      const v = Array.from(x.subarray(r * H, (r + 1) * H));
      const norm = Math.sqrt(v.reduce((a, b) => a + b * b, 0));
      return v.map((t) => t / norm);
    });
    let sum = 0;
    for (let a = 0; a < unit.length; a++)
      for (let b = a + 1; b < unit.length; b++) sum += Math.exp(-2 * unit[a].reduce((d, t, h) => d + (t - unit[b][h]) ** 2, 0));
    return Math.log(sum / ((unit.length * (unit.length - 1)) / 2));
  };
  for (const n of [2, 5, 36, 37, 38, 39]) {
    const x = gaussian(n, H, n);
    const u = uniformity(x, H);
    assert.is(u.over, n);
    close(u.value, reference(x, [...Array(n).keys()]), 1e-12, `${n} rows`);
  }
  const x = gaussian(50, H, 7);
  const sampled = uniformity(x, H, { uniformitySample: 21, seed: 3 });
  assert.is(sampled.over, 21);
  close(sampled.value, reference(x, new Rng(3).permutation(50).slice(0, 21)), 1e-12, "a sample of 21 of 50 rows");
});

test("effective rank: exp of the entropy of the normalised singular values, for any row count (the Gram matrix sums rows four at a time)", () => {
  const H = 9;
  for (const n of [1, 4, 6, 7]) {
    // row i is (i + 1)·e_i: singular values 1 … n
    const x = new Float32Array(n * H);
    for (let i = 0; i < n; i++) x[i * H + i] = i + 1;
    const total = (n * (n + 1)) / 2;
    const entropy = -Array.from({ length: n }, (_, i) => ((i + 1) / total) * Math.log((i + 1) / total)).reduce((a, b) => a + b, 0);
    close(effectiveRank(x, H), Math.exp(entropy), 1e-9, `${n} rows`);
  }
});

test("identical vectors: anisotropy 1, effective rank 1, uniformity 0, alignment 0", () => {
  const H = 16;
  const row = Array.from({ length: H }, (_, i) => Math.sin(i + 1));
  const x = Float32Array.from({ length: 50 * H }, (_, k) => row[k % H]);
  close(anisotropy(x, H), 1, 1e-6, "anisotropy");
  close(effectiveRank(x, H), 1, 1e-6, "effective rank");
  close(uniformity(x, H).value, 0, 1e-6, "uniformity");
  close(alignment(x, x, H), 0, 1e-12, "alignment");
  // multiples of one direction are still rank 1, and cosine 1 whatever their lengths
  const scaled = Float32Array.from(x, (v, k) => v * (1 + Math.floor(k / H)));
  close(effectiveRank(scaled, H), 1, 1e-6, "effective rank of multiples");
  close(anisotropy(scaled, H), 1, 1e-6, "anisotropy of multiples");
});

test("vectors of a diverged model (NaN, ±Inf, or squares past float64) give NaN measures, not a crash inside the eigensolver", () => {
  const H = 4;
  const ok = gaussian(20, H, 3);
  for (const bad of [NaN, Infinity, -Infinity, 1e200]) {
    const x = Float32Array.from(ok);
    x[5] = bad; // float32 turns 1e200 into Infinity
    const g = geometryOf(x, H);
    assert.ok(Number.isNaN(g.effectiveRank), `effective rank with ${bad}: ${g.effectiveRank}`);
    assert.ok(Number.isNaN(g.anisotropy) && Number.isNaN(g.uniformity), `anisotropy ${g.anisotropy}, uniformity ${g.uniformity} with ${bad}`);
  }
  // and the same data, finite, is measured
  assert.ok(Number.isFinite(geometryOf(ok, H).effectiveRank));
});

test("known sets: orthonormal, antipodal and 120° points have their textbook values", () => {
  // the H standard basis vectors: cos 0 between any two, ‖x − y‖² = 2, σ all 1
  const H = 8;
  const eye = Float32Array.from({ length: H * H }, (_, k) => (k % (H + 1) === 0 ? 1 : 0));
  close(anisotropy(eye, H), 0, 1e-12, "anisotropy of a basis");
  close(uniformity(eye, H).value, -4, 1e-9, "uniformity of a basis");
  close(effectiveRank(eye, H), H, 1e-9, "effective rank of a basis");
  // two antipodal points: ‖x − y‖² = 4, so log exp(−8) = −8; cos −1
  const anti = Float32Array.from([3, 0, -3, 0]);
  close(uniformity(anti, 2).value, -8, 1e-9, "uniformity of antipodes");
  close(anisotropy(anti, 2), -1, 1e-12, "anisotropy of antipodes");
  // three points 120° apart on a circle: ‖x − y‖² = 3, so −6; mean cosine −1/2
  const tri = Float32Array.from([0, 1, 2, 3, 4, 5].map((k) => (k % 2 === 0 ? Math.cos((2 * Math.PI * (k >> 1)) / 3) : Math.sin((2 * Math.PI * (k >> 1)) / 3))));
  close(uniformity(tri, 2).value, -6, 1e-6, "uniformity of 120° points");
  close(anisotropy(tri, 2), -0.5, 1e-6, "anisotropy of 120° points");
  // singular values (2, 1) along two axes: p = (2/3, 1/3), erank = exp(H(p)) = 1.8899
  const two = Float32Array.from([2, 0, 0, 1]);
  close(effectiveRank(two, 2), Math.exp(-(2 / 3) * Math.log(2 / 3) - (1 / 3) * Math.log(1 / 3)), 1e-9, "effective rank of diag(2, 1)");
  // alignment: orthogonal pairs are 2 apart on the sphere, identical ones 0
  close(alignment(Float32Array.from([1, 0, 0, 5]), Float32Array.from([0, 7, 0, 2]), 2), (2 + 0) / 2, 1e-12, "alignment");
});

test("geometryOf and the probe set's pairs; bad input gets one sentence", () => {
  const set = {
    queryIds: ["q1", "q2"],
    queryTexts: ["a", "b"],
    docIds: ["d1", "d2", "d3"],
    docTexts: ["x", "y", "z"],
    qrels: new Map([["q1", new Map([["d2", 1], ["d3", 0]])], ["q2", new Map([["d1", 2], ["d3", 1], ["gone", 1]])]]),
  };
  assert.equal(positivePairs(set), { query: [0, 1, 1], doc: [1, 0, 2] });
  const docs = Float32Array.from([1, 0, 0, 1, 1, 1]);
  const queries = Float32Array.from([0, 1, 1, 0]);
  const g = probeSetGeometry(set, docs, queries, 2);
  assert.is(g.pairs, 3);
  assert.is(g.n, 3);
  // q1 = d2 exactly (0), q2 = d1 exactly (0), q2 vs d3 at 45°: ‖x − y‖² = 2 − √2
  close(g.alignment, (2 - Math.SQRT2) / 3, 1e-9, "alignment over the judged pairs");
  const m = geometryMetrics(g);
  assert.equal(Object.keys(m).sort(), Object.values(GEOMETRY_METRICS).sort());
  assert.ok(Number.isNaN(geometryOf(docs, 2).alignment), "no pairs, no alignment");
  assert.not.ok(GEOMETRY_METRICS.alignment in geometryMetrics(geometryOf(docs, 2)));
  assert.throws(() => anisotropy(Float32Array.from([1, 2, 3]), 2), /has 3 values, not a whole number of rows of width 2; pass a row-major \[n × 2\] array\./);
  assert.throws(() => anisotropy(Float32Array.from([1, 2]), 2), /Anisotropy needs at least 2 vectors; got 1\./);
  assert.throws(() => alignment(Float32Array.from([1, 2]), Float32Array.from([1, 2, 3, 4]), 2), /one second vector per first vector; got 1 and 2/);
});

test("the geometry table: Kendall's τ of each measure against the score, with its exact permutation p", () => {
  assert.is(kendallTau([1, 2, 3, 4], [10, 20, 30, 40]), 1);
  assert.is(kendallTau([1, 2, 3, 4], [40, 30, 20, 10]), -1);
  assert.is(kendallTau([1, 2, 3], [1, 3, 2]), 1 / 3);
  assert.throws(() => kendallTau([1], [1]), /same length, at least 2; got 1 and 1/);
  const g = (anisotropy: number, effectiveRank: number) => ({ anisotropy, uniformity: -anisotropy, alignment: NaN, effectiveRank, n: 10, uniformityOver: 10, pairs: 0 });
  // anisotropy falls as the score rises (agrees exactly); the rank is scrambled
  const t = geometryTable([
    { name: "untrained", geometry: g(0.2, 30), score: 0.055 },
    { name: "start", geometry: g(0.9, 40), score: 0.0099 },
    { name: "RetroMAE", geometry: g(0.1, 10), score: 0.0755 },
    { name: "MLM-only", geometry: g(0.8, 20), score: 0.0166 },
  ]);
  const a = Object.fromEntries(t.agreement().map((x) => [x.measure, x]));
  assert.equal(Object.keys(a), ["anisotropy", "uniformity", "effective rank"], "alignment is left out where a row has none");
  assert.is(a.anisotropy.tau, 1);
  assert.is(a.anisotropy.p, 1 / 24, "only the identity of 4! orderings reaches τ = 1");
  assert.is(a.uniformity.tau, -1, "uniformity = −anisotropy here: the reverse order");
  assert.is(a.uniformity.p, 1);
  assert.is(a["effective rank"].tau, kendallTau([30, 40, 10, 20], [0.055, 0.0099, 0.0755, 0.0166]));
  const e = t.explanation();
  assert.match(e[0], /^Anisotropy orders the 4 encoders exactly as NDCG@10 does \(lower anisotropy, higher NDCG@10: Kendall τ = 1\.00, exact permutation p = 0\.042 over 4! orderings\)\.$/);
  assert.match(e[1], /^Uniformity does not order the 4 encoders as NDCG@10 does/);
  const text = t.toString();
  assert.match(text, /^encoder\s+anisotropy ↓\s+uniformity ↓\s+alignment ↓\s+effective rank ↑\s+NDCG@10$/m);
  assert.match(text, /^RetroMAE\s+0\.1000\s+-0\.1000\s+–\s+10\.00\s+0\.0755$/m);
  assert.match(t.toMimeBundle()["text/html"] as string, /<table class="retromae-geometry">/);
  assert.is(t.toJSON().agreement!.length, 3);
  assert.throws(() => geometryTable([{ name: "x", geometry: g(0.1, 1) }]).agreement(), /needs a NDCG@10 on every row/);
  assert.throws(() => geometryTable([]), /at least one row/);
});

test("the geometry of a real model's [CLS], and geometryHook reusing the probe's vectors", async () => {
  const { RetroMAE } = await import("../../lib/model/retromae");
  const { BertTokenizer } = await import("../../lib/text/tokenizer");
  const { embeddingGeometry } = await import("../../lib/probe/geometry");
  const { probeHook, geometryHook } = await import("../../lib/probe/probe");
  const { encodeTexts } = await import("../../lib/probe/encode");
  const tf = await import("../../lib/engine/tf");
  await (await import("../../lib/engine/backend")).use("cpu");
  const tok = BertTokenizer.bertBaseUncased();
  const model = RetroMAE.create("tiny", { seed: 3 });
  const texts = ["the cell divides", "proteins fold into shapes", "a virus infects the host", "genes are expressed in tissue", "the immune response", "stars form in clouds"];
  const g = await embeddingGeometry(model, tok, texts, { pairs: [["cell division", "the cell divides"], ["protein folding", "proteins fold into shapes"]], maxLength: 32 });
  assert.ok(g.anisotropy > -1 && g.anisotropy <= 1 && g.effectiveRank >= 1 && g.effectiveRank <= texts.length && g.uniformity <= 0 && g.alignment >= 0, JSON.stringify(g));
  assert.is(g.pairs, 2);
  let refused = "";
  await embeddingGeometry(model, tok, ["one"]).catch((e: Error) => (refused = e.message));
  assert.is(refused, "embeddingGeometry needs at least 2 texts to compare; got 1.");
  // the hook after a probe at the same step encodes nothing more
  const set = { id: "s", queryIds: ["q1", "q2"], queryTexts: ["cell division", "protein folding"], docIds: texts.map((_, i) => `d${i}`), docTexts: texts, qrels: new Map([["q1", new Map([["d0", 1]])], ["q2", new Map([["d1", 1]])]]) };
  const trainer = { model, tokenizer: tok, step: 5 };
  await probeHook(set, 5, { maxLength: 32, queryMaxLength: 16 }).run(trainer as never);
  const before = tf.memory().numTensors;
  let encoded = 0; // batches through the encoder
  const realEncode = model.encode.bind(model);
  model.encode = ((...a: Parameters<typeof realEncode>) => (encoded++, realEncode(...a))) as typeof model.encode;
  const m = await geometryHook(set, 5, { maxLength: 32, queryMaxLength: 16 }).run(trainer as never);
  assert.is(encoded, 0, "reused the probe's vectors");
  model.encode = realEncode;
  const direct = geometryMetrics(probeSetGeometry(set, await encodeTexts(model, tok, texts, { maxLength: 32, progress: false }), await encodeTexts(model, tok, set.queryTexts, { maxLength: 16, progress: false }), model.config.hiddenSize));
  assert.equal(m, direct);
  model.encode = ((...a: Parameters<typeof realEncode>) => (encoded++, realEncode(...a))) as typeof model.encode;
  trainer.step = 6; // a later step: the probe's vectors are stale, so the hook encodes
  await geometryHook(set, 6, { maxLength: 32, queryMaxLength: 16 }).run(trainer as never);
  assert.is(encoded, 2, "docs and queries encoded, one batch each");
  model.encode = realEncode;
  assert.is(tf.memory().numTensors, before, "no tensor left behind");
  // runProbe measures the same numbers from the vectors it scored
  const { runProbe } = await import("../../lib/probe/probe");
  const r = await runProbe(model, tok, set, { maxLength: 32, queryMaxLength: 16, geometry: true, progress: false });
  assert.equal(geometryMetrics(r.geometry!), direct);
  assert.throws(() => geometryHook(set, 0), /every must be a whole number of steps ≥ 1; got 0/);
  model.dispose();
});

test.run();
