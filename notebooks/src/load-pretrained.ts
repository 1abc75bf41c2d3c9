// %% [markdown]
// # Continue RetroMAE pre-training from a Hugging Face checkpoint
//
// Start from an existing encoder instead of random weights: `bert-base-uncased` (RetroMAE's starting point), `Shitao/RetroMAE` (the authors' pre-trained encoder), or any BERT checkpoint (`model.safetensors` or `pytorch_model.bin`, sharded or not), and continue RetroMAE pre-training on your corpus.
//
// - With a network, `RetroMAE.fromPretrained("org/name", { revision })` downloads from the Hub into huggingface_hub's cache (`$HF_HOME`, default `~/.cache/huggingface`), honours `HF_ENDPOINT` and `HF_TOKEN`, resumes a partial download and never uses an incomplete one.
// - Offline, give it a local folder (`config.json`, `model.safetensors` or `pytorch_model.bin`, optionally `vocab.txt`) or set `HF_HUB_OFFLINE=1` to use the cache.
//
// A plain BERT checkpoint has no decoder: RetroMAE's one-layer decoder (`c_head.*`) starts fresh, as in the official code. BERT-base on a 2-core CPU takes tens of seconds per step, so the defaults below take only a few steps; on a GPU raise `steps`.

// %% tags=["parameters"]
const source = "bert-base-uncased";   // a Hub repo id, or a local folder
const revision = "main";
const steps = 3;
const batchSize = 4;
const maxLength = 64;
const lr = 1e-4;                      // the paper's learning rate for continued pre-training
const encoderMaskRatio = 0.3;
const decoderMaskRatio = 0.5;
const seed = 42;
const dataset = "scifact";          // found in RETROMAE_DATA or the cache, then ../shared/data, else downloaded
const runDir = "runs/load-pretrained";

// %% [markdown]
// ## Backend
//
// `backend.use("auto")` picks a GPU where there is one (TensorFlow.js's CUDA build, or WebGPU through Dawn on a hardware adapter), else this package's native CPU backend, and says why it skipped each one. `RETROMAE_BACKEND=NAME` in the shell points it at one backend without editing the notebook.

// %%
import { backend } from "retromae";

const choice = await backend.use("auto");
console.log(backend.describe(choice));

// %% [markdown]
// ## Load the checkpoint and its vocabulary

// %%
import * as fs from "fs";
import * as path from "path";
import { RetroMAE, BertTokenizer, hubSnapshot } from "retromae";

const folder = await hubSnapshot(source, { revision, log: (l) => console.log(l) });
const model = await RetroMAE.fromPretrained(folder);
const vocabFile = path.join(folder, "vocab.txt");
const tok = fs.existsSync(vocabFile) ? BertTokenizer.fromFile(vocabFile) : BertTokenizer.bertBaseUncased();
console.log(`${folder}: ${model.config.numHiddenLayers} layers, hidden ${model.config.hiddenSize}, vocab ${model.config.vocabSize}`);

// %% [markdown]
// ## Continue pre-training on SciFact
//
// The live chart shows the encoder's and the decoder's loss. A pre-trained encoder starts with a low MLM loss; the fresh decoder starts high and falls as it learns to read the `[CLS]` embedding.

// %%
import { PackedCorpus, Trainer, beirDocText, loadBeir, resolveDataset } from "retromae";

const scifact = loadBeir(await resolveDataset(dataset));
const corpus = PackedCorpus.fromTexts([...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
const trainer = new Trainer({ model, tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, encoderMaskRatio, decoderMaskRatio, runDir, settings: { name: `${source} + RetroMAE` } });
const fit = await trainer.fit({ steps });
fit.lastLoss

// %% [markdown]
// ## Save, and hand over to the official trainer
//
// The run directory holds `config.json` (every hyperparameter, the seed, the backend) and checkpoints in Hugging Face's layout. `npx retromae export-torchrun RUN_DIR` prints the `torchrun` command that continues this run with the official PyTorch trainer (staoxiao/RetroMAE) on many GPUs. By default the export keeps the run's global batch; this demo's batch is too small to split over 8 GPUs, so it keeps the per-device batch instead (the export says what that changes), and prints what restarts.

// %%
import { saveCheckpoint, torchrunExport } from "retromae";

await saveCheckpoint(trainer.model, `${runDir}/final`, { vocab: tok.vocab, retromae: { encoderMaskRatio, decoderMaskRatio, source } });
const handOff = torchrunExport(runDir, { nprocPerNode: 8, keepPerDevice: true });
console.log([...handOff.notes, ...handOff.warnings].map((n) => `# ${n}`).join("\n"));
console.log(handOff.command);
