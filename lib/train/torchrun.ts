/**
 * The scale-out path: a run's hyperparameters and its latest checkpoint,
 * handed to an official PyTorch trainer under torchrun:
 *
 * - "retromae": staoxiao/RetroMAE, src/pretrain (`-m pretrain.run`). Its
 *   `--pretrain_method` (retromae | dupmae) and `--bow_loss_weight` exist
 *   from commit 264346f ("v2 code") on; the flags here are those of
 *   ee37587, its newest commit.
 * - "flagembedding": FlagOpen/FlagEmbedding's retromae_pretrain
 *   (`-m FlagEmbedding.baai_general_embedding.retromae_pretrain.run`): data
 *   from `--train_data` (a jsonl of {"text": ...}), no `--pretrain_method`,
 *   RetroMAE only.
 *
 * Both take transformers' TrainingArguments beside their own. The export
 * keeps the run's meaning: the same masks, lr, warmup, sequence length and
 * global batch; it refuses runs that the official trainers cannot express.
 */
import * as fs from "fs";
import * as path from "path";
import { latestCheckpoint } from "./run-dir";

/** The official code bases an export can target. */
export type TorchrunFlavour = "retromae" | "flagembedding";

export interface TorchrunOptions {
  /** Processes (GPUs) per node. Default 8, as in the official example. */
  nprocPerNode?: number;
  /** staoxiao/RetroMAE (default) or FlagEmbedding. */
  flavour?: TorchrunFlavour;
  /** retromae: the folder preprocess.py wrote. flagembedding: the jsonl file. */
  dataDir?: string;
  outputDir?: string;
  /** Passes over the data. Default 8, as in the official example. */
  epochs?: number;
  /**
   * The global batch (per device × processes × accumulation) stays the
   * run's by default. `keepPerDevice` keeps the run's per-device batch
   * instead, which multiplies the global batch by the processes with the
   * lr unchanged.
   */
  keepPerDevice?: boolean;
}

export interface TorchrunExport {
  /** The command line, ready for a shell. */
  command: string;
  /** The data preparation it pairs with (retromae flavour), or null. */
  preprocess: string | null;
  /** What does not carry over, and what the command assumes. */
  notes: string[];
  /** Where the official run would differ from this one, with the numbers. */
  warnings: string[];
  /** Every flag emitted, name → value, for checks. */
  flags: Map<string, string>;
}

/** The parts of Trainer's config.json the command needs. */
interface RunConfig {
  seed?: number | null;
  batchSize?: number;
  maxLength?: number;
  gradAccumulation?: number;
  encoderMaskRatio?: number;
  decoderMaskRatio?: number;
  bowLossWeight?: number;
  decoderLossWeight?: number;
  maxGradNorm?: number;
  optimizer?: { lr?: number; weightDecay?: number; betas?: number[]; eps?: number };
  schedule?: { totalSteps?: number; warmupSteps?: number | null; warmupRatio?: number | null; decay?: string };
}

/** The official commits the flags were read from. */
export const OFFICIAL_TARGETS: Record<TorchrunFlavour, { repo: string; commit: string; module: string; note: string }> = {
  retromae: { repo: "https://github.com/staoxiao/RetroMAE", commit: "ee37587", module: "pretrain.run", note: "from src/; --pretrain_method needs commit 264346f or later" },
  flagembedding: { repo: "https://github.com/FlagOpen/FlagEmbedding", commit: "46f335b", module: "FlagEmbedding.baai_general_embedding.retromae_pretrain.run", note: "pip install FlagEmbedding; RetroMAE only" },
};

/** preprocess.py's default --max_seq_length, which the official example's data uses. */
const PREPROCESS_DEFAULT_LENGTH = 512;

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

function readRunConfig(runDir: string): RunConfig {
  const configFile = path.join(runDir, "config.json");
  if (!fs.existsSync(configFile)) throw new Error(`${runDir} has no config.json; pass a run directory written by Trainer (runDir option).`);
  try {
    return JSON.parse(fs.readFileSync(configFile, "utf8"));
  } catch {
    throw new Error(`${configFile} is not valid JSON; it was not written by Trainer, or it was edited.`);
  }
}

