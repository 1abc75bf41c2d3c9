/**
 * `npm run bench -- model [--backend NAME] [--steps N] [--presets tiny,mini] [--batch 16] [--seq 128]`
 *
 * One RetroMAE forward+backward step (no optimizer) on SciFact text, per
 * preset: ms/step, tokens/s (non-padding tokens), peak RSS. When
 * a python3 has torch (torchPython), the same batch runs through the PyTorch
 * reference in the same run, with the machine's environment and with
 * PyTorch's best setting here, and `ratio_vs_torch` compares with the best.
 * Each preset runs in its own child process, so peak RSS is its own.
 */
import * as fs from "fs";
import * as path from "path";
import * as tf from "../lib/engine/tf";
import { use } from "../lib/engine/backend";
import { loadAddon } from "../lib/engine/native";
import { Rng } from "../lib/engine/rng";
import { saveBatch } from "../lib/masking/batch-io";
import { RetroMAECollator } from "../lib/masking/collator";
import { hfConfig } from "../lib/model/checkpoint";
import { bertConfig, PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { BertTokenizer } from "../lib/text/tokenizer";
import { option, peakRssMb, presetArgs, runPresetsAgainstTorch, SHARED_DATA } from "./common";

function scifactTexts(n: number): string[] {
  const lines = fs.readFileSync(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), "utf8").split("\n");
  return lines.slice(0, n).map((l) => {
    const d = JSON.parse(l) as { title: string; text: string };
    return `${d.title} ${d.text}`;
  });
}

/** Child process: time our step for one preset, print one JSON line. */
export async function benchModelOne(args: string[]): Promise<void> {
  const a = presetArgs(args, 3);
  const preset = a.preset as PresetName;
  const [steps, B, L] = [a.steps, a.batch, a.seq];
  const choice = await use(a.backend);
  const rng = new Rng(1);
  const tok = BertTokenizer.bertBaseUncased();
  const collator = new RetroMAECollator({ tokenizer: tok, rng, maxLength: L });
  const model = RetroMAE.create(preset, { rng });
  const texts = scifactTexts(B * (steps + 1));
  const batches = Array.from({ length: steps + 1 }, (_, s) => collator.collate(texts.slice(s * B, s * B + B)));
  const batchFile = option(args, "save-batch");
  if (batchFile) saveBatch(batchFile, batches[1]);
  const times: number[] = [];
  let tokens = 0;
  for (let s = 0; s <= steps; s++) {
    const t = performance.now();
    const { grads } = await model.forwardBackward(batches[s], { training: true, rng });
    tf.dispose([...grads.values()]);
    if (s > 0) {
      times.push(performance.now() - t);
      tokens += batches[s].lengths.reduce((a, b) => a + b, 0);
    }
  }
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)];
  const meanTokens = tokens / steps;
  console.log(
    JSON.stringify({
      preset,
      backend: choice.backend,
      ...(choice.backend === "native" ? { gemm: loadAddon()?.gemm() } : {}),
      batch: B,
      seq: L,
      ms_per_step: +ms.toFixed(1),
      tokens_per_s: +(meanTokens / (ms / 1000)).toFixed(1),
      peak_rss_mb: peakRssMb(),
      tensors_after: tf.memory().numTensors,
      steps,
    }),
  );
}

export async function benchModel(args: string[]): Promise<void> {
  runPresetsAgainstTorch("model", args, [], (preset) => hfConfig(bertConfig(preset as PresetName)));
}
