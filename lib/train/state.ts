/**
 * What a training checkpoint holds beyond the model (model/checkpoint.ts):
 * the AdamW moments (optimizer.safetensors, torch's exp_avg / exp_avg_sq
 * names) and the trainer state (trainer_state.json: step, the generator's
 * state, the data position, the schedule and the options), and reading
 * them back for resume.
 */
import * as fs from "fs";
import * as path from "path";
import type { RngState } from "../engine/rng";
import { NamedArray, readSafetensors, writeSafetensors } from "../model/safetensors";
import { writeFileAtomic } from "../util/files";
import type { DataPosition } from "./data";
import type { AdamWState } from "./optim";

/** Saved with each checkpoint; what resume needs beyond the weights and moments. */
export interface TrainerState {
  step: number;
  rng: RngState;
  dataSeed: number;
  position: DataPosition;
  totalSteps: number | null;
  warmupSteps: number | null;
  options: Record<string, unknown>;
}

/** Write optimizer.safetensors and trainer_state.json into a checkpoint folder. */
export function writeTrainingState(dir: string, optimizer: AdamWState, shapes: ReadonlyMap<string, readonly number[]>, state: TrainerState): void {
  const moments = new Map<string, NamedArray>();
  for (const [name, m] of optimizer.m) moments.set(`exp_avg.${name}`, { dtype: "F32", shape: [...shapes.get(name)!], data: m });
  for (const [name, v] of optimizer.v) moments.set(`exp_avg_sq.${name}`, { dtype: "F32", shape: [...shapes.get(name)!], data: v });
  writeSafetensors(path.join(dir, "optimizer.safetensors"), moments, { step: String(optimizer.step) });
  writeFileAtomic(path.join(dir, "trainer_state.json"), JSON.stringify(state, null, 2) + "\n");
}

/** Read a checkpoint folder's trainer state and optimizer moments; one sentence when either is missing. */
export function readTrainingState(dir: string): { state: TrainerState; optimizer: AdamWState } {
  const stateFile = path.join(dir, "trainer_state.json");
  let state: TrainerState;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, "utf8"));
  } catch {
    throw new Error(`${stateFile} is missing or not valid JSON; the checkpoint is incomplete.`);
  }
  const optFile = path.join(dir, "optimizer.safetensors");
  if (!fs.existsSync(optFile)) throw new Error(`${optFile} is missing; the checkpoint is incomplete.`);
  const { tensors, metadata } = readSafetensors(optFile);
  const pick = (prefix: string) => new Map([...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t.data as Float32Array]));
  return { state, optimizer: { step: Number(metadata.step ?? state.step), m: pick("exp_avg."), v: pick("exp_avg_sq.") } };
}