/** The warmup as the official trainer takes it: a ratio when the run used one, else steps. */
function warmupFlag(schedule: RunConfig["schedule"]): [string, number] {
  const s = schedule ?? {};
  if (typeof s.warmupRatio === "number") return ["warmup_ratio", s.warmupRatio];
  if (typeof s.warmupSteps === "number" && typeof s.totalSteps === "number" && s.totalSteps > 0) {
    // configs written before warmupRatio was recorded: the run's own fraction, exactly
    return ["warmup_ratio", +(s.warmupSteps / s.totalSteps).toPrecision(6)];
  }
  if (typeof s.warmupSteps === "number") return ["warmup_steps", s.warmupSteps];
  return ["warmup_ratio", 0.1];
}

/** The batch flags that keep the run's global batch over `nproc` processes. */
function batchFlags(config: RunConfig, nproc: number, keepPerDevice: boolean): { perDevice: number; accumulation: number; global: number } {
  const batch = config.batchSize ?? 32;
  const accumulation = config.gradAccumulation ?? 1;
  const global = batch * accumulation;
  if (keepPerDevice) return { perDevice: batch, accumulation, global: batch * accumulation * nproc };
  if (global % nproc === 0) {
    const share = global / nproc;
    // keep the run's accumulation when it still divides the per-process share
    if (share % accumulation === 0) return { perDevice: share / accumulation, accumulation, global };
    return { perDevice: share, accumulation: 1, global };
  }
  const fits = [1, 2, 4, 8].filter((n) => global % n === 0 && n <= global);
  throw new Error(
    `The run's global batch of ${global} does not split evenly over ${nproc} processes; pass --nproc ${fits[fits.length - 1]} (or another divisor of ${global}), or --keep-per-device for a global batch of ${global * nproc} at the same lr.`,
  );
}

