/**
 * A run directory, as transformers' Trainer lays one out:
 *
 *   RUN/config.json        every hyperparameter, the seed and the backend
 *   RUN/metrics.jsonl      one line per step, one per evaluation
 *   RUN/checkpoint-STEP/   model, optimizer moments, trainer state
 *
 * This module knows the layout (listing, the latest checkpoint, pruning);
 * what goes into a checkpoint is state.ts's.
 */
import * as fs from "fs";
import * as path from "path";
import { writeFileAtomic } from "../util/files";

const CHECKPOINT = /^checkpoint-(\d+)$/;

/** The checkpoint-N folders in a directory, oldest (lowest N) first; none if it does not exist. */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => CHECKPOINT.test(n))
    .sort((a, b) => Number(CHECKPOINT.exec(a)![1]) - Number(CHECKPOINT.exec(b)![1]))
    .map((n) => path.join(dir, n));
}

/** The newest checkpoint-N folder in a directory, or null. */
export function latestCheckpoint(dir: string): string | null {
  const all = listCheckpoints(dir);
  return all.length ? all[all.length - 1] : null;
}

export class RunDirectory {
  constructor(readonly dir: string) {}

  /** Write config.json (atomically), creating the folder. */
  writeConfig(config: Record<string, unknown>): void {
    fs.mkdirSync(this.dir, { recursive: true });
    writeFileAtomic(path.join(this.dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  }

  /** Append one JSON line to metrics.jsonl. */
  appendMetrics(row: Record<string, unknown>): void {
    fs.appendFileSync(path.join(this.dir, "metrics.jsonl"), JSON.stringify(row) + "\n");
  }

  checkpoints(): string[] {
    return listCheckpoints(this.dir);
  }

  latest(): string | null {
    return latestCheckpoint(this.dir);
  }

  /**
   * Where checkpoint STEP is built, and a function that moves it into
   * place: the folder is written under a temporary name and renamed, so a
   * crash never leaves a half-written checkpoint.
   */
  beginCheckpoint(step: number): { tmp: string; commit: () => string } {
    fs.mkdirSync(this.dir, { recursive: true });
    const final = path.join(this.dir, `checkpoint-${step}`);
    const tmp = path.join(this.dir, `.tmp-checkpoint-${step}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    return {
      tmp,
      commit: () => {
        fs.rmSync(final, { recursive: true, force: true });
        fs.renameSync(tmp, final);
        return final;
      },
    };
  }

  /** Remove all but the newest `keepLast` checkpoints. */
  prune(keepLast: number): void {
    const all = this.checkpoints();
    for (const old of all.slice(0, Math.max(0, all.length - keepLast))) fs.rmSync(old, { recursive: true, force: true });
  }
}

/** A checkpoint folder itself, or a run directory's latest checkpoint; one sentence when there is none. */
export function resolveCheckpoint(location: string, marker = "trainer_state.json"): string {
  if (fs.existsSync(path.join(location, marker))) return location;
  const latest = latestCheckpoint(location);
  if (!latest) throw new Error(`"${location}" holds no checkpoint (no ${marker}, no checkpoint-N folder); pass a run directory or a checkpoint folder.`);
  return latest;
}
