// %% [markdown]
// # Mask ratios: the paper's ablation as a grid
//
// RetroMAE's central choice is *asymmetric* masking: a moderate ratio for the encoder, so the `[CLS]` embedding has most of the sentence to summarise, and an aggressive one for the decoder, so rebuilding the sentence has to lean on that embedding. The paper (Xiao et al., 2022, the ablation of mask ratios) finds encoder 0.3 / decoder 0.5 better than BERT-like symmetric masking (0.15 / 0.15), and an aggressive decoder better than a mild one.
//
// This notebook runs that ablation at a scale a CPU can: encoder {0.15, 0.3} × decoder {0.15, 0.5, 0.9}, each with several seeds, every run continued from the same start (the shipped `starter-tiny`) with the same data and budget, probed zero-shot on SciFact. The quickstart's baselines come too: the start, an untrained model (random weights) and MLM-only (the decoder off, same seeds and budget). One chart, one table with intervals and paired tests of every setting against the paper's default (0.3 / 0.5) and against each baseline, and a cell that states which of the paper's orderings hold here, from the tests alone.
//
// With the defaults below the grid (6 settings × 3 seeds × 100 steps, then MLM-only × 3 seeds, each probed on the full corpus) takes about 45 minutes on 2 cores (45 min 48 s measured; README); `-p seeds=1 -p steps=50` gives a quick look. At this budget the quickstart's curve (README) says to expect differences of about 0.01 nDCG@10 or less, near what 300 queries can resolve, and the measured grid found none significant: the budget that separates runs is about 1,200 steps per run (`-p steps=1200`, about 9 hours for the whole grid here). The last cell says which orderings the tests support, and reports the rest as not significant.

// %% tags=["parameters"]
const steps = 100;                  // optimizer steps per run (18 runs of about 2.5 min each on 2 cores, probe included)
const seeds = 3;                    // seeds per setting (42, 43, ...)
const encoderRatios = [0.15, 0.3];
const decoderRatios = [0.15, 0.5, 0.9];
const batchSize = 32;
const maxLength = 128;
const lr = 1e-3;
const probeDocs: number | "all" = "all";
const dataset = "scifact";
const runDir = "runs/mask-ratios";

// %% [markdown]
// ## Backend
//
// `backend.use("auto")` picks a GPU where there is one (TensorFlow.js's CUDA build, or WebGPU through Dawn on a hardware adapter), else this package's native CPU backend, and says why it skipped each one. `RETROMAE_BACKEND=NAME` in the shell points it at one backend without editing the notebook.

// %%
import { backend } from "retromae";

const choice = await backend.use("auto");
console.log(backend.describe(choice));

// %% [markdown]
// ## Data, probe set, the start, and a shared chart
//
// `train(enc, dec, seed)` continues the start with RetroMAE at those ratios, draws the run on the shared chart, probes it and keeps its per-query scores for the tests.

// %%
import { BertTokenizer, resolveDataset, loadBeir, PackedCorpus, makeProbeSet, beirDocText, loadCheckpoint, starterCheckpoint, Trainer, LossChart, runProbe, compare, RetroMAE } from "retromae";
import type { RunMetrics } from "retromae";

const tok = BertTokenizer.bertBaseUncased();
const scifact = loadBeir(await resolveDataset(dataset));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const probeSet = makeProbeSet(scifact, { distractors: probeDocs, seed: 42 });
const start = starterCheckpoint("tiny");
const startModel = loadCheckpoint(start).model;
const startProbe = await runProbe(startModel, tok, probeSet, { progress: false });
startModel.dispose();
const chart = new LossChart("Mask ratios from starter-tiny, SciFact", { showLr: false });
chart.addReference("start", startProbe.metrics["NDCG@10"]);
const untrainedModel = RetroMAE.create("tiny", { seed: 42 });
const untrainedProbe = await runProbe(untrainedModel, tok, probeSet, { progress: false });
untrainedModel.dispose();
chart.addReference("untrained", untrainedProbe.metrics["NDCG@10"]);
const runs: RunMetrics[] = [
  { name: "start", metrics: startProbe.metrics, perQuery: startProbe.perQuery, probeId: startProbe.probeId },
  { name: "untrained tiny", metrics: untrainedProbe.metrics, perQuery: untrainedProbe.perQuery, probeId: untrainedProbe.probeId },
];
const label = (enc: number, dec: number | null) => (dec === null ? "MLM only" : `enc ${enc} / dec ${dec}`);

