# Writes the notebooks in notebooks/ from the cell texts below (the notebooks
# are the artifacts; this script keeps their source reviewable).
# Run: python3 scripts/make-notebooks.py
import json
import pathlib

QUICKSTART = [
("md", """# RetroMAE quickstart

[RetroMAE](https://aclanthology.org/2022.emnlp-main.35/) (Xiao et al., EMNLP 2022) pre-trains a BERT encoder so that its `[CLS]` embedding is good for retrieval: the encoder sees a moderately masked sentence, and a one-layer decoder must rebuild the sentence from that one embedding while seeing an aggressively masked copy.

This notebook runs the whole loop on a 2-core CPU in a few minutes:

1. pick a TensorFlow.js backend;
2. tokenize with BERT's uncased WordPiece;
3. load SciFact (BEIR) and pack it into pre-training blocks;
4. pre-train a tiny RetroMAE with a live loss chart and a retrieval probe;
5. compare nDCG@10 with an MLM-only model of the same size and budget, and with BM25;
6. save the checkpoint in Hugging Face's layout.

The next cell holds the parameters (tagged `parameters`): `npx retromae run notebooks/quickstart.ipynb -p steps=20` overrides them from the shell."""),
("code:parameters", """const steps = 120;                 // optimizer steps for each model
const batchSize = 8;
const maxLength = 64;               // tokens per pre-training block
const lr = 5e-4;                    // from scratch, a short run wants more than the paper's 1e-4
const encoderMaskRatio = 0.3;       // the paper's defaults
const decoderMaskRatio = 0.5;
const probeEvery = 40;              // probe nDCG@10 every N steps during training
const probeDistractors = 700;       // SciFact documents beyond the relevant ones in the probe set
const seed = 42;
const dataDir = process.env.RETROMAE_SHARED_DATA ?? "../../shared/data";
const runDir = "runs/quickstart";"""),
("md", """## 1. Backend

`backend.use("auto")` tries the GPU build of TensorFlow.js, then its CPU build (tfjs-node), then this package's native CPU backend (C++ kernels over OpenBLAS, built at install), then WebAssembly (SIMD), then plain JavaScript, and says why it skipped each one."""),
("code", """import { backend } from "retromae";

const choice = await backend.use("auto");
console.log(backend.describe(choice));
backend.info()"""),
("md", """## 2. Tokenizer

The bert-base-uncased vocabulary and Hugging Face's `BertTokenizer` rules (lower-casing, accent stripping, WordPiece)."""),
("code", """import { BertTokenizer } from "retromae";

const tok = BertTokenizer.bertBaseUncased();
const enc = tok.encode("RetroMAE pre-trains retrieval-oriented language models.");
enc.inputIds.map((id) => tok.vocab.token(id)).join(" ")"""),
("md", """## 3. Corpus

SciFact from BEIR: 5,183 abstracts, 300 test claims with relevance judgements. The abstracts are the pre-training text, packed into blocks of up to `maxLength` tokens; the claims and judgements make the retrieval probe (the relevant abstracts plus a seeded sample of others)."""),
("code", """import * as path from "path";
import { loadBeir, PackedCorpus, makeProbeSet, beirDocText } from "retromae";

const scifact = loadBeir(path.join(dataDir, "beir-scifact"));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const probeSet = makeProbeSet(scifact, { distractors: probeDistractors, seed });
console.log(`${scifact.corpus.size} documents -> ${corpus.size} blocks, ${corpus.tokens} tokens`);
console.log(`probe: ${probeSet.queryIds.length} queries over ${probeSet.docIds.length} documents`);"""),
("md", """## 4. RetroMAE pre-training

The chart updates while the model trains: total, encoder and decoder loss, the learning rate, and nDCG@10 of the probe every `probeEvery` steps. The Jupyter interrupt button stops training cleanly after the current step; running the cell again continues."""),
("code", """import { RetroMAE, Trainer, LossChart, probeHook } from "retromae";

const chart = new LossChart("RetroMAE vs MLM-only, tiny, SciFact");
const common = { tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, chart, hooks: [probeHook(probeSet, probeEvery, { progress: false })] };

const retromae = new Trainer({ ...common, model: RetroMAE.create("tiny", { seed }), encoderMaskRatio, decoderMaskRatio, runDir: `${runDir}/retromae`, settings: { name: "RetroMAE" } });
const fitRetro = await retromae.fit({ steps });
fitRetro.status"""),
("md", """## 5. Baselines: MLM-only and BM25

The MLM-only model has the same encoder, data, masks and number of steps; only the decoder is switched off (`decoderLossWeight = 0`), so its loss is the encoder's masked-LM loss alone. Its curves join the same chart. BM25 (k1 = 1.2, b = 0.75, English analysis) needs no training."""),
("code", """const mlmModel = RetroMAE.create("tiny", { seed });
mlmModel.decoderLossWeight = 0;
const mlm = new Trainer({ ...common, model: mlmModel, encoderMaskRatio, decoderMaskRatio, runDir: `${runDir}/mlm-only`, settings: { name: "MLM only" } });
const fitMlm = await mlm.fit({ steps });
fitMlm.status"""),
("code", """import { runProbe, Bm25Index, evaluate, compare } from "retromae";

const retroProbe = await runProbe(retromae.model, tok, probeSet, { progress: false });
const mlmProbe = await runProbe(mlm.model, tok, probeSet, { progress: false });

const bm25 = new Bm25Index(probeSet.docIds.map((id, i): [string, string] => [id, probeSet.docTexts[i]]));
const bm25Run = new Map(probeSet.queryIds.map((q, i) => [q, new Map(bm25.search(probeSet.queryTexts[i], 100))]));
const bm25Metrics = evaluate(probeSet.qrels, bm25Run, [1, 3, 5, 10, 100]).metrics;

const results = [
  { name: `RetroMAE tiny, ${steps} steps`, metrics: retroProbe.metrics },
  { name: `MLM-only tiny, ${steps} steps`, metrics: mlmProbe.metrics },
  { name: "BM25", metrics: bm25Metrics },
];
compare(results, ["NDCG@10", "MRR@10", "Recall@100"])"""),
("md", """A few minutes of CPU pre-training from random weights does not make a good retriever: BM25 stays far ahead here, and the gap between RetroMAE and MLM-only after so few steps is small and noisy. The paper's effect needs far more compute (BERT-base, Wikipedia and BookCorpus); `notebooks/mask-ratios.ipynb` is where to compare settings, and the checkpoints below hand over to the official PyTorch trainer to scale up."""),
("md", """## 6. Save the checkpoint

A Hugging Face folder: `model.safetensors` (`bert.*`, `cls.predictions.*`, and the decoder under `c_head.*`), a `config.json` that transformers' `BertForMaskedLM` reads, and `vocab.txt`."""),
("code", """import { saveCheckpoint } from "retromae";
import * as fs from "fs";

await saveCheckpoint(retromae.model, `${runDir}/retromae/final`, { vocab: tok.vocab, retromae: { encoderMaskRatio, decoderMaskRatio, steps } });
fs.readdirSync(`${runDir}/retromae/final`)"""),
]


