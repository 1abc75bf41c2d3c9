/**
 * `npm run bench -- finetune --models NAME=CHECKPOINT,... [--baseline NAME,...] [--epochs 10] [--batch 16] [--lr 5e-4]
 *                            [--group 1] [--seed 42] [--out results.json]`
 *
 * The paper's main protocol at this scale: fine-tune each encoder on
 * SciFact's train queries with the official bi_encoder recipe
 * (lib/probe/finetune.ts: one random positive per query per epoch,
 * trainGroupSize − 1 BM25 negatives, weight decay 0, no warmup, query and
 * passage lengths 32 and 128), then score nDCG@10 on the test split over the
 * full corpus (documents at 512 tokens). Prints one JSON line per model
 * (zero-shot and fine-tuned scores, fine-tuning time) and tables of both
 * with intervals and paired tests against each baseline (the first model
 * by default; e.g. --baseline start,mlm-only), so that one can read whether
 * the zero-shot ordering survives fine-tuning.
 */
import * as path from "path";
import { use } from "../lib/engine/backend";
import { loadBeir } from "../lib/data/beir";
import { loadCheckpoint } from "../lib/model/retromae";
import { starterCheckpoint } from "../lib/model/starter";
import { compare, RunMetrics } from "../lib/probe/compare";
import { contrastiveFinetune } from "../lib/probe/finetune";
import { makeProbeSet, runProbe } from "../lib/probe/probe";
import { BertTokenizer } from "../lib/text/tokenizer";
import { writeFileAtomic } from "../lib/util";
import { emit, option, SHARED_DATA } from "./common";

export async function benchFinetune(args: string[]): Promise<void> {
  const spec = option(args, "models") ?? `start=${starterCheckpoint()}`;
  const models = spec.split(",").map((m) => {
    const i = m.indexOf("=");
    if (i < 0) throw new Error(`--models takes NAME=CHECKPOINT pairs separated by commas; "${m}" has no "=".`);
    return { name: m.slice(0, i), dir: m.slice(i + 1) };
  });
  const baselines = (option(args, "baseline") ?? models[0].name).split(",");
  for (const b of baselines) if (!models.some((m) => m.name === b)) throw new Error(`--baseline ${b} is not one of the models (${models.map((m) => m.name).join(", ")}); name one of them.`);
  const epochs = Number(option(args, "epochs") ?? 10);
  const batchSize = Number(option(args, "batch") ?? 16);
  const lr = Number(option(args, "lr") ?? 5e-4);
  const trainGroupSize = Number(option(args, "group") ?? 1);
  const seed = Number(option(args, "seed") ?? 42);
  const out = option(args, "out");
  const choice = await use(option(args, "backend") ?? "auto");
  const tok = BertTokenizer.bertBaseUncased();
  const train = loadBeir(path.join(SHARED_DATA, "beir-scifact"), "train");
  const test = loadBeir(path.join(SHARED_DATA, "beir-scifact"), "test");
  const set = makeProbeSet(test, { distractors: "all", seed });
  const settings = { epochs, batchSize, lr, trainGroupSize, seed, backend: choice.backend, trainQueries: train.qrels.size, testQueries: set.queryIds.length, docs: set.docIds.length };
  emit({ bench: "finetune", settings });
  const zeroShot: RunMetrics[] = [];
  const tuned: RunMetrics[] = [];
  const lines: Record<string, unknown>[] = [];
  for (const { name, dir } of models) {
    const { model } = loadCheckpoint(dir);
    const before = await runProbe(model, tok, set, { progress: false });
    const t0 = performance.now();
    const { losses } = await contrastiveFinetune(model, tok, train, { epochs, batchSize, lr, trainGroupSize, seed });
    const ms = performance.now() - t0;
    const after = await runProbe(model, tok, set, { progress: false });
    zeroShot.push({ name, metrics: before.metrics, perQuery: before.perQuery, probeId: before.probeId });
    tuned.push({ name, metrics: after.metrics, perQuery: after.perQuery, probeId: after.probeId });
    const head = losses.slice(0, 10).reduce((a, b) => a + b, 0) / Math.min(10, losses.length);
    const tail = losses.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, losses.length);
    const line = { bench: "finetune", model: name, checkpoint: dir, zero_shot_ndcg10: +before.metrics["NDCG@10"].toFixed(4), finetuned_ndcg10: +after.metrics["NDCG@10"].toFixed(4), steps: losses.length, loss_first10: +head.toFixed(3), loss_last10: +tail.toFixed(3), finetune_s: +(ms / 1000).toFixed(1) };
    lines.push(line);
    emit(line);
    model.dispose();
  }
  const tables: Record<string, unknown> = {};
  for (const baseline of baselines)
    for (const [label, runs] of [["zero-shot", zeroShot], ["fine-tuned", tuned]] as const) {
      const table = compare(runs, ["NDCG@10", "Recall@100"], { baseline });
      tables[`${label} vs ${baseline}`] = table.toJSON();
      emit({ bench: "finetune", table: label, baseline, rows: table.toJSON().rows });
      console.error(`${label}, against ${baseline}:\n${table.toString()}`);
    }
  if (out) writeFileAtomic(out, JSON.stringify({ settings, lines, tables }, null, 1) + "\n");
}
