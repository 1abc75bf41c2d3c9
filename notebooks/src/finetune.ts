// %% [markdown]
// # Fine-tuning: does the zero-shot ordering survive?
//
// The paper's claims are about encoders after fine-tuning: RetroMAE pre-trains, then each encoder is fine-tuned on the same retrieval data and compared. This notebook runs that protocol on the encoders of a quickstart run (`npm run quickstart` writes `runs/quickstart`):
//
// 1. the **start** (`models/starter-tiny`), the **untrained** tiny model (random weights, the quickstart's seed), **MLM-only** and **RetroMAE** (each run's latest checkpoint);
// 2. each scored zero-shot on SciFact's test queries over the full corpus (5,183 documents at 512 tokens, queries at 64);
// 3. each fine-tuned with the official bi_encoder recipe (`contrastiveFinetune`: every train query once per epoch with one random judged positive, in-batch negatives, AdamW with weight decay 0 and no warmup, clipping at 1, queries at 32 and passages at 128 tokens), the loss curves on one live chart;
// 4. scored again; both tables side by side, nDCG@10 and Recall@100 with 95% bootstrap intervals and paired randomization tests of every encoder against each baseline (the start, the untrained model, MLM-only);
// 5. `results.json` written beside the quickstart's.
//
// Fine-tuning the untrained model is a baseline the paper does not show: it says how much of the fine-tuned score pre-training earns at all.
//
// With the defaults below it takes about 5.5 minutes on 2 cores (5 min 22 s measured, the four fine-tunes 59 to 64 s each; README). `npx retromae run notebooks/finetune.ipynb -p run=runs/quickstart` picks another run; `-p epochs=1` is a quick look.

// %% tags=["parameters"]
const run = "runs/quickstart";     // a quickstart run directory: retromae/ and mlm-only/ with checkpoints, results.json
const epochs = 10;                 // passes over SciFact's 809 train queries (50 steps of 16 each: 500 steps)
const maxSteps = 0;                // 0: every epoch; N: stop each fine-tune after N steps (a quick look)
const batchSize = 16;
const lr = 5e-4;                   // the rate measured to work at this scale (README, "Fine-tuned")
const trainGroupSize = 1;          // passages per query: 1 = in-batch negatives only; the official default 8 adds 7 BM25 negatives
const seed = 42;                   // fine-tuning seed; the untrained model takes the quickstart's seed from its results.json when there is one
const probeDocs: number | "all" = "all";
const dataset = "scifact";

// %% [markdown]
// ## Backend, data and the four encoders
//
// The train split's queries and judgements fine-tune; the test split's score, over the full corpus as BEIR does. Each run directory gives its latest checkpoint.

// %%
import { backend, BertTokenizer, resolveDataset, loadBeir, makeProbeSet, starterCheckpoint, resolveCheckpoint, loadCheckpoint, RetroMAE } from "retromae";
import * as fs from "fs";
import * as path from "path";

const choice = await backend.use("auto");
console.log(backend.describe(choice));
if (!fs.existsSync(path.join(run, "retromae")) || !fs.existsSync(path.join(run, "mlm-only"))) {
  throw new Error(`${path.resolve(run)} is not a quickstart run (it needs retromae/ and mlm-only/ with checkpoints); run \`npm run quickstart\` first, or pass -p run=DIR.`);
}
const quickstart = fs.existsSync(path.join(run, "results.json")) ? JSON.parse(fs.readFileSync(path.join(run, "results.json"), "utf8")) : null;
const untrainedSeed: number = quickstart?.settings?.seed ?? seed;
const tok = BertTokenizer.bertBaseUncased();
const dir = await resolveDataset(dataset, { log: console.log });
const train = loadBeir(dir, "train");
const probeSet = makeProbeSet(loadBeir(dir, "test"), { distractors: probeDocs, seed });
const encoders = [
  { name: "start (starter-tiny)", load: () => loadCheckpoint(starterCheckpoint("tiny")).model, from: starterCheckpoint("tiny") },
  { name: "untrained tiny", load: () => RetroMAE.create("tiny", { seed: untrainedSeed }), from: `random init, seed ${untrainedSeed}` },
  { name: "MLM-only", load: () => loadCheckpoint(resolveCheckpoint(path.join(run, "mlm-only"))).model, from: resolveCheckpoint(path.join(run, "mlm-only")) },
  { name: "RetroMAE", load: () => loadCheckpoint(resolveCheckpoint(path.join(run, "retromae"))).model, from: resolveCheckpoint(path.join(run, "retromae")) },
];
console.log(`train: ${train.qrels.size} queries with judgements; test probe: ${probeSet.queryIds.length} queries over ${probeSet.docIds.length} documents`);
encoders.map((e) => `${e.name}: ${e.from}`).join("\n")

