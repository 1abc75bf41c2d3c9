/** Shared pieces of the benchmarks: argument parsing, JSON output, the PyTorch reference. */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { RetroMAEBatch } from "../lib/masking/batch";
import { saveBatch } from "../lib/masking/batch-io";
import { NamedArray, writeSafetensors } from "../lib/model/safetensors";
import type { BertTokenizer } from "../lib/text/tokenizer";
import { encodingBatches, paddedLength } from "../lib/probe/encode";
import type { Trainer } from "../lib/train/trainer";
import { BatchStream, type PackedCorpus } from "../lib/train/data";
import { RetroMAECollator } from "../lib/masking/collator";
import { Rng } from "../lib/engine/rng";
import * as tf from "../lib/engine/tf";
import { loadAddon } from "../lib/engine/native";

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

let torchPythonFound: string | null | undefined;

/**
 * The Python that has torch: RETROMAE_TORCH_PYTHON, else the python3 on the
 * PATH (a venv or a GPU image's own, e.g. /opt/torch/.venv/bin/python3),
 * else Debian's /usr/bin/python3 (python3-torch). Null where none imports it.
 */
export function torchPython(): string | null {
  if (torchPythonFound !== undefined) return torchPythonFound;
  const candidates = process.env.RETROMAE_TORCH_PYTHON ? [process.env.RETROMAE_TORCH_PYTHON] : ["python3", "/usr/bin/python3"];
  torchPythonFound = candidates.find((py) => spawnSync(py, ["-c", "import torch"], { stdio: "ignore" }).status === 0) ?? null;
  return torchPythonFound;
}

/** True when some Python here has torch (see torchPython). */
export function torchAvailable(): boolean {
  return torchPython() !== null;
}

/** What a benchmark row says where no Python has torch. */
export const NO_TORCH = "no python3 here has torch (apt-get install python3-torch, or set RETROMAE_TORCH_PYTHON to one that has it)";

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

