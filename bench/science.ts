/**
 * `npm run bench -- science --start CHECKPOINT [--steps 300] [--every 150] [--batch 16] [--length 128] [--lr 1e-4] [--seed 42] [--probe-docs all|N]`
 *
 * The experiment the product exists for, in one run: from the same starting
 * encoder, continue pre-training with RetroMAE and with MLM only (same data,
 * steps, masks and seed), probe zero-shot nDCG@10 on SciFact (documents at
 * 512 tokens, queries at 64) every `every` steps, and compare the final
 * encoders with the starting one and BM25, with 95% intervals and paired
 * randomization tests. Prints JSON lines: the start's score, one line per
 * probe (run, step, nDCG@10, wall time), and the final table.
 */
import * as path from "path";
import { use } from "../lib/engine/backend";
import { loadBeir } from "../lib/data/beir";
import { loadCheckpoint } from "../lib/model/retromae";
import { Bm25Index } from "../lib/probe/bm25";
import { compare, RunMetrics } from "../lib/probe/compare";
import { evaluate } from "../lib/probe/metrics";
import { beirDocText, makeProbeSet, runProbe } from "../lib/probe/probe";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { emit, option, SHARED_DATA } from "./common";

export async function benchScience(args: string[]): Promise<void> {
  const start = option(args, "start");
  if (!start) throw new Error("bench science needs --start CHECKPOINT (a folder with config.json and weights, e.g. a starter from npm run starter).");
  const steps = Number(option(args, "steps") ?? 300);
  const every = Number(option(args, "every") ?? 150);
  const batchSize = Number(option(args, "batch") ?? 16);
  const maxLength = Number(option(args, "length") ?? 128);
  const lr = Number(option(args, "lr") ?? 1e-4);
  const seed = Number(option(args, "seed") ?? 42);
  const probeDocs = option(args, "probe-docs") ?? "all";
  const t0 = performance.now();
  const wall = () => +((performance.now() - t0) / 1000).toFixed(1);
  const choice = await use(option(args, "backend") ?? "auto");
  const tok = BertTokenizer.bertBaseUncased();
  const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));
  const set = makeProbeSet(ds, { distractors: probeDocs === "all" ? "all" : Number(probeDocs), seed });
  const corpus = PackedCorpus.fromTexts([...ds.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);

  const results: RunMetrics[] = [];
  const probe = async (name: string, model: Parameters<typeof runProbe>[0], step: number) => {
    const r = await runProbe(model, tok, set, { progress: false });
    emit({ bench: "science", run: name, step, ndcg10: +r.metrics["NDCG@10"].toFixed(4), recall100: +r.metrics["Recall@100"].toFixed(4), probe_s: +((r.encodeDocsMs + r.encodeQueriesMs + r.searchMs) / 1000).toFixed(1), wall_s: wall() });
    return r;
  };

  const startModel = loadCheckpoint(start).model;
  const s = await probe("start", startModel, 0);
  results.push({ name: "start", metrics: s.metrics, perQuery: s.perQuery, probeId: s.probeId });
  startModel.dispose();

  for (const [name, decoderLossWeight] of [["RetroMAE", 1], ["MLM only", 0]] as const) {
    const { model } = loadCheckpoint(start);
    model.decoderLossWeight = decoderLossWeight;
    const trainer = new Trainer({ model, tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, encoderMaskRatio: 0.3, decoderMaskRatio: 0.5, settings: { name } });
    let last = s;
    for (let done = 0; done < steps; ) {
      const n = Math.min(every, steps - done);
      const fit = await trainer.fit({ steps: n, live: false });
      done += n;
      emit({ bench: "science", run: name, step: done, loss: fit.lastLoss, train_s: +(fit.totalMs / 1000).toFixed(1), wall_s: wall() });
      last = await probe(name, model, done);
    }
    results.push({ name, metrics: last.metrics, perQuery: last.perQuery, probeId: last.probeId });
    trainer.dispose();
    model.dispose();
  }

  const bm25 = new Bm25Index(set.docIds.map((id, i): [string, string] => [id, set.docTexts[i]]));
  const bm25Run = new Map(set.queryIds.map((q, i) => [q, new Map(bm25.search(set.queryTexts[i], 100))]));
  const b = evaluate(set.qrels, bm25Run, [1, 3, 5, 10, 100]);
  results.push({ name: "BM25", metrics: b.metrics, perQuery: b.perQuery, probeId: set.id });

  const cols = ["NDCG@10", "Recall@100"];
  for (const baseline of ["start", "MLM only"]) {
    const table = compare(results, cols, { baseline });
    emit({ bench: "science", backend: choice.backend, baseline, steps, batchSize, maxLength, lr, seed, docs: set.docIds.length, queries: set.queryIds.length, table: table.toJSON(), wall_s: wall() });
    console.error(table.toString());
  }
}