MASK_RATIOS = [
("md", """# Mask ratios, cell by cell

RetroMAE's central choice is *asymmetric* masking: a moderate ratio for the encoder, so the `[CLS]` embedding has most of the sentence to summarise, and an aggressive one for the decoder, so rebuilding the sentence has to lean on that embedding. The paper (Xiao et al., 2022, section 4, the ablation of mask ratios) reports encoder 0.3 / decoder 0.5 as better than symmetric masking such as 0.15 / 0.15, and better than an extreme decoder ratio such as 0.3 / 0.9.

**The question this notebook checks, at toy scale:** with the same tiny model, data and budget, does 0.3 / 0.5 give a better probe nDCG@10 than 0.15 / 0.15 and 0.3 / 0.9? Each training cell sets its own ratios; change them and re-run a cell to try another setting. All runs land on one chart and in one table."""),
("code:parameters", """const steps = 60;                  // optimizer steps per setting
const batchSize = 8;
const maxLength = 64;
const lr = 5e-4;
const probeEvery = 30;
const probeDistractors = 500;
const seed = 42;
const dataDir = process.env.RETROMAE_SHARED_DATA ?? "../../shared/data";
const runDir = "runs/mask-ratios";"""),
("md", """## Data, probe set and a shared chart

Every run uses the same packed SciFact blocks, the same probe set and the same seed, so the ratios are the only difference. `train(encoder, decoder)` pre-trains one tiny model, draws it on the shared chart (loss, and the probe's nDCG@10 every `probeEvery` steps), probes it at the end and adds a row to the results."""),
("code", """import * as path from "path";
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
console.log(`${corpus.size} blocks; probe: ${probeSet.queryIds.length} queries, ${probeSet.docIds.length} documents`);"""),
("md", """## The paper's setting: encoder 0.3, decoder 0.5"""),
("code", """const paper = await train(0.3, 0.5);"""),
("md", """## Symmetric, BERT-like masking: 0.15 / 0.15"""),
("code", """const symmetric = await train(0.15, 0.15);"""),
("md", """## An extreme decoder: 0.3 / 0.9"""),
("code", """const extreme = await train(0.3, 0.9);"""),
("md", """## All runs

The chart overlays every run's loss and probe curves; the table has each run's final probe."""),
("code", """display(chart.figure());
compare(results, ["NDCG@10", "MRR@10", "Recall@100"])"""),
("md", """At this scale (a tiny model, a minute of training each) the differences are within noise, so this is a check of the machinery and a place to start, not a replication: the paper's effect comes from BERT-base trained on Wikipedia and BookCorpus. Raise `steps` (`npx retromae run notebooks/mask-ratios.ipynb -p steps=2000`) or move to a GPU to make the comparison meaningful."""),
]