/** Run a reference script under torchPython(); returns its last JSON line. */
export function runTorch(script: string, args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> {
  const py = torchPython();
  if (!py) throw new Error(`PyTorch reference ${script} cannot run: ${NO_TORCH}.`);
  const r = spawnSync(py, [path.join(__dirname, "reference", script), ...args], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`PyTorch reference ${script} failed: ${(r.stderr || "").trim().split("\n").pop()}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

/**
 * The backends a preset benchmark compares: `--backend a,b` as given; a lone
 * `native` also runs wasm, the backend it replaces.
 */
export function benchBackends(args: readonly string[]): string[] {
  const list = (option(args, "backend") ?? "auto").split(",");
  return (list.length === 1 && list[0] === "native" ? ["native", "wasm"] : list).flatMap((b) => (b === "native" ? nativeGemms().map((g) => `native@${g}`) : [b]));
}

/**
 * The GEMMs the built addon can multiply with, as RETROMAE_GEMM names them:
 * OpenBLAS where the build links it, and the bundled one always, so a
 * benchmark puts both side by side. Empty where the addon is not built.
 */
export function nativeGemms(): string[] {
  const addon = loadAddon();
  if (!addon) return [];
  const current = addon.gemm();
  const out: string[] = [];
  for (const g of ["openblas", "bundled"]) {
    try {
      addon.gemm(g);
      out.push(g);
    } catch {
      // not in this build
    }
  }
  addon.gemm(current.split(" ")[0]);
  return out;
}

/** `native@bundled` -> the backend and the child's environment that picks that GEMM. */
export function backendSpec(spec: string): { backend: string; env: NodeJS.ProcessEnv } {
  const [backend, gemm] = spec.split("@");
  return { backend, env: gemm ? { ...process.env, RETROMAE_GEMM: gemm } : process.env };
}

/**
 * Run `<bench>-one` in a child process per preset and backend (so peak RSS
 * is its own), then the PyTorch reference on the batch the first child saved,
 * with the machine's environment and with the tuned one. Prints one JSON
 * line per preset and backend as it goes, with `ratio_vs_torch` against the
 * better PyTorch figure, then the whole table as one JSON array.
 */
export function runPresetsAgainstTorch(bench: string, args: string[], torchExtra: string[], configFor: (preset: string) => object): void {
  const presets = (option(args, "presets") ?? "tiny,mini").split(",");
  const forward = ["steps", "batch", "seq"].flatMap((k) => (option(args, k) ? [`--${k}`, option(args, k)!] : []));
  const hasTorch = torchAvailable();
  const table: Record<string, unknown>[] = [];
  for (const preset of presets) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${bench}-`));
    const batchFile = path.join(dir, "batch.safetensors");
    const rows: Record<string, unknown>[] = [];
    for (const spec of benchBackends(args)) {
      const { backend, env } = backendSpec(spec);
      const child = spawnSync(
        process.execPath,
        ["-r", "ts-node/register/transpile-only", path.join(__dirname, "index.ts"), `${bench}-one`, "--preset", preset, "--backend", backend, ...(rows.length === 0 ? ["--save-batch", batchFile] : []), ...forward],
        { encoding: "utf8", maxBuffer: 1 << 24, env },
      );
      if (child.status !== 0) throw new Error(`bench ${bench} ${preset} ${spec} failed: ${child.stderr.trim().split("\n").pop()}`);
      rows.push({ bench, engine: spec, ...JSON.parse(child.stdout.trim().split("\n").pop()!) });
    }
    const steps = String(rows[0].steps);
    if (hasTorch) {
      const cfg = JSON.stringify(configFor(preset));
      // the batches the first engine's timed steps used, where it saved them (batch, batch.1, ...)
      const files = [batchFile, ...Array.from({ length: Number(steps) }, (_, i) => `${batchFile}.${i + 1}`).filter((f) => fs.existsSync(f))].join(",");
      // The headline reference computes the encoder's logits at every position (HF's BertForMaskedLM);
      // the same-work one only at the masked positions, as this project's step does.
      const torchRows: Record<string, unknown>[] = [false, true].flatMap((sameWork) =>
        TORCH_ENVS.map(({ name, env }) => ({ bench, preset, engine: `torch_${name}${sameWork ? "_same_work" : ""}`, ...runTorch("retromae_bench.py", [cfg, files, "--steps", steps, ...torchExtra, ...(sameWork ? ["--same-work"] : [])], env) })),
      );
      const rate = (r: Record<string, unknown>) => (r as { tokens_per_s: number }).tokens_per_s;
      // each variant's best setting; the reference says which variant it ran
      const bestOf = (logits: string) => Math.max(...torchRows.filter((r) => r.encoder_logits === logits).map(rate));
      const best = bestOf("every position");
      const bestSameWork = bestOf("masked positions");
      for (const r of [...rows, ...torchRows]) {
        r.ratio_vs_torch = +(rate(r) / best).toFixed(3);
        r.ratio_vs_torch_same_work = +(rate(r) / bestSameWork).toFixed(3);
        // the work rate at this project's FLOP count for the step (PyTorch's full-sequence heads do more)
        const gflop = rows[0].gflop_per_step as number | undefined;
        if (gflop) r.gflop_per_s = +(gflop / ((r as { ms_per_step: number }).ms_per_step / 1000)).toFixed(1);
      }
      rows.push(...torchRows);
    } else {
      for (const r of rows) r.torch = `skipped: ${NO_TORCH}`;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    for (const r of rows) emit(r);
    table.push(...rows);
  }
  console.log(JSON.stringify(table, null, 1));
}