/** RetroMAE at these ratios, or MLM-only (decoderMaskRatio null: the decoder off) at the encoder's ratio. */
async function train(encoderMaskRatio: number, decoderMaskRatio: number | null, seed: number): Promise<void> {
  const group = label(encoderMaskRatio, decoderMaskRatio);
  const name = `${group}, seed ${seed}`;
  const { model } = loadCheckpoint(start);
  if (decoderMaskRatio === null) model.decoderLossWeight = 0;
  const trainer = new Trainer({
    model, tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, totalSteps: steps, encoderMaskRatio, decoderMaskRatio: decoderMaskRatio ?? 0.5, chart,
    runDir: `${runDir}/${decoderMaskRatio === null ? "mlm-only" : `enc${encoderMaskRatio}-dec${decoderMaskRatio}`}-seed${seed}`, settings: { name },
  });
  await trainer.fit({ steps });
  const probe = await runProbe(model, tok, probeSet, { progress: false });
  const i = runs.findIndex((r) => r.name === name);
  if (i >= 0) runs.splice(i, 1); // a re-run replaces its row
  runs.push({ name, group, metrics: probe.metrics, perQuery: probe.perQuery, probeId: probe.probeId });
  trainer.dispose();
  model.dispose();
}
console.log(`${corpus.size} blocks; probe: ${probeSet.queryIds.length} queries, ${probeSet.docIds.length} documents; nDCG@10: start ${startProbe.metrics["NDCG@10"].toFixed(4)}, untrained ${untrainedProbe.metrics["NDCG@10"].toFixed(4)}`);

// %% [markdown]
// ## The grid
//
// Every setting, every seed, then MLM-only (encoder 0.3, the decoder off) with the same seeds. Interrupting stops after the current step; re-running the cell redoes the grid (each finished run replaces its own row).

// %%
for (const enc of encoderRatios) for (const dec of decoderRatios) for (let s = 0; s < seeds; s++) await train(enc, dec, 42 + s);
for (let s = 0; s < seeds; s++) await train(0.3, null, 42 + s);
display(chart.figure());

// %% [markdown]
// ## The table
//
// Settings aggregate their seeds as mean ± sd; the interval is a 95% bootstrap over queries of the seed-averaged per-query scores; each "vs" column is the difference from that baseline and p, a two-sided paired randomization test: against the paper's default, the start, the untrained model and MLM-only.

// %%
const baseline = label(0.3, 0.5);
const table = compare(runs, ["NDCG@10", "Recall@100"], { baseline: [baseline, "start", "untrained tiny", "MLM only"] });
table

// %% [markdown]
// ## Which of the paper's orderings hold here
//
// Read off the table's tests, nothing more: an ordering holds when the difference has the paper's sign and p < 0.05; otherwise it is reported as not significant (or reversed).

// %%
const ndcg = (name: string) => table.toJSON().rows.find((r) => r.name === name)?.cells["NDCG@10"];
// "beats": the paper's sign and p < 0.05; "no worse": reversed only when significantly below
const claims: [string, string, string, "beats" | "no worse"][] = [
  ["0.3 / 0.5 beats symmetric 0.15 / 0.15", baseline, label(0.15, 0.15), "beats"],
  ["0.3 / 0.5 beats a mild decoder, 0.3 / 0.15", baseline, label(0.3, 0.15), "beats"],
  ["0.3 / 0.5 beats 0.15 / 0.5 (a moderate encoder ratio helps)", baseline, label(0.15, 0.5), "beats"],
  ["0.3 / 0.5 is no worse than an extreme decoder, 0.3 / 0.9", baseline, label(0.3, 0.9), "no worse"],
];
const lines = claims.map(([claim, better, worse, kind]) => {
  const other = ndcg(worse);
  if (!other?.test) return `${claim}: not run.`;
  const diff = -other.test.difference; // the baseline minus the other setting
  const p = other.test.p;
  const significant = p < 0.05;
  // A non-significant test does not show "no worse" (that needs an equivalence test), so it is reported as such.
  const verdict = !significant ? (kind === "beats" ? "not significant" : "no significant difference (not a proof of equality)") : diff > 0 ? "holds" : "reversed";
  return `${claim}: ${verdict} (${better} ${ndcg(better)!.mean.toFixed(4)} vs ${worse} ${other.mean.toFixed(4)}, p = ${p.toFixed(4)}).`;
});
// and the paper's default against each baseline, in the quickstart's words
lines.push(...table.findings("NDCG@10", { runs: [baseline, "MLM only"], names: { start: "the start", "untrained tiny": "the untrained model" } }));
lines.join("\n")
