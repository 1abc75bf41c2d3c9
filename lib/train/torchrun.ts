/**
 * The scale-out path: a run's hyperparameters and its latest checkpoint,
 * handed to the official PyTorch trainer (staoxiao/RetroMAE, src/pretrain)
 * under torchrun (its README launches with torch.distributed.launch, which
 * torchrun replaces). Its flags are transformers' TrainingArguments plus
 * RetroMAE's own (pretrain_method, encoder/decoder_mlm_probability).
 */
import * as fs from "fs";
import * as path from "path";
import { latestCheckpoint } from "./run-dir";

export interface TorchrunOptions {
  /** Processes (GPUs) per node. Default 8, as in the official example. */
  nprocPerNode?: number;
  /** The data prepared by the official preprocess.py. */
  dataDir?: string;
  outputDir?: string;
  /** Passes over the data. Default 8, as in the official example. */
  epochs?: number;
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
  maxGradNorm?: number;
  optimizer?: { lr?: number; weightDecay?: number; betas?: number[]; eps?: number };
  schedule?: { warmupRatio?: number; decay?: string };
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

/** The torchrun command line that continues RUN_DIR's pre-training with the official trainer. */
export function torchrunCommand(runDir: string, options: TorchrunOptions = {}): string {
  const configFile = path.join(runDir, "config.json");
  if (!fs.existsSync(configFile)) throw new Error(`${runDir} has no config.json; pass a run directory written by Trainer (runDir option).`);
  let config: RunConfig;
  try {
    config = JSON.parse(fs.readFileSync(configFile, "utf8"));
  } catch {
    throw new Error(`${configFile} is not valid JSON; it was not written by Trainer, or it was edited.`);
  }
  const newest = latestCheckpoint(runDir);
  const latest = newest ? path.resolve(newest) : null;
  if (!latest) throw new Error(`${runDir} has no checkpoint-N folder yet; train with checkpointEvery or let fit finish, then export.`);
  const opt = config.optimizer ?? {};
  const schedule = config.schedule ?? {};
  const method = (config.bowLossWeight ?? 0) > 0 ? "dupmae" : "retromae";
  const args: [string, string | number | undefined][] = [
    ["output_dir", options.outputDir ?? `${path.resolve(runDir)}-torch`],
    ["data_dir", options.dataDir ?? "pretrain_data/bert_data"],
    ["do_train", "True"],
    ["model_name_or_path", latest],
    ["pretrain_method", method],
    ["max_seq_length", config.maxLength],
    ["per_device_train_batch_size", config.batchSize],
    ["gradient_accumulation_steps", config.gradAccumulation ?? 1],
    ["learning_rate", opt.lr],
    ["weight_decay", opt.weightDecay],
    ["adam_beta1", opt.betas?.[0]],
    ["adam_beta2", opt.betas?.[1]],
    ["adam_epsilon", opt.eps],
    ["max_grad_norm", config.maxGradNorm],
    ["warmup_ratio", schedule.warmupRatio ?? 0.1],
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
  const lines = [`torchrun --nproc_per_node ${options.nprocPerNode ?? 8} -m pretrain.run`];
  for (const [k, v] of args) if (v !== undefined && v !== null) lines.push(`  --${k} ${shellQuote(String(v))}`);
  return lines.join(" \\\n");
}