/** Count the FLOPs of every matrix product run on `backendName` (2·batch·M·N·K each), by wrapping its kernels. */
export function countMatmulFlops(backendName: string): { flops: number } {
  const counter = { flops: 0 };
  for (const name of [tf.BatchMatMul, tf._FusedMatMul]) {
    const k = tf.getKernel(name, backendName);
    if (!k) continue;
    tf.unregisterKernel(name, backendName);
    tf.registerKernel({
      ...k,
      kernelFunc: (argsIn) => {
        const { a, b } = argsIn.inputs as { a: TensorInfo; b: TensorInfo };
        const { transposeA, transposeB } = argsIn.attrs as unknown as { transposeA: boolean; transposeB: boolean };
        const ra = a.shape.length, rb = b.shape.length;
        const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
        const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
        const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
        const batch = Math.max(a.shape.slice(0, -2).reduce((x, y) => x * y, 1), b.shape.slice(0, -2).reduce((x, y) => x * y, 1));
        counter.flops += 2 * batch * M * N * K;
        return k.kernelFunc(argsIn);
      },
    });
  }
  return counter;
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

/**
 * Record the batches a trainer's steps use from now on (Trainer.onBatch:
 * collated on the main thread or on the collating thread), so that a
 * PyTorch reference can time the same ones. `save(file)` writes them as
 * file, file.1, file.2, ...; `stop()` ends the recording.
 */
export function recordBatches(trainer: Trainer): { save: (file: string | undefined) => void; stop: () => void } {
  const timed: RetroMAEBatch[] = [];
  trainer.onBatch = (batch) => timed.push(batch);
  return {
    save: (file) => {
      if (file) timed.forEach((b, i) => saveBatch(i === 0 ? file : `${file}.${i}`, b));
    },
    stop: () => {
      trainer.onBatch = null;
    },
  };
}

/**
 * `count` training batches collated as the trainer collates them on webgpu
 * (static shapes; its collator and batch stream over `corpus`, from
 * `seed`), saved as recordBatches saves them. For the PyTorch reference
 * where ours saved none: it failed before its timed steps (no adapter, a
 * lost device), and PyTorch still measures the same kind of batches.
 */
export function collateTrainingBatches(file: string, tok: BertTokenizer, corpus: PackedCorpus, batchSize: number, maxLength: number, count: number, seed = 1): void {
  const rng = new Rng(seed);
  const collator = new RetroMAECollator({ tokenizer: tok, rng, maxLength, staticShapes: true });
  const stream = new BatchStream(corpus, batchSize, rng.uint32());
  for (let i = 0; i < count; i++) saveBatch(i === 0 ? file : `${file}.${i}`, collator.collate(stream.next()));
}

/** fn with the environment variable `name` set to `value` (unset where undefined), then as it was. */
export async function withEnv<T>(name: string, value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

/**
 * Documents as the encoder sees them, in encodeTexts's batches (encodingBatches), padded (input_ids_N,
 * attention_mask_N) up to a multiple of `padToMultipleOf` as encodeTexts pads them (16 on webgpu, 1
 * elsewhere), for encode_bench.py: PyTorch encodes the same tokens.
 */
export function writeEncodeBatches(file: string, texts: string[], tok: BertTokenizer, batchSize: number, maxLength: number, padToMultipleOf = 1): void {
  const ids = texts.map((t) => tok.encode(t, { maxLength }).inputIds);
  const lengths = ids.map((r) => paddedLength(r.length, padToMultipleOf, maxLength));
  const tensors = new Map<string, NamedArray>();
  encodingBatches(lengths, batchSize).forEach((rows, n) => {
    const b = tok.padBatch(rows.map((i) => ids[i]), { padding: "max_length", maxLength: lengths[rows[0]] });
    tensors.set(`input_ids_${n}`, { dtype: "I32", shape: [b.batchSize, b.seqLength], data: b.inputIds });
    tensors.set(`attention_mask_${n}`, { dtype: "I32", shape: [b.batchSize, b.seqLength], data: b.attentionMask });
  });
  writeSafetensors(file, tensors);
}
