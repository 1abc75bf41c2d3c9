import { test } from "uvu";
import * as assert from "uvu/assert";
import { compare } from "../../lib/probe/compare";
import { pairedRandomizationTest } from "../../lib/probe/stats";

// 60 queries; each run's per-query NDCG@10 is the base shifted by a known amount
const base = Array.from({ length: 60 }, (_, i) => ((i * 7) % 10) / 10);
const q = (vals: number[]) => new Map(vals.map((v, i) => [`q${i}`, { "NDCG@10": v, "Recall@100": Math.min(1, v + 0.2) }]));
const run = (name: string, shift: (i: number) => number) => {
  const vals = base.map((v, i) => v + shift(i));
  return { name, metrics: { "NDCG@10": vals.reduce((a, b) => a + b, 0) / vals.length, "Recall@100": vals.reduce((a, b) => a + Math.min(1, b + 0.2), 0) / vals.length }, perQuery: q(vals), probeId: "p" };
};
const runs = [
  run("untrained", () => 0.05),
  run("start", () => 0),
  run("RetroMAE", () => 0.1),
  run("MLM-only", (i) => (i % 2 ? 0.05 : -0.048)),
  { name: "BM25 (published)", metrics: { "NDCG@10": 0.665 }, reference: "BEIR" },
];

test("compare with several baselines: a paired test of every run against each, the same p as the test run by itself", () => {
  const t = compare(runs, ["NDCG@10"], { baseline: ["start", "untrained", "MLM-only"], samples: 2000 });
  const json = t.toJSON();
  assert.equal(json.baselines, ["start", "untrained", "MLM-only"]);
  assert.is(json.baseline, "start");
  const cell = (n: string) => json.rows.find((r) => r.name === n)!.cells["NDCG@10"]!;
  const retro = cell("RetroMAE");
  assert.equal(Object.keys(retro.tests!).sort(), ["MLM-only", "start", "untrained"]);
  assert.equal(retro.test, retro.tests!.start, "test is the first baseline's");
  // each test equals the stand-alone paired test on the same per-query values
  const perQuery = (n: string) => Float64Array.from((runs.find((r) => r.name === n) as { perQuery: Map<string, { "NDCG@10": number }> }).perQuery.values(), (m) => m["NDCG@10"]);
  for (const b of ["start", "untrained", "MLM-only"]) assert.equal(retro.tests![b], pairedRandomizationTest(perQuery("RetroMAE"), perQuery(b), { samples: 2000, seed: 0 }));
  assert.ok(Math.abs(retro.tests!.untrained.difference - 0.05) < 1e-12);
  // a baseline is not tested against itself; published lines are never tested
  assert.not.ok(cell("start").tests?.start);
  assert.ok(cell("start").tests!.untrained);
  assert.not.ok(json.rows.find((r) => r.name === "BM25 (published)")!.cells["NDCG@10"]!.tests);
  // the text and HTML show one column of differences and p per baseline
  const text = t.toString();
  assert.match(text, /^run\s+NDCG@10\s+NDCG@10 vs start\s+NDCG@10 vs untrained\s+NDCG@10 vs MLM-only$/m);
  assert.match(text, /^RetroMAE\s+0\.5500 \[[^\]]+\]\*\s+\+0\.1000 p<0\.001\s+\+0\.0500 p<0\.001\s+\+0\.0990 p<0\.001$/m);
  assert.match(text, /^MLM-only\s+0\.4510 \[[^\]]+\]\s+\+0\.0010 p=0\.\d+ n\.s\.\s+−0\.0490 p<0\.001\s+–$/m);
  assert.match(text, /"vs": the difference from each baseline \(run minus baseline\) and p/);
  const html = t.toMimeBundle()["text/html"] as string;
  assert.match(html, /<th>NDCG@10 vs untrained<\/th>/);
  assert.match(html, /color:#666">\+0\.0010 p=0\.\d+ n\.s\.<\/td>/);
});

test("findings word each comparison once, with direction and significance", () => {
  const t = compare(runs, ["NDCG@10", "Recall@100"], { baseline: ["start", "untrained", "MLM-only"], samples: 2000 });
  const f = t.findings("NDCG@10", { runs: ["RetroMAE", "MLM-only", "start"], names: { start: "the start", untrained: "the untrained model" } });
  assert.equal(f.length, 6, f.join("\n")); // RetroMAE × 3, MLM-only × 2 (not itself), start × 1 (untrained; MLM-only already stated)
  assert.match(f[0], /^RetroMAE is above the start by 0\.1000 NDCG@10 \(p = 0\.\d{4}\): significant at 0\.05\.$/);
  assert.match(f[1], /^RetroMAE is above the untrained model by 0\.0500 NDCG@10 .*: significant at 0\.05\.$/);
  assert.match(f[3], /^MLM-only is above the start by 0\.0010 NDCG@10 .*: not significant at 0\.05\.$/);
  assert.match(f[4], /^MLM-only is below the untrained model by 0\.0490 NDCG@10 .*: significant at 0\.05\.$/);
  assert.match(f[5], /^the start is below the untrained model by 0\.0500 NDCG@10/);
  assert.throws(() => t.findings("MAP"), /"MAP" is not a column of this table \(NDCG@10, Recall@100\); name one of them\./);
  assert.throws(() => t.findings("NDCG@10", { runs: ["nobody"] }), /"nobody" is not one of the runs/);
  // one baseline keeps the compact form: p beside each mean
  const one = compare(runs, ["NDCG@10"], { baseline: "start", samples: 500 }).toString();
  assert.match(one, /^RetroMAE\s+0\.5500 \[[^\]]+\] p=0\.002\*$/m); // 500 samples: p ≥ 1/501
  assert.throws(() => compare(runs, ["NDCG@10"], { baseline: ["start", "start"] }), /name a run twice \(start, start\); name each once/);
  assert.throws(() => compare(runs, ["NDCG@10"], { baseline: ["start", "BM25"] }), /baseline "BM25" is not one of the runs/);
});

test.run();
