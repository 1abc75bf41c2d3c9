// %% [markdown]
// # RetroMAE quickstart
//
// [RetroMAE](https://aclanthology.org/2022.emnlp-main.35/) (Xiao et al., EMNLP 2022) pre-trains a BERT encoder so that its `[CLS]` embedding is good for retrieval: the encoder sees a moderately masked sentence, and a one-layer decoder must rebuild the sentence from that one embedding while seeing an aggressively masked copy.
//
// The official recipe continues pre-training from a BERT that masked-language modelling already trained (`bert-base-uncased`), and asks whether RetroMAE's `[CLS]` retrieves better than the start's and than more MLM on the same data. This notebook asks the same question at a scale a 2-core CPU can run:
//
// 1. the **start**: the tiny BERT this package ships (`models/starter-tiny`, MLM on SciFact's documents and WikiText-2: domain-adapted, but it never saw a query or a judgement);
// 2. **RetroMAE** continued pre-training from it on SciFact's documents;
// 3. **MLM-only** from the same start, with the same data, steps, masks and seed (the decoder switched off);
// 4. zero-shot nDCG@10 on SciFact's test queries over the **full corpus** (5,183 documents at 512 tokens, queries at 64), as BEIR scores it, with 95% bootstrap intervals and paired randomization tests;
// 5. the baselines on every table: the untrained model, the start, BM25, and the published figures.
//
// The next cell holds the parameters (tagged `parameters`): `npx retromae run notebooks/quickstart.ipynb -p steps=300` overrides them from the shell.

// %% tags=["parameters"]
const steps = 1200;                 // optimizer steps for each model: the smallest budget measured to separate RetroMAE from both the start and MLM-only (README; 43 to 52 min end to end here)
const batchSize = 32;
const maxLength = 128;              // tokens per pre-training block
const lr = 1e-3;                    // peak lr (10% warmup, linear decay), the starter's own
const encoderMaskRatio = 0.3;       // the paper's defaults
const decoderMaskRatio = 0.5;
const probeEvery = 300;             // probe nDCG@10 every N steps during training (about 30 s per probe)
const probeDocs: number | "all" = "all"; // "all": the full corpus, as BEIR; a number: the relevant documents plus that many others
const seed = 42;
const dataset = "scifact";          // found in RETROMAE_DATA or the cache, then ../shared/data, else downloaded from BEIR's host
const runDir = "runs/quickstart";

// %% [markdown]
// ## 1. Backend
//
// `backend.use("auto")` tries the GPU build of TensorFlow.js (CUDA 11.2), then its CPU build (tfjs-node), then WebGPU through Dawn on a hardware GPU (Vulkan, Metal or D3D12), then this package's native CPU backend (C++ kernels built at install), then WebAssembly (SIMD), then plain JavaScript, and says why it skipped each one.

// %%
import { backend } from "retromae";

const choice = await backend.use("auto");
console.log(backend.describe(choice));
backend.info()

// %% [markdown]
// ## 2. Tokenizer, data and probe set
//
// The bert-base-uncased vocabulary and Hugging Face's `BertTokenizer` rules. SciFact from BEIR: 5,183 abstracts and 300 test claims with judgements. The abstracts are the pre-training text, packed into blocks of up to `maxLength` tokens; the claims and judgements make the probe.

// %%
import { BertTokenizer, resolveDataset, loadBeir, PackedCorpus, makeProbeSet, beirDocText } from "retromae";

const tok = BertTokenizer.bertBaseUncased();
const scifact = loadBeir(await resolveDataset(dataset, { log: console.log }));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const probeSet = makeProbeSet(scifact, { distractors: probeDocs, seed });
console.log(`${scifact.corpus.size} documents -> ${corpus.size} blocks, ${corpus.tokens} tokens`);
console.log(`probe: ${probeSet.queryIds.length} queries over ${probeSet.docIds.length} documents`);

// %% [markdown]
// ## 3. The start and the baselines
//
// The start's `[CLS]` is scored before any training, beside an untrained tiny BERT (random weights) and BM25 (k1 = 1.2, b = 0.75). All three become reference lines on the chart.

// %%
import { RetroMAE, loadCheckpoint, starterCheckpoint, runProbe, Bm25Index, evaluate, LossChart, PUBLISHED_SCIFACT } from "retromae";

const start = starterCheckpoint("tiny");
const startModel = loadCheckpoint(start).model;
const startProbe = await runProbe(startModel, tok, probeSet, { progress: false });
startModel.dispose();
const untrainedModel = RetroMAE.create("tiny", { seed });
const untrainedProbe = await runProbe(untrainedModel, tok, probeSet, { progress: false });
untrainedModel.dispose();

const bm25 = new Bm25Index(probeSet.docIds.map((id, i): [string, string] => [id, probeSet.docTexts[i]]));
const bm25Run = new Map(probeSet.queryIds.map((q, i) => [q, new Map(bm25.search(probeSet.queryTexts[i], 100))]));
const bm25Result = evaluate(probeSet.qrels, bm25Run, [1, 3, 5, 10, 100]);

const chart = new LossChart("RetroMAE vs MLM-only from the starter, tiny, SciFact");
chart.addReference("start", startProbe.metrics["NDCG@10"]).addReference("untrained", untrainedProbe.metrics["NDCG@10"]).addReference("BM25", bm25Result.metrics["NDCG@10"]);
console.log(`nDCG@10: start ${startProbe.metrics["NDCG@10"].toFixed(4)}, untrained ${untrainedProbe.metrics["NDCG@10"].toFixed(4)}, BM25 ${bm25Result.metrics["NDCG@10"].toFixed(4)}`);

