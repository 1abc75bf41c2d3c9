/**
 * `npm run bench -- train [--backend NAME] [--steps N] [--presets tiny,mini] [--batch 16] [--seq 128]`
 *
 * Full training steps through the Trainer (collate, forward, backward, clip,
 * AdamW, events) on SciFact, per preset: ms/step, steps/s, tokens/s, peak RSS,
 * and `overhead_fraction`, the share of the loop spent outside the model
 * step (data, collator, events). With torch available, the PyTorch
 * reference's full step (forward, backward, clip, AdamW) runs on the same
 * batch in the same run, and `ratio_vs_torch` compares with its best setting.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { use } from "../lib/engine/backend";
import { Rng } from "../lib/engine/rng";
import { saveBatch } from "../lib/masking/batch-io";
import { hfConfig } from "../lib/model/checkpoint";
import { bertConfig, PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { emit, option, peakRssMb, runTorch, SHARED_DATA, torchAvailable, TORCH_ENVS } from "./common";

export async function benchTrainOne(args: string[]): Promise<void> {
  const preset = (option(args, "preset") ?? "tiny") as PresetName;
  const steps = Number(option(args, "steps") ?? 4);
  const B = Number(option(args, "batch") ?? 16);
  const L = Number(option(args, "seq") ?? 128);
  const choice = await use(option(args, "backend") ?? "auto");
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, L, { limit: 400 });
  const rng = new Rng(1);
  const model = RetroMAE.create(preset, { rng });
  const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: B, maxLength: L, totalSteps: steps + 1 });
  const batchFile = option(args, "save-batch");
  if (batchFile) {
    // the batch the torch reference times: collated from the same corpus with a separate generator
    const probe = new Trainer({ model, tokenizer: tok, data: corpus, rng: new Rng(2), batchSize: B, maxLength: L });
    saveBatch(batchFile, probe.collator.collate(probe.stream.next()));
    probe.dispose();
  }
  await trainer.fit({ steps: 1, live: false }); // warm-up: wasm heap growth, first-touch pages
  let tokens = 0;
  const r = await trainer.fit({ steps, live: false, onEvent: (e) => e.type === "step" && (tokens += e.tokens) });
  console.log(
    JSON.stringify({
      preset,
      backend: choice.backend,
      batch: B,
      seq: L,
      ms_per_step: +(r.totalMs / steps).toFixed(1),
      steps_per_s: +(steps / (r.totalMs / 1000)).toFixed(4),
      tokens_per_s: +(tokens / (r.totalMs / 1000)).toFixed(1),
      overhead_fraction: +(1 - r.modelMs / r.totalMs).toFixed(4),
      peak_rss_mb: peakRssMb(),
      steps,
    }),
  );
}

export async function benchTrain(args: string[]): Promise<void> {
  const presets = (option(args, "presets") ?? "tiny,mini").split(",") as PresetName[];
  const forward = ["steps", "batch", "seq", "backend"].flatMap((k) => (option(args, k) ? [`--${k}`, option(args, k)!] : []));
  const hasTorch = torchAvailable();
  for (const preset of presets) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-train-"));
    const batchFile = path.join(dir, "batch.safetensors");
    const child = spawnSync(
      process.execPath,
      ["-r", "ts-node/register/transpile-only", path.join(__dirname, "index.ts"), "train-one", "--preset", preset, "--save-batch", batchFile, ...forward],
      { encoding: "utf8", maxBuffer: 1 << 24 },
    );
    if (child.status !== 0) throw new Error(`bench train ${preset} failed: ${child.stderr.trim().split("\n").pop()}`);
    const ours = JSON.parse(child.stdout.trim().split("\n").pop()!);
    const row: Record<string, unknown> = { bench: "train", ...ours };
    if (hasTorch) {
      const cfg = JSON.stringify(hfConfig(bertConfig(preset)));
      for (const { name, env } of TORCH_ENVS) {
        row[`torch_${name}`] = runTorch("retromae_bench.py", [cfg, batchFile, "--steps", String(ours.steps), "--adamw"], env);
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
