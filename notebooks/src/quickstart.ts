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
// 4. zero-shot nDCG@10 on SciFact's test queries over the **full corpus** (5,183 documents at 512 tokens, queries at 64), as BEIR scores it, with 95% bootstrap intervals and paired randomization tests of each run against **each** baseline: the start, an **untrained** model (random weights: the floor any pre-training should clear) and MLM-only;
// 5. reference lines on every table: BM25 and the published figures;
// 6. the **geometry** of each encoder's `[CLS]` (anisotropy, uniformity, alignment, effective rank), live beside nDCG@10 during training, and whether it explains the ordering.
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
const probeBatchSize = 64;          // documents per encoding batch (at up to 512 tokens); lower it if a GPU runs out of memory while probing
const seed = 42;
const dataset = "scifact";          // found in RETROMAE_DATA or the cache, then ../shared/data, else downloaded from BEIR's host
const runDir = "runs/quickstart";

// %% [markdown]
// ## 1. Backend
//
// `backend.use("auto")` tries the GPU build of TensorFlow.js (CUDA 11.2), then its CPU build (tfjs-node), then WebGPU through Dawn on a hardware GPU (Vulkan, Metal or D3D12), then this package's native CPU backend (C++ kernels built at install), then WebAssembly (SIMD), then plain JavaScript, and says why it skipped each one. `RETROMAE_BACKEND=NAME` in the shell (`webgpu`, `native`, …) points it at one backend without editing the notebook.

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
// The start's `[CLS]` is scored before any training, beside an untrained tiny BERT (random weights) and BM25 (k1 = 1.2, b = 0.75). All three become reference lines on the chart. The probes also measure the geometry of the vectors they scored (`geometry: true`).

// %%
import { RetroMAE, loadCheckpoint, starterCheckpoint, runProbe, Bm25Index, evaluate, LossChart, PUBLISHED_SCIFACT } from "retromae";

const start = starterCheckpoint("tiny");
const startModel = loadCheckpoint(start).model;
const startProbe = await runProbe(startModel, tok, probeSet, { progress: false, geometry: true, batchSize: probeBatchSize });
startModel.dispose();
const untrainedModel = RetroMAE.create("tiny", { seed });
const untrainedProbe = await runProbe(untrainedModel, tok, probeSet, { progress: false, geometry: true, batchSize: probeBatchSize });
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
// The chart updates while the model trains: the encoder's MLM loss (comparable with MLM-only's), the decoder loss, nDCG@10 every `probeEvery` steps against the reference lines, the `[CLS]` geometry at the same steps (`geometryHook`: anisotropy, the mean cosine between two documents, on the left axis; effective rank on the right; it reuses the probe's vectors), and the learning rate. The Jupyter interrupt button stops training cleanly after the current step; running the cell again continues.

// %%
import { Trainer, probeHook, geometryHook } from "retromae";

const common = { tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, totalSteps: steps, encoderMaskRatio, decoderMaskRatio, chart, hooks: [probeHook(probeSet, probeEvery, { progress: false, batchSize: probeBatchSize }), geometryHook(probeSet, probeEvery, { batchSize: probeBatchSize })] };
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
// Each mean carries a 95% bootstrap interval over the 300 queries; each "vs" column is the difference from that baseline (run minus baseline) and p, a two-sided paired randomization test (Smucker, Allan & Carterette, 2007); "n.s." marks a difference that is not significant at 0.05. The baselines are the start, the untrained model and MLM-only. The published lines are BERT-base on the full SciFact, for scale: this is a 4M-parameter model after minutes of CPU.

// %%
import { compare } from "retromae";
import * as fs from "fs";

const retroProbe = await runProbe(retromae.model, tok, probeSet, { progress: false, geometry: true, batchSize: probeBatchSize });
const mlmProbe = await runProbe(mlm.model, tok, probeSet, { progress: false, geometry: true, batchSize: probeBatchSize });
const names = { untrained: "untrained tiny", start: "start (starter-tiny)", retromae: `+ RetroMAE, ${steps} steps`, mlm: `+ MLM only, ${steps} steps` };
const probes = [[names.untrained, untrainedProbe], [names.start, startProbe], [names.retromae, retroProbe], [names.mlm, mlmProbe]] as const;
const runs = [
  ...probes.map(([name, p]) => ({ name, metrics: p.metrics, perQuery: p.perQuery, probeId: p.probeId })),
  { name: "BM25", metrics: bm25Result.metrics, perQuery: bm25Result.perQuery, probeId: probeSet.id },
  ...PUBLISHED_SCIFACT,
];
const table = compare(runs, ["NDCG@10", "Recall@100"], { baseline: [names.start, names.untrained, names.mlm] });
table

// %% [markdown]
// ### Why: the geometry of each `[CLS]`
//
// MLM-trained BERT's sentence vectors are known to crowd into a narrow cone (Ethayarajh 2019; Li et al. 2020), and contrastive or bottleneck objectives to spread them (Wang and Isola 2020). Measured on the probe's own vectors: **anisotropy** (the mean cosine between two documents; 0 is isotropic, 1 is one direction), **uniformity** (log E exp(−2‖x − y‖²) over normalised documents; lower is more spread), **alignment** (E‖x − y‖² between a query and its relevant document, normalised; lower is closer) and **effective rank** (exp of the entropy of the normalised singular values of the document matrix; at most 128 here). Kendall's τ says whether each measure orders the four encoders as nDCG@10 does; its p is exact over the 4! = 24 orderings, so the smallest possible p is 0.042.

// %%
import { geometryTable } from "retromae";

const geometry = geometryTable(probes.map(([name, p]) => ({ name, geometry: p.geometry!, score: p.metrics["NDCG@10"] })));
display(geometry);
geometry.explanation().join("\n")

// %% [markdown]
// What the numbers say, read off the tables above (this cell writes the sentences from the tests, so it never claims more than they show), and `results.json` beside the runs with every figure:

// %%
const findings = table.findings("NDCG@10", { runs: [names.retromae, names.mlm, names.start], names: { [names.start]: "the start", [names.untrained]: "the untrained model", [names.mlm]: "MLM-only" } });
const tmp = `${runDir}/results.json.tmp`;
fs.writeFileSync(tmp, JSON.stringify({ settings: { steps, batchSize, maxLength, lr, encoderMaskRatio, decoderMaskRatio, seed, start, probe: probeSet.id }, comparison: table.toJSON(), findings, geometry: geometry.toJSON(), geometryFindings: geometry.explanation() }, null, 1) + "\n");
fs.renameSync(tmp, `${runDir}/results.json`);
findings.join("\n")

// %% [markdown]
// ## 7. Save the checkpoint
//
// A Hugging Face folder: `model.safetensors` (`bert.*`, `cls.predictions.*`, and the decoder under `c_head.*`), a `config.json` that transformers' `BertForMaskedLM` reads, and `vocab.txt`. `npx retromae export-torchrun runs/quickstart/retromae` prints the command that continues this run with the official PyTorch trainer.

// %%
import { saveCheckpoint } from "retromae";

await saveCheckpoint(retromae.model, `${runDir}/retromae/final`, { vocab: tok.vocab, retromae: { encoderMaskRatio, decoderMaskRatio, steps, start } });
fs.readdirSync(`${runDir}/retromae/final`)