LOAD_PRETRAINED = [
("md", """# Continue RetroMAE pre-training from a Hugging Face checkpoint

Start from an existing encoder instead of random weights: `bert-base-uncased` (RetroMAE's starting point), `Shitao/RetroMAE` (the authors' pre-trained encoder), or any BERT checkpoint saved as safetensors, and continue RetroMAE pre-training on your corpus.

- With a network, `RetroMAE.fromPretrained("org/name", { revision })` downloads from the Hub into huggingface_hub's cache (`$HF_HOME`, default `~/.cache/huggingface`), honours `HF_ENDPOINT` and `HF_TOKEN`, resumes a partial download and never uses an incomplete one.
- Offline, give it a local folder (`config.json`, `model.safetensors`, optionally `vocab.txt`) or set `HF_HUB_OFFLINE=1` to use the cache.

A plain BERT checkpoint has no decoder: RetroMAE's one-layer decoder (`c_head.*`) starts fresh, as in the official code. BERT-base on a 2-core CPU takes tens of seconds per step, so the defaults below take only a few steps; on a GPU raise `steps`."""),
("code:parameters", """const source = "bert-base-uncased";   // a Hub repo id, or a local folder
const revision = "main";
const steps = 3;
const batchSize = 4;
const maxLength = 64;
const lr = 1e-4;                      // the paper's learning rate for continued pre-training
const encoderMaskRatio = 0.3;
const decoderMaskRatio = 0.5;
const seed = 42;
const dataDir = process.env.RETROMAE_SHARED_DATA ?? "../../shared/data";
const runDir = "runs/load-pretrained";"""),
("md", """## Load the checkpoint and its vocabulary"""),
("code", """import * as fs from "fs";
import * as path from "path";
import { RetroMAE, BertTokenizer, hubSnapshot } from "retromae";

const folder = await hubSnapshot(source, { revision, log: (l) => console.log(l) });
const model = await RetroMAE.fromPretrained(folder);
const vocabFile = path.join(folder, "vocab.txt");
const tok = fs.existsSync(vocabFile) ? BertTokenizer.fromFile(vocabFile) : BertTokenizer.bertBaseUncased();
console.log(`${folder}: ${model.config.numHiddenLayers} layers, hidden ${model.config.hiddenSize}, vocab ${model.config.vocabSize}`);"""),
("md", """## Continue pre-training on SciFact

The live chart shows the encoder's and the decoder's loss. A pre-trained encoder starts with a low MLM loss; the fresh decoder starts high and falls as it learns to read the `[CLS]` embedding."""),
("code", """import { PackedCorpus, Trainer, beirDocText, loadBeir } from "retromae";

const scifact = loadBeir(path.join(dataDir, "beir-scifact"));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const trainer = new Trainer({ model, tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, encoderMaskRatio, decoderMaskRatio, runDir, settings: { name: `${source} + RetroMAE` } });
const fit = await trainer.fit({ steps });
fit.lastLoss"""),
("md", """## Save, and hand over to the official trainer

The run directory holds `config.json` (every hyperparameter, the seed, the backend) and checkpoints in Hugging Face's layout. `npx retromae export-torchrun RUN_DIR` prints the `torchrun` command that continues this run with the official PyTorch trainer (staoxiao/RetroMAE) on many GPUs."""),
("code", """import { saveCheckpoint, torchrunCommand } from "retromae";

await saveCheckpoint(trainer.model, `${runDir}/final`, { vocab: tok.vocab, retromae: { encoderMaskRatio, decoderMaskRatio, source } });
console.log(torchrunCommand(runDir, { nprocPerNode: 8 }));"""),
]


def write(name, cells):
    nb = {
        "cells": [],
        "metadata": {
            "kernelspec": {"name": "retromae", "display_name": "RetroMAE (TypeScript)", "language": "typescript"},
            "language_info": {"name": "typescript", "file_extension": ".ts", "mimetype": "text/typescript"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, (kind, text) in enumerate(cells):
        lines = text.splitlines(keepends=True)
        if kind == "md":
            nb["cells"].append({"cell_type": "markdown", "id": f"md-{i}", "metadata": {}, "source": lines})
        else:
            tags = ["parameters"] if kind.endswith(":parameters") else []
            nb["cells"].append({"cell_type": "code", "id": f"code-{i}", "metadata": {"tags": tags} if tags else {}, "execution_count": None, "outputs": [], "source": lines})
    path = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / name
    path.write_text(json.dumps(nb, indent=1) + "\n")
    print(f"wrote {path}")


write("quickstart.ipynb", QUICKSTART)
write("mask-ratios.ipynb", MASK_RATIOS)
write("load-pretrained.ipynb", LOAD_PRETRAINED)
