/**
 * `npm run bench -- profile [--backend native] [--preset mini] [--warmup 4] [--batch 16] [--seq 128] [--top 25]`
 *
 * Where a training step's time goes: one Trainer step under tf.profile after
 * a warm-up, as one JSON object: the step's wall time, CPU time (user and
 * system), minor page faults, and the kernels by total time, each with its
 * input shapes. Times of "forward" entries (custom gradients) include the
 * kernels they run, so kernel times add up to more than the wall time.
 */
import * as path from "path";
import * as tf from "../lib/engine/tf";
import { use } from "../lib/engine/backend";
import { Rng } from "../lib/engine/rng";
import { NativeBackend } from "../lib/engine/native";
import { PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { emit, option, SHARED_DATA } from "./common";

export async function benchProfile(args: string[]): Promise<void> {
  const preset = (option(args, "preset") ?? "mini") as PresetName;
  const [B, L] = [Number(option(args, "batch") ?? 16), Number(option(args, "seq") ?? 128)];
  const warmup = Number(option(args, "warmup") ?? 4);
  const top = Number(option(args, "top") ?? 25);
  const choice = await use(option(args, "backend") ?? "native");
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, L, { limit: 400 });
  const rng = new Rng(1);
  const model = RetroMAE.create(preset, { rng });
  const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: B, maxLength: L, totalSteps: warmup + 2 });
  await trainer.fit({ steps: warmup, live: false });

  const before = process.resourceUsage();
  const t0 = performance.now();
  const prof = await tf.profile(async () => {
    await trainer.fit({ steps: 1, live: false });
  });
  const wallMs = performance.now() - t0;
  const after = process.resourceUsage();

  const byKernel = new Map<string, { ms: number; calls: number }>();
  const byShape = new Map<string, { ms: number; calls: number }>();
  for (const k of prof.kernels) {
    const ms = k.kernelTimeMs as number;
    for (const [map, key] of [[byKernel, k.name], [byShape, `${k.name} ${JSON.stringify(k.inputShapes)}`]] as const) {
      const e = map.get(key) ?? { ms: 0, calls: 0 };
      e.ms += ms;
      e.calls++;
      map.set(key, e);
    }
  }
  const sorted = (m: Map<string, { ms: number; calls: number }>) =>
    [...m].sort((a, b) => b[1].ms - a[1].ms).slice(0, top).map(([name, v]) => ({ name, ms: +v.ms.toFixed(1), calls: v.calls }));
  const be = tf.engine().backend;
  emit({
    bench: "profile",
    preset,
    backend: choice.backend,
    batch: B,
    seq: L,
    step_wall_ms: +wallMs.toFixed(1),
    user_cpu_ms: Math.round((after.userCPUTime - before.userCPUTime) / 1000),
    system_cpu_ms: Math.round((after.systemCPUTime - before.systemCPUTime) / 1000),
    minor_page_faults: after.minorPageFault - before.minorPageFault,
    kernels_run: prof.kernels.length,
    pool_mb: be instanceof NativeBackend ? Math.round(be.poolBytes() / 2 ** 20) : null,
    by_kernel: sorted(byKernel),
    by_kernel_and_shape: sorted(byShape),
  });
  trainer.dispose();
  model.dispose();
}