// %% [markdown]
// ## 4. RetroMAE, continued from the start
//
// The chart updates while the model trains: the encoder's MLM loss (comparable with MLM-only's), the decoder loss, nDCG@10 every `probeEvery` steps against the reference lines, and the learning rate. The Jupyter interrupt button stops training cleanly after the current step; running the cell again continues.

// %%
import { Trainer, probeHook } from "retromae";

const common = { tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, totalSteps: steps, encoderMaskRatio, decoderMaskRatio, chart, hooks: [probeHook(probeSet, probeEvery, { progress: false })] };
const retroModel = loadCheckpoint(start).model;
const retromae = new Trainer({ ...common, model: retroModel, runDir: `${runDir}/retromae`, settings: { name: "RetroMAE" } });
const fitRetro = await retromae.fit({ steps });
fitRetro.status

// %% [markdown]
// ## 5. MLM-only, continued from the same start
//
// The same encoder, data, masks, seed and steps; only the decoder is switched off (`decoderLossWeight = 0`). Its curves join the same chart.

// %%
const mlmModel = loadCheckpoint(start).model;
mlmModel.decoderLossWeight = 0;
const mlm = new Trainer({ ...common, model: mlmModel, runDir: `${runDir}/mlm-only`, settings: { name: "MLM only" } });
const fitMlm = await mlm.fit({ steps });
fitMlm.status

// %% [markdown]
// ## 6. The comparison
//
// Each mean carries a 95% bootstrap interval over the 300 queries; p is a two-sided paired randomization test (Smucker, Allan & Carterette, 2007) against the named baseline; "n.s." marks a difference that is not significant at 0.05. The published lines are BERT-base on the full SciFact, for scale: this is a 4M-parameter model after minutes of CPU.

// %%
import { compare } from "retromae";
import * as fs from "fs";

const retroProbe = await runProbe(retromae.model, tok, probeSet, { progress: false });
const mlmProbe = await runProbe(mlm.model, tok, probeSet, { progress: false });
const runs = [
  { name: "untrained tiny", metrics: untrainedProbe.metrics, perQuery: untrainedProbe.perQuery, probeId: untrainedProbe.probeId },
  { name: "start (starter-tiny)", metrics: startProbe.metrics, perQuery: startProbe.perQuery, probeId: startProbe.probeId },
  { name: `+ RetroMAE, ${steps} steps`, metrics: retroProbe.metrics, perQuery: retroProbe.perQuery, probeId: retroProbe.probeId },
  { name: `+ MLM only, ${steps} steps`, metrics: mlmProbe.metrics, perQuery: mlmProbe.perQuery, probeId: mlmProbe.probeId },
  { name: "BM25", metrics: bm25Result.metrics, perQuery: bm25Result.perQuery, probeId: probeSet.id },
  ...PUBLISHED_SCIFACT,
];
const vsStart = compare(runs, ["NDCG@10", "MRR@10", "Recall@100"], { baseline: "start (starter-tiny)" });
const vsMlm = compare(runs, ["NDCG@10", "MRR@10", "Recall@100"], { baseline: `+ MLM only, ${steps} steps` });
display(vsStart);
vsMlm

// %% [markdown]
// What the numbers say, read off the tables above (this cell writes the sentences from the tests, so it never claims more than they show), and `results.json` beside the runs with every figure:

// %%
const cell = (table: typeof vsStart, run: string) => table.toJSON().rows.find((r) => r.name === run)!.cells["NDCG@10"]!;
const verdict = (table: typeof vsStart, run: string, base: string) => {
  const c = cell(table, run);
  const p = c.test!.p;
  const dir = c.test!.difference > 0 ? "above" : "below";
  return `${run} is ${dir} ${base} by ${Math.abs(c.test!.difference).toFixed(4)} nDCG@10 (p = ${p.toFixed(4)}): ${p < 0.05 ? "significant" : "not significant"} at 0.05.`;
};
const findings = [
  verdict(vsStart, `+ RetroMAE, ${steps} steps`, "the start"),
  verdict(vsMlm, `+ RetroMAE, ${steps} steps`, "MLM-only"),
  verdict(vsStart, `+ MLM only, ${steps} steps`, "the start"),
];
fs.writeFileSync(`${runDir}/results.json`, JSON.stringify({ settings: { steps, batchSize, maxLength, lr, encoderMaskRatio, decoderMaskRatio, seed, start, probe: probeSet.id }, vsStart: vsStart.toJSON(), vsMlmOnly: vsMlm.toJSON(), findings }, null, 1) + "\n");
findings.join("\n")

// %% [markdown]
// ## 7. Save the checkpoint
//
// A Hugging Face folder: `model.safetensors` (`bert.*`, `cls.predictions.*`, and the decoder under `c_head.*`), a `config.json` that transformers' `BertForMaskedLM` reads, and `vocab.txt`. `npx retromae export-torchrun runs/quickstart/retromae` prints the command that continues this run with the official PyTorch trainer.

// %%
import { saveCheckpoint } from "retromae";

await saveCheckpoint(retromae.model, `${runDir}/retromae/final`, { vocab: tok.vocab, retromae: { encoderMaskRatio, decoderMaskRatio, steps, start } });
fs.readdirSync(`${runDir}/retromae/final`)
