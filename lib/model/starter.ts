/**
 * The offline starting checkpoints this package ships (models/starter-*):
 * BERTs pre-trained with MLM by scripts/make-starter.ts on SciFact's
 * documents and WikiText-2, for where the official recipe starts from a Hub
 * BERT and there is no network. Each folder holds the weights (fp16), the
 * config, the vocabulary, the run's own config (training.json) and its
 * loss curve (metrics.jsonl).
 */
import * as fs from "fs";
import * as path from "path";
import { PACKAGE_ROOT } from "../util/files";
import type { PresetName } from "./config";

/** The folder of the shipped starter for a preset. */
export function starterCheckpoint(preset: PresetName = "tiny"): string {
  const dir = path.join(PACKAGE_ROOT, "models", `starter-${preset}`);
  if (!fs.existsSync(path.join(dir, "model.safetensors"))) {
    throw new Error(`No starter checkpoint for the ${preset} preset in ${path.dirname(dir)}; this package ships starter-tiny, and \`npm run starter -- --preset ${preset}\` builds others.`);
  }
  return dir;
}