// %% [markdown]
// ## Zero-shot, then fine-tuned
//
// Each encoder is scored, fine-tuned and scored again; the fine-tuning losses share one chart (the contrastive loss over in-batch negatives: ln 16 ≈ 2.77 is chance). The interrupt button stops the current fine-tune after its step; its scores are then those of a shorter fine-tune, and the printed line and `results.json` say so.

// %%
import { runProbe, contrastiveFinetune, trainingQueries, LossChart } from "retromae";
import type { RunMetrics } from "retromae";

const chart = new LossChart(`Fine-tuning on SciFact train (${epochs} epochs, lr ${lr}, batch ${batchSize})`, { lossTitle: "contrastive loss", showLr: false });
const zeroShot: RunMetrics[] = [];
const tuned: RunMetrics[] = [];
const planned = maxSteps > 0 ? maxSteps : Math.floor(trainingQueries(train).length / batchSize) * epochs;
const timings: { name: string; steps: number; planned: number; finetuneSeconds: number; lossFirst10: number; lossLast10: number }[] = [];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const e of encoders) {
  const model = e.load();
  const before = await runProbe(model, tok, probeSet, { progress: false });
  const t0 = performance.now();
  const { losses, steps } = await contrastiveFinetune(model, tok, train, { epochs, ...(maxSteps > 0 ? { steps: maxSteps } : {}), batchSize, lr, trainGroupSize, seed, chart, name: e.name });
  const seconds = (performance.now() - t0) / 1000;
  const after = await runProbe(model, tok, probeSet, { progress: false });
  zeroShot.push({ name: e.name, metrics: before.metrics, perQuery: before.perQuery, probeId: before.probeId });
  tuned.push({ name: e.name, metrics: after.metrics, perQuery: after.perQuery, probeId: after.probeId });
  timings.push({ name: e.name, steps, planned, finetuneSeconds: +seconds.toFixed(1), lossFirst10: +mean(losses.slice(0, 10)).toFixed(3), lossLast10: +mean(losses.slice(-10)).toFixed(3) });
  console.log(`${e.name}: nDCG@10 ${before.metrics["NDCG@10"].toFixed(4)} -> ${after.metrics["NDCG@10"].toFixed(4)} after ${steps} steps (${seconds.toFixed(0)} s)${steps < planned ? ` (stopped early: ${planned} planned)` : ""}`);
  model.dispose();
}

// %% [markdown]
// ## The tables
//
// Left, zero-shot; right, after the same fine-tune. Each "vs" column is the difference from that baseline (run minus baseline) and p, a two-sided paired randomization test over the 300 test queries; n.s. = not significant at 0.05.

// %%
import { compare, sideBySide } from "retromae";

const baselines = ["start (starter-tiny)", "untrained tiny", "MLM-only"];
const zeroShotTable = compare(zeroShot, ["NDCG@10", "Recall@100"], { baseline: baselines });
const tunedTable = compare(tuned, ["NDCG@10", "Recall@100"], { baseline: baselines });
sideBySide([{ title: "zero-shot", value: zeroShotTable }, { title: `fine-tuned (${epochs} epochs)`, value: tunedTable }])

// %% [markdown]
// What the tests say, in sentences written from them, and `results.json` beside the quickstart's:

// %%
const names = { "start (starter-tiny)": "the start", "untrained tiny": "the untrained model" };
const findings = {
  zeroShot: zeroShotTable.findings("NDCG@10", { runs: ["RetroMAE", "MLM-only", "start (starter-tiny)"], names }),
  fineTuned: tunedTable.findings("NDCG@10", { runs: ["RetroMAE", "MLM-only", "start (starter-tiny)"], names }),
};
const out = path.join(run, "finetune-results.json");
fs.writeFileSync(`${out}.tmp`, JSON.stringify({ settings: { run, epochs, batchSize, lr, trainGroupSize, seed, untrainedSeed, backend: choice.backend, trainQueries: train.qrels.size, probe: probeSet.id, encoders: encoders.map((e) => ({ name: e.name, from: e.from })) }, timings, zeroShot: zeroShotTable.toJSON(), fineTuned: tunedTable.toJSON(), findings }, null, 1) + "\n");
fs.renameSync(`${out}.tmp`, out);
["Zero-shot:", ...findings.zeroShot, "", "Fine-tuned:", ...findings.fineTuned].join("\n")
