/** Shared pieces of the benchmarks: argument parsing, JSON output, the PyTorch reference. */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
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

/**
 * Run `<bench>-one` in a child process per preset (so peak RSS is the
 * preset's own), then the PyTorch reference on the batch the child saved,
 * with the machine's environment and with the tuned one; emit one row per
 * preset with `ratio_vs_torch` against the better of the two.
 */
export function runPresetsAgainstTorch(bench: string, args: string[], torchExtra: string[], configFor: (preset: string) => object): void {
  const presets = (option(args, "presets") ?? "tiny,mini").split(",");
  const forward = ["steps", "batch", "seq", "backend"].flatMap((k) => (option(args, k) ? [`--${k}`, option(args, k)!] : []));
  const hasTorch = torchAvailable();
  for (const preset of presets) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${bench}-`));
    const batchFile = path.join(dir, "batch.safetensors");
    const child = spawnSync(
      process.execPath,
      ["-r", "ts-node/register/transpile-only", path.join(__dirname, "index.ts"), `${bench}-one`, "--preset", preset, "--save-batch", batchFile, ...forward],
      { encoding: "utf8", maxBuffer: 1 << 24 },
    );
    if (child.status !== 0) throw new Error(`bench ${bench} ${preset} failed: ${child.stderr.trim().split("\n").pop()}`);
    const ours = JSON.parse(child.stdout.trim().split("\n").pop()!);
    const row: Record<string, unknown> = { bench, ...ours };
    if (hasTorch) {
      const cfg = JSON.stringify(configFor(preset));
      for (const { name, env } of TORCH_ENVS) {
        row[`torch_${name}`] = runTorch("retromae_bench.py", [cfg, batchFile, "--steps", String(ours.steps), ...torchExtra], env);
      }
      const best = Math.max(...TORCH_ENVS.map(({ name }) => (row[`torch_${name}`] as { tokens_per_s: number }).tokens_per_s));
      row.ratio_vs_torch = +(ours.tokens_per_s / best).toFixed(3);
    } else {
      row.torch = "skipped: /usr/bin/python3 has no torch (apt-get install python3-torch)";
    }
    fs.rmSync(dir, { recursive: true, force: true });
    emit(row);
  }
}

/** The options every per-preset child benchmark takes, with its defaults. */
export function presetArgs(args: readonly string[], defaultSteps: number): { preset: string; steps: number; batch: number; seq: number; backend: string } {
  return {
    preset: option(args, "preset") ?? "tiny",
    steps: Number(option(args, "steps") ?? defaultSteps),
    batch: Number(option(args, "batch") ?? 16),
    seq: Number(option(args, "seq") ?? 128),
    backend: option(args, "backend") ?? "auto",
  };
}
