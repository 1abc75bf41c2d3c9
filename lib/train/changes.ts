/**
 * Changes to a run's settings made while it trains (from the control panel
 * or `trainer.change`), and their record: each applies from a given step,
 * and the run directory keeps every one (metrics.jsonl, and the settings
 * history, settings-history.json), so `Trainer.resume` and a replay with no
 * panel apply the same changes at the same steps and give the same losses.
 */
import * as fs from "fs";
import * as path from "path";
import { writeFileAtomic } from "../util/files";

/** The settings a running fit can change. */
export const CHANGEABLE = {
  encoderMaskRatio: "the encoder mask ratio",
  decoderMaskRatio: "the decoder mask ratio",
  lrScale: "the lr scale",
} as const;

export type ChangeField = keyof typeof CHANGEABLE;

export interface SettingChange {
  /** The first optimizer step that ran with the new value. */
  step: number;
  field: ChangeField;
  old: number;
  new: number;
  /** Who made it: "panel", "code", "replay" or "resume". */
  source: string;
  /** When it was requested (ISO time). */
  time?: string;
}

export const HISTORY_FILE = "settings-history.json";

/** One sentence when `value` is not a valid `field`, naming what is allowed; null when it is. */
export function checkChange(field: string, value: unknown, current?: number): string | null {
  const keep = current === undefined ? "" : ` and the run goes on with ${current}`;
  if (!(field in CHANGEABLE)) return `"${field}" cannot be changed during a run (${Object.keys(CHANGEABLE).join(", ")} can)${keep}.`;
  const what = CHANGEABLE[field as ChangeField];
  const v = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (field === "lrScale") {
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 100) return `${what[0].toUpperCase()}${what.slice(1)} must be a number in (0, 100]; ${JSON.stringify(value)} was refused${keep}.`;
    return null;
  }
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v >= 1) return `${what[0].toUpperCase()}${what.slice(1)} must be a number in [0, 1); ${JSON.stringify(value)} was refused${keep}.`;
  return null;
}

/** The run directory's settings history; [] when it has none. */
export function readSettingsHistory(runDir: string): SettingChange[] {
  const file = path.join(runDir, HISTORY_FILE);
  if (!fs.existsSync(file)) return [];
  let data: { changes?: SettingChange[] };
  try {
    data = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    throw new Error(`${file} is not valid JSON; restore it from the run's metrics.jsonl change rows, or delete it to replay no changes.`);
  }
  if (!data || !Array.isArray(data.changes)) throw new Error(`${file} holds no "changes" list; it is not a settings history written by this package.`);
  return data.changes;
}

/** Add one change to the history, rewriting the file atomically. */
export function appendSettingsHistory(runDir: string, change: SettingChange): void {
  fs.mkdirSync(runDir, { recursive: true });
  const changes = [...readSettingsHistory(runDir), change];
  writeFileAtomic(path.join(runDir, HISTORY_FILE), JSON.stringify({ changes }, null, 1) + "\n");
}

/** What a control panel hears from its run. */
export type RunEvent =
  | { type: "step"; step: number; loss: number; encoderLoss: number; decoderLoss: number; lr: number }
  | { type: "eval"; step: number; metrics: Record<string, number> }
  | ({ type: "change" } & SettingChange)
  | { type: "state"; state: "running" | "paused" | "stopping" | "stopped" | "done" | "error"; step: number }
  | { type: "notice"; text: string };

/** A run a control panel can steer (the Trainer). */
export interface ControllableRun {
  readonly step: number;
  readonly encoderMaskRatio: number;
  readonly decoderMaskRatio: number;
  readonly lrScale: number;
  readonly paused: boolean;
  /** Steps the schedule spans, once known. */
  readonly totalSteps: number | null;
  readonly canProbe: boolean;
  readonly canCheckpoint: boolean;
  /** Ask for a change from the next step on; throws one sentence when the value is refused. */
  change(field: ChangeField, value: number, source?: string): void;
  pause(): void;
  resume(): void;
  stopAfterStep(): void;
  probeNow(): void;
  checkpointNow(): void;
  subscribe(fn: (e: RunEvent) => void): () => void;
}
