/**
 * Checkpoints in Hugging Face's layout: a folder with
 *
 * - `model.safetensors`: `bert.*` and `cls.predictions.*` as BertForMaskedLM
 *   names them (linear weights [out, in]; the MLM decoder weight is tied to
 *   the word embeddings and not stored), and the RetroMAE decoder layer under
 *   `c_head.*`;
 * - `config.json`: what transformers' BertForMaskedLM reads, plus the RetroMAE
 *   settings under "retromae";
 * - `vocab.txt`.
 *
 * A run pretrained here loads in PyTorch, and bert-base-uncased or
 * Shitao/RetroMAE (as safetensors) load here.
 *
 * This module is the file side, as HF's modeling_utils is: config mapping,
 * reading and writing a folder's weights by name, matching them to the
 * shapes a model wants. It knows no model class; `loadCheckpoint` and
 * `saveCheckpoint` sit beside the model in retromae.ts.
 */
import * as fs from "fs";
import * as path from "path";
import { Rng } from "../engine/rng";
import type { Vocab } from "../text/vocab";
import { initialValues } from "./bert";
import { BertConfig, validateConfig, BASE_DEFAULTS } from "./config";
import { writeFileAtomic } from "../util/files";
import { NamedArray, readSafetensors, writeSafetensors } from "./safetensors";
import { CHECKPOINT_FILES, shardsOf } from "./hub";
import { readTorchBin } from "./torch-bin";

/** Settings a RetroMAE run records in config.json under "retromae". */
export type RetroMAESettings = Record<string, unknown>;

const CONFIG_FIELDS: [keyof BertConfig, string][] = [
  ["vocabSize", "vocab_size"],
  ["hiddenSize", "hidden_size"],
  ["numHiddenLayers", "num_hidden_layers"],
  ["numAttentionHeads", "num_attention_heads"],
  ["intermediateSize", "intermediate_size"],
  ["hiddenAct", "hidden_act"],
  ["hiddenDropoutProb", "hidden_dropout_prob"],
  ["attentionProbsDropoutProb", "attention_probs_dropout_prob"],
  ["maxPositionEmbeddings", "max_position_embeddings"],
  ["typeVocabSize", "type_vocab_size"],
  ["initializerRange", "initializer_range"],
  ["layerNormEps", "layer_norm_eps"],
  ["padTokenId", "pad_token_id"],
];

/** config.json content for transformers' BertForMaskedLM, with RetroMAE settings on the side. */
export function hfConfig(cfg: BertConfig, retromae: RetroMAESettings = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { architectures: ["BertForMaskedLM"], model_type: "bert" };
  for (const [ours, theirs] of CONFIG_FIELDS) out[theirs] = cfg[ours];
  out.position_embedding_type = "absolute";
  out.torch_dtype = "float32";
  out.use_cache = true;
  out.retromae = retromae;
  return out;
}

/** BertConfig from a config.json object (HF names); missing fields take BERT's defaults. */
export function configFromHf(json: Record<string, unknown>, source = "config.json"): BertConfig {
  if (json.model_type !== undefined && json.model_type !== "bert") {
    throw new Error(`${source} describes a "${String(json.model_type)}" model; only BERT checkpoints can be loaded.`);
  }
  if (json.position_embedding_type !== undefined && json.position_embedding_type !== "absolute") {
    throw new Error(`${source} uses position_embedding_type "${String(json.position_embedding_type)}"; only "absolute" is supported.`);
  }
  const cfg: Record<string, unknown> = { ...BASE_DEFAULTS };
  for (const [ours, theirs] of CONFIG_FIELDS) if (json[theirs] !== undefined) cfg[ours] = json[theirs];
  if (cfg.hiddenAct === "gelu_new" || cfg.hiddenAct === "gelu_python") {
    throw new Error(`${source} uses hidden_act "${String(cfg.hiddenAct)}"; only the exact "gelu" is supported.`);
  }
  for (const k of ["hiddenSize", "numHiddenLayers", "numAttentionHeads", "intermediateSize"]) {
    if (cfg[k] === undefined) throw new Error(`${source} has no ${k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase())}; it is not a BERT config.json.`);
  }
  const out = cfg as unknown as BertConfig;
  validateConfig(out);
  return out;
}

export interface SaveOptions {
  vocab?: Vocab;
  retromae?: RetroMAESettings;
  /** Save only the encoder (what is kept after pre-training). Default false. */
  encoderOnly?: boolean;
  /** Store weights as "F16" (half the size; loading widens them back to float32). Default "F32". */
  dtype?: "F32" | "F16";
}

/**
 * Write a Hugging Face folder from named float32 weights. Each file is
 * written atomically.
 */
export function writeCheckpointFiles(dir: string, config: BertConfig, tensors: ReadonlyMap<string, NamedArray>, options: SaveOptions = {}): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new Error(`Cannot create checkpoint folder "${dir}" (${(err as NodeJS.ErrnoException).code}); choose a writable path.`);
  }
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" }, options.dtype ?? "F32");
  const hf = hfConfig(config, options.retromae);
  if (options.dtype === "F16") hf.torch_dtype = "float16";
  writeFileAtomic(path.join(dir, "config.json"), JSON.stringify(hf, null, 2) + "\n");
  if (options.vocab) writeFileAtomic(path.join(dir, "vocab.txt"), options.vocab.toText());
}

/** What loading did beyond a one-to-one copy, as transformers reports it. */
export interface LoadReport {
  /** Our names that were not in the file and were freshly initialised (e.g. c_head.* from a plain BERT). */
  initialized: string[];
  /** Names in the file that were not used (pooler, NSP head, position_ids, the tied decoder weight). */
  unused: string[];
  /** The settings saved under "retromae" in config.json, if any. */
  retromae: RetroMAESettings;
}

