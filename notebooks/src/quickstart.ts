// %% [markdown]
// # RetroMAE quickstart
//
// [RetroMAE](https://aclanthology.org/2022.emnlp-main.35/) (Xiao et al., EMNLP 2022) pre-trains a BERT encoder so that its `[CLS]` embedding is good for retrieval: the encoder sees a moderately masked sentence, and a one-layer decoder must rebuild the sentence from that one embedding while seeing an aggressively masked copy.
//
// This notebook runs the whole loop on a 2-core CPU in a few minutes:
//
// 1. pick a TensorFlow.js backend;
// 2. tokenize with BERT's uncased WordPiece;
// 3. load SciFact (BEIR) and pack it into pre-training blocks;
// 4. pre-train a tiny RetroMAE with a live loss chart and a retrieval probe;
// 5. compare nDCG@10 with an MLM-only model of the same size and budget, and with BM25;
// 6. save the checkpoint in Hugging Face's layout.
//
// The next cell holds the parameters (tagged `parameters`): `npx retromae run notebooks/quickstart.ipynb -p steps=20` overrides them from the shell.

// %% tags=["parameters"]
const steps = 120;                 // optimizer steps for each model
const batchSize = 8;
const maxLength = 64;               // tokens per pre-training block
const lr = 5e-4;                    // from scratch, a short run wants more than the paper's 1e-4
const encoderMaskRatio = 0.3;       // the paper's defaults
const decoderMaskRatio = 0.5;
const probeEvery = 40;              // probe nDCG@10 every N steps during training
const probeDistractors = 700;       // SciFact documents beyond the relevant ones in the probe set
const seed = 42;
const dataDir = process.env.RETROMAE_SHARED_DATA ?? "../../shared/data";
const runDir = "runs/quickstart";

// %% [markdown]
// ## 1. Backend
//
// `backend.use("auto")` tries the GPU build of TensorFlow.js, then its CPU build (tfjs-node), then this package's native CPU backend (C++ kernels over OpenBLAS, built at install), then WebAssembly (SIMD), then plain JavaScript, and says why it skipped each one.

// %%
import { backend } from "retromae";

const choice = await backend.use("auto");
console.log(backend.describe(choice));
backend.info()

// %% [markdown]
// ## 2. Tokenizer
//
// The bert-base-uncased vocabulary and Hugging Face's `BertTokenizer` rules (lower-casing, accent stripping, WordPiece).

// %%
import { BertTokenizer } from "retromae";

const tok = BertTokenizer.bertBaseUncased();
const enc = tok.encode("RetroMAE pre-trains retrieval-oriented language models.");
enc.inputIds.map((id) => tok.vocab.token(id)).join(" ")

// %% [markdown]
// ## 3. Corpus
//
// SciFact from BEIR: 5,183 abstracts, 300 test claims with relevance judgements. The abstracts are the pre-training text, packed into blocks of up to `maxLength` tokens; the claims and judgements make the retrieval probe (the relevant abstracts plus a seeded sample of others).

// %%
import * as path from "path";
import { loadBeir, PackedCorpus, makeProbeSet, beirDocText } from "retromae";

const scifact = loadBeir(path.join(dataDir, "beir-scifact"));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const probeSet = makeProbeSet(scifact, { distractors: probeDistractors, seed });
console.log(`${scifact.corpus.size} documents -> ${corpus.size} blocks, ${corpus.tokens} tokens`);
console.log(`probe: ${probeSet.queryIds.length} queries over ${probeSet.docIds.length} documents`);

// %% [markdown]
// ## 4. RetroMAE pre-training
//
// The chart updates while the model trains: total, encoder and decoder loss, the learning rate, and nDCG@10 of the probe every `probeEvery` steps. The Jupyter interrupt button stops training cleanly after the current step; running the cell again continues.

// %%
import { RetroMAE, Trainer, LossChart, probeHook } from "retromae";

const chart = new LossChart("RetroMAE vs MLM-only, tiny, SciFact");
const common = { tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, chart, hooks: [probeHook(probeSet, probeEvery, { progress: false })] };

const retromae = new Trainer({ ...common, model: RetroMAE.create("tiny", { seed }), encoderMaskRatio, decoderMaskRatio, runDir: `${runDir}/retromae`, settings: { name: "RetroMAE" } });
const fitRetro = await retromae.fit({ steps });
fitRetro.status

// %% [markdown]
// ## 5. Baselines: MLM-only and BM25
//
// The MLM-only model has the same encoder, data, masks and number of steps; only the decoder is switched off (`decoderLossWeight = 0`), so its loss is the encoder's masked-LM loss alone. Its curves join the same chart. BM25 (k1 = 1.2, b = 0.75, English analysis) needs no training.

// %%
const mlmModel = RetroMAE.create("tiny", { seed });
mlmModel.decoderLossWeight = 0;
const mlm = new Trainer({ ...common, model: mlmModel, encoderMaskRatio, decoderMaskRatio, runDir: `${runDir}/mlm-only`, settings: { name: "MLM only" } });
const fitMlm = await mlm.fit({ steps });
fitMlm.status

// %%
import { runProbe, Bm25Index, evaluate, compare } from "retromae";

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
compare(results, ["NDCG@10", "MRR@10", "Recall@100"])

// %% [markdown]
// A few minutes of CPU pre-training from random weights does not make a good retriever: BM25 stays far ahead here, and the gap between RetroMAE and MLM-only after so few steps is small and noisy. The paper's effect needs far more compute (BERT-base, Wikipedia and BookCorpus); `notebooks/mask-ratios.ipynb` is where to compare settings, and the checkpoints below hand over to the official PyTorch trainer to scale up.

// %% [markdown]
// ## 6. Save the checkpoint
//
// A Hugging Face folder: `model.safetensors` (`bert.*`, `cls.predictions.*`, and the decoder under `c_head.*`), a `config.json` that transformers' `BertForMaskedLM` reads, and `vocab.txt`.

// %%
import { saveCheckpoint } from "retromae";
import * as fs from "fs";

await saveCheckpoint(retromae.model, `${runDir}/retromae/final`, { vocab: tok.vocab, retromae: { encoderMaskRatio, decoderMaskRatio, steps } });
fs.readdirSync(`${runDir}/retromae/final`)
