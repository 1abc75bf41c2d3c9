// %% [markdown]
// # Mask ratios, cell by cell
//
// RetroMAE's central choice is *asymmetric* masking: a moderate ratio for the encoder, so the `[CLS]` embedding has most of the sentence to summarise, and an aggressive one for the decoder, so rebuilding the sentence has to lean on that embedding. The paper (Xiao et al., 2022, section 4, the ablation of mask ratios) reports encoder 0.3 / decoder 0.5 as better than symmetric masking such as 0.15 / 0.15, and better than an extreme decoder ratio such as 0.3 / 0.9.
//
// **The question this notebook checks, at toy scale:** with the same tiny model, data and budget, does 0.3 / 0.5 give a better probe nDCG@10 than 0.15 / 0.15 and 0.3 / 0.9? Each training cell sets its own ratios; change them and re-run a cell to try another setting. All runs land on one chart and in one table.

// %% tags=["parameters"]
const steps = 60;                  // optimizer steps per setting
const batchSize = 8;
const maxLength = 64;
const lr = 5e-4;
const probeEvery = 30;
const probeDistractors = 500;
const seed = 42;
const dataDir = process.env.RETROMAE_SHARED_DATA ?? "../../shared/data";
const runDir = "runs/mask-ratios";

// %% [markdown]
// ## Data, probe set and a shared chart
//
// Every run uses the same packed SciFact blocks, the same probe set and the same seed, so the ratios are the only difference. `train(encoder, decoder)` pre-trains one tiny model, draws it on the shared chart (loss, and the probe's nDCG@10 every `probeEvery` steps), probes it at the end and adds a row to the results.

// %%
import * as path from "path";
import { BertTokenizer, loadBeir, PackedCorpus, makeProbeSet, beirDocText, RetroMAE, Trainer, LossChart, probeHook, runProbe, compare } from "retromae";

const tok = BertTokenizer.bertBaseUncased();
const scifact = loadBeir(path.join(dataDir, "beir-scifact"));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const probeSet = makeProbeSet(scifact, { distractors: probeDistractors, seed });
const chart = new LossChart("Mask ratios: tiny RetroMAE on SciFact");
const results: { name: string; metrics: Record<string, number> }[] = [];

async function train(encoderMaskRatio: number, decoderMaskRatio: number): Promise<Trainer> {
  const name = `enc ${encoderMaskRatio} / dec ${decoderMaskRatio}`;
  const trainer = new Trainer({
    model: RetroMAE.create("tiny", { seed }), tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr,
    encoderMaskRatio, decoderMaskRatio, chart, hooks: [probeHook(probeSet, probeEvery, { progress: false })],
    runDir: `${runDir}/enc${encoderMaskRatio}-dec${decoderMaskRatio}`, settings: { name },
  });
  await trainer.fit({ steps });
  const probe = await runProbe(trainer.model, tok, probeSet, { progress: false });
  const i = results.findIndex((r) => r.name === name);
  if (i >= 0) results.splice(i, 1); // a re-run replaces its row
  results.push({ name, metrics: probe.metrics });
  return trainer;
}
console.log(`${corpus.size} blocks; probe: ${probeSet.queryIds.length} queries, ${probeSet.docIds.length} documents`);

// %% [markdown]
// ## The paper's setting: encoder 0.3, decoder 0.5

// %%
const paper = await train(0.3, 0.5);

// %% [markdown]
// ## Symmetric, BERT-like masking: 0.15 / 0.15

// %%
const symmetric = await train(0.15, 0.15);

// %% [markdown]
// ## An extreme decoder: 0.3 / 0.9

// %%
const extreme = await train(0.3, 0.9);

// %% [markdown]
// ## All runs
//
// The chart overlays every run's loss and probe curves; the table has each run's final probe.

// %%
display(chart.figure());
compare(results, ["NDCG@10", "MRR@10", "Recall@100"])

// %% [markdown]
// At this scale (a tiny model, a minute of training each) the differences are within noise, so this is a check of the machinery and a place to start, not a replication: the paper's effect comes from BERT-base trained on Wikipedia and BookCorpus. Raise `steps` (`npx retromae run notebooks/mask-ratios.ipynb -p steps=2000`) or move to a GPU to make the comparison meaningful.