/**
 * Map a checkpoint key to our name: drop the official RetroMAEForPretraining's
 * "lm." (its BertForMaskedLM), add "bert." where it is missing, gamma/beta ->
 * weight/bias. Its "decoder_embeddings.*" are the encoder's embeddings again,
 * and stay unused.
 */
function canonicalName(key: string): string {
  let k = key.replace(/\.gamma$/, ".weight").replace(/\.beta$/, ".bias").replace(/^lm\./, "");
  if (k.startsWith("embeddings.") || k.startsWith("encoder.") || k.startsWith("pooler.")) k = `bert.${k}`;
  return k;
}

export interface LoadOptions {
  /** Generator for weights the file lacks (c_head.*, cls.*). Default: seed 42. */
  rng?: Rng;
}

/** A checkpoint folder as read from disk: its config and its weights, by the names in the file. */
export interface CheckpointFiles {
  config: BertConfig;
  tensors: Map<string, NamedArray>;
  retromae: RetroMAESettings;
  weightsFile: string;
}

/** The weight files a folder may hold, in the order they are preferred (as transformers prefers them). */
export const WEIGHT_FILES = CHECKPOINT_FILES.weights;

/** One weights file: safetensors or a torch.save zip. */
function readWeightsFile(file: string): Map<string, NamedArray> {
  return file.endsWith(".bin") ? readTorchBin(file) : readSafetensors(file).tensors;
}

/** A sharded checkpoint: the index's weight_map names the shard of every weight. */
function readSharded(indexFile: string): Map<string, NamedArray> {
  const shards = shardsOf(indexFile);
  const out = new Map<string, NamedArray>();
  for (const shard of shards) {
    const file = path.join(path.dirname(indexFile), shard);
    if (!fs.existsSync(file)) throw new Error(`${indexFile} names the shard ${shard}, which is not in ${path.dirname(indexFile)}; download every shard the index lists.`);
    for (const [k, t] of readWeightsFile(file)) out.set(k, t);
  }
  return out;
}

/**
 * Read a checkpoint folder (or a weights file next to its config.json): the
 * config and the weights, nothing matched yet. Weights come from
 * model.safetensors, a sharded safetensors index, pytorch_model.bin or a
 * sharded .bin index, the first the folder has.
 */
export function readCheckpointFiles(location: string): CheckpointFiles {
  const isFile = /\.(safetensors|bin|index\.json)$/.test(location);
  const dir = isFile ? path.dirname(location) : location;
  if (!fs.existsSync(dir)) throw new Error(`Checkpoint folder "${dir}" does not exist; pass a folder with config.json and model.safetensors or pytorch_model.bin.`);
  const configFile = path.join(dir, "config.json");
  if (!fs.existsSync(configFile)) throw new Error(`Checkpoint folder "${dir}" has no config.json; it is not a Hugging Face model folder.`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(fs.readFileSync(configFile, "utf8"));
  } catch {
    throw new Error(`${configFile} is not valid JSON; restore it from the original checkpoint.`);
  }
  const weightsFile = isFile ? location : WEIGHT_FILES.map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  if (!weightsFile || !fs.existsSync(weightsFile)) throw new Error(`Checkpoint folder "${dir}" has no weights (${WEIGHT_FILES.join(", ")}).`);
  const config = configFromHf(json, configFile);
  const tensors = weightsFile.endsWith(".index.json") ? readSharded(weightsFile) : readWeightsFile(weightsFile);
  return { config, tensors, retromae: (json.retromae as RetroMAESettings | undefined) ?? {}, weightsFile };
}

/**
 * Match a checkpoint's weights to the shapes a model wants. Accepts HF
 * checkpoints without c_head (a fresh decoder), keys with or without the
 * `bert.` prefix, a missing tied `cls.predictions.decoder.weight`, and
 * leaves `position_ids` buffers and `bert.pooler.*` unused.
 */
export function matchWeights(
  files: CheckpointFiles,
  shapes: ReadonlyMap<string, number[]>,
  options: LoadOptions = {},
): { values: Map<string, Float32Array>; report: LoadReport } {
  const { config: cfg, tensors, weightsFile } = files;
  const values = new Map<string, Float32Array>();
  const unused: string[] = [];
  for (const [key, t] of tensors) {
    const name = canonicalName(key);
    const want = shapes.get(name);
    if (!want) {
      unused.push(key);
      continue;
    }
    if (t.dtype !== "F32") throw new Error(`${weightsFile}: weight "${key}" is ${t.dtype}, not a float tensor.`);
    if (want.length !== t.shape.length || want.some((d, i) => d !== t.shape[i])) {
      throw new Error(`${weightsFile}: weight "${key}" has shape [${t.shape}] but config.json implies [${want}]; the checkpoint and its config do not match.`);
    }
    values.set(name, t.data as Float32Array);
  }
  const missing = [...shapes.keys()].filter((k) => !values.has(k));
  const missingEncoder = missing.filter((k) => k.startsWith("bert."));
  if (missingEncoder.length > 0) {
    throw new Error(
      `${weightsFile} lacks ${missingEncoder.length} encoder weight(s), e.g. "${missingEncoder[0]}"; it is not a BERT checkpoint matching its config.json.`,
    );
  }
  if (missing.length > 0) {
    const fresh = initialValues(new Map(missing.map((k) => [k, shapes.get(k)!])), cfg, options.rng ?? new Rng(42));
    for (const [k, v] of fresh) values.set(k, v);
  }
  return { values, report: { initialized: missing, unused, retromae: files.retromae } };
}
