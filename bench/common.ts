/** Shared pieces of the benchmarks: argument parsing, JSON output, the PyTorch reference. */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

export const SHARED_DATA = process.env.RETROMAE_SHARED_DATA ?? path.resolve(__dirname, "..", "..", "shared", "data");

export function option(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

export function emit(row: Record<string, unknown>): void {
  console.log(JSON.stringify(row));
}

export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

const TORCH_PYTHON = "/usr/bin/python3";

/** True when Debian's python3 has torch (python3-torch). */
export function torchAvailable(): boolean {
  if (!fs.existsSync(TORCH_PYTHON)) return false;
  return spawnSync(TORCH_PYTHON, ["-c", "import torch"], { stdio: "ignore" }).status === 0;
}

/**
 * The environments PyTorch runs in: as the machine sets it, and its best
 * setting here (OpenBLAS core detection on, freed memory kept mapped).
 */
export const TORCH_ENVS: { name: string; env: NodeJS.ProcessEnv }[] = [
  { name: "default", env: { ...process.env } },
  {
    name: "tuned",
    env: (() => {
      const e: NodeJS.ProcessEnv = { ...process.env, MALLOC_MMAP_MAX_: "0", MALLOC_TRIM_THRESHOLD_: "100000000000" };
      delete e.OPENBLAS_CORETYPE;
      delete e.OPENBLAS_L2_SIZE;
      return e;
    })(),
  },
];

/** Run a reference script under /usr/bin/python3; returns its last JSON line. */
export function runTorch(script: string, args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> {
  const r = spawnSync(TORCH_PYTHON, [path.join(__dirname, "reference", script), ...args], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`PyTorch reference ${script} failed: ${(r.stderr || "").trim().split("\n").pop()}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}
