/**
 * `npm run bench -- train [--backend NAME[,NAME]] [--steps N] [--presets tiny,mini] [--batch 16] [--seq 128]`
 *
 * `--backend native` runs native and wasm. GFLOP/s counts the matrix
 * products of this project's step (forward and backward) and divides by
 * each engine's time, PyTorch's included.
 *
 * Full training steps through the Trainer (collate, forward, backward, clip,
 * AdamW, events) on SciFact, per preset: ms/step, steps/s, tokens/s, peak RSS,
 * and `overhead_fraction`, the share of the loop spent outside the model
 * step (data, collator, events). With torch available, the PyTorch
 * reference's full step (forward, backward, clip, AdamW) runs on the same
 * batches (the ones our timed steps used) in the same run, twice: with the
 * encoder's logits at every position (HF's BertForMaskedLM; `ratio_vs_torch`
 * compares with its best setting) and at the masked positions only, as this
 * project's step computes them (`ratio_vs_torch_same_work`).
 */
import * as path from "path";
import { use } from "../lib/engine/backend";
import { loadAddon } from "../lib/engine/native";
import { Rng } from "../lib/engine/rng";
import { hfConfig } from "../lib/model/checkpoint";
import { bertConfig, PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { countMatmulFlops, recordBatches, option, peakRssMb, presetArgs, runPresetsAgainstTorch, SHARED_DATA } from "./common";

export async function benchTrainOne(args: string[]): Promise<void> {
  const a = presetArgs(args, 4);
  const preset = a.preset as PresetName;
  const [steps, B, L] = [a.steps, a.batch, a.seq];
  const choice = await use(a.backend);
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, L, { limit: 400 });
  const rng = new Rng(1);
  const model = RetroMAE.create(preset, { rng });
  const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: B, maxLength: L, totalSteps: steps + 3 });
  // warm-up: wasm heap growth, first-touch pages, the native pool growing to the largest batch so far
  await trainer.fit({ steps: 3, live: false });
  // the batches of the timed steps, saved for the PyTorch reference to time the same ones
  const recording = recordBatches(trainer);
  let tokens = 0;
  const counter = countMatmulFlops(choice.backend);
  const r = await trainer.fit({ steps, live: false, onEvent: (e) => e.type === "step" && (tokens += e.tokens) });
  recording.save(option(args, "save-batch"));
  console.log(
    JSON.stringify({
      preset,
      backend: choice.backend,
      ...(choice.backend === "native" ? { gemm: loadAddon()?.gemm() } : {}),
      batch: B,
      seq: L,
      ms_per_step: +(r.totalMs / steps).toFixed(1),
      steps_per_s: +(steps / (r.totalMs / 1000)).toFixed(4),
      tokens_per_s: +(tokens / (r.totalMs / 1000)).toFixed(1),
      overhead_fraction: +(1 - r.modelMs / r.totalMs).toFixed(4),
      gflop_per_step: +(counter.flops / steps / 1e9).toFixed(2),
      gflop_per_s: +(counter.flops / 1e9 / (r.totalMs / 1000)).toFixed(1),
      peak_rss_mb: peakRssMb(),
      steps,
    }),
  );
}

export async function benchTrain(args: string[]): Promise<void> {
  runPresetsAgainstTorch("train", args, ["--adamw"], (preset) => hfConfig(bertConfig(preset as PresetName)));
}