/** The torchrun command (and what goes with it) that continues RUN_DIR's pre-training with an official trainer. */
export function torchrunExport(runDir: string, options: TorchrunOptions = {}): TorchrunExport {
  const config = readRunConfig(runDir);
  const flavour = options.flavour ?? "retromae";
  if (!(flavour in OFFICIAL_TARGETS)) throw new Error(`Unknown flavour "${flavour}"; use retromae (staoxiao/RetroMAE) or flagembedding.`);
  const newest = latestCheckpoint(runDir);
  if (!newest) throw new Error(`${runDir} has no checkpoint-N folder yet; train with checkpointEvery or let fit finish, then export.`);
  const latest = path.resolve(newest);

  const decoderWeight = config.decoderLossWeight ?? 1;
  const bow = config.bowLossWeight ?? 0;
  if (decoderWeight === 0) throw new Error(`${runDir} is an MLM-only run (decoderLossWeight 0); the official trainers always train the decoder, so it cannot be exported as RetroMAE. Continue it here, or with transformers' run_mlm.py.`);
  if (decoderWeight !== 1) throw new Error(`${runDir} weights the decoder loss by ${decoderWeight}; the official trainers add it with weight 1, so the export would change the run. Export a run with decoderLossWeight 1.`);
  if (bow > 0 && flavour === "flagembedding") throw new Error(`${runDir} is a DupMAE run (bowLossWeight ${bow}); FlagEmbedding's retromae_pretrain has no DupMAE. Export with the retromae flavour (staoxiao/RetroMAE).`);

  const nproc = options.nprocPerNode ?? 8;
  if (!Number.isInteger(nproc) || nproc < 1) throw new Error(`--nproc must be a whole number ≥ 1, got ${nproc}.`);
  const { perDevice, accumulation, global } = batchFlags(config, nproc, options.keepPerDevice ?? false);
  const maxLength = config.maxLength ?? 512;
  const opt = config.optimizer ?? {};
  const schedule = config.schedule ?? {};
  const [warmupName, warmupValue] = warmupFlag(schedule);
  const target = OFFICIAL_TARGETS[flavour];

  const args: [string, string | number | undefined][] = [
    ["output_dir", options.outputDir ?? `${path.resolve(runDir)}-torch`],
    flavour === "retromae" ? ["data_dir", options.dataDir ?? "pretrain_data/bert_data"] : ["train_data", options.dataDir ?? "pretrain_data.jsonl"],
    ["do_train", "True"],
    ["model_name_or_path", latest],
    ...(flavour === "retromae" ? ([["pretrain_method", bow > 0 ? "dupmae" : "retromae"]] as [string, string][]) : []),
    ...(bow > 0 ? ([["bow_loss_weight", bow]] as [string, number][]) : []),
    ["max_seq_length", maxLength],
    ["per_device_train_batch_size", perDevice],
    ["gradient_accumulation_steps", accumulation],
    ["learning_rate", opt.lr],
    ["weight_decay", opt.weightDecay],
    ["adam_beta1", opt.betas?.[0]],
    ["adam_beta2", opt.betas?.[1]],
    ["adam_epsilon", opt.eps],
    ["max_grad_norm", config.maxGradNorm],
    [warmupName, warmupValue],
    ["lr_scheduler_type", schedule.decay === "cosine" ? "cosine" : schedule.decay === "constant" ? "constant_with_warmup" : "linear"],
    ["num_train_epochs", options.epochs ?? 8],
    ["encoder_mlm_probability", config.encoderMaskRatio],
    ["decoder_mlm_probability", config.decoderMaskRatio],
    ["seed", config.seed ?? 42],
    ["save_steps", 20000],
    ["fp16", "True"],
    ["dataloader_num_workers", 6],
    ["overwrite_output_dir", "True"],
  ];
  const flags = new Map<string, string>();
  for (const [k, v] of args) if (v !== undefined && v !== null) flags.set(k, String(v));
  const lines = [`torchrun --nproc_per_node ${nproc} -m ${target.module}`];
  for (const [k, v] of flags) lines.push(`  --${k} ${shellQuote(v)}`);

  const notes = [
    `Targets ${target.repo} at commit ${target.commit} (${target.note}).`,
    `Global batch ${global} = ${perDevice} per device × ${nproc} processes × ${accumulation} accumulation${options.keepPerDevice ? `, ${nproc} times the run's ${(config.batchSize ?? 32) * (config.gradAccumulation ?? 1)} at the same lr` : ", as in this run"}.`,
    "What restarts: the decoder (c_head; the official from_pretrained loads the encoder and its MLM head and builds a new c_head), the AdamW moments, and the lr schedule (warmup again, over the official run's own steps).",
  ];
  const warnings: string[] = [];
  let preprocess: string | null = null;
  if (flavour === "retromae") {
    preprocess = `python examples/pretrain/preprocess.py --data bert_data --tokenizer_name ${shellQuote(latest)} --max_seq_length ${maxLength} --output_dir ${shellQuote(options.dataDir ?? "pretrain_data/bert_data")}`;
    if (maxLength !== PREPROCESS_DEFAULT_LENGTH) {
      warnings.push(`This run trained on ${maxLength}-token blocks; data preprocessed with preprocess.py's default --max_seq_length ${PREPROCESS_DEFAULT_LENGTH} would be cut to ${maxLength} tokens per block by the collator, dropping about ${Math.round((1 - (maxLength - 2) / (PREPROCESS_DEFAULT_LENGTH - 2)) * 100)}% of each block; preprocess with --max_seq_length ${maxLength} as shown.`);
    }
  }
  return { command: lines.join(" \\\n"), preprocess, notes, warnings, flags };
}

/** The torchrun command line alone (see torchrunExport). */
export function torchrunCommand(runDir: string, options: TorchrunOptions = {}): string {
  return torchrunExport(runDir, options).command;
}
