/**
 * `npm run bench -- science [--start starter|CHECKPOINT] [--steps 1200] [--every 300] [--batch 32] [--length 128] [--lr 1e-3]
 *                          [--enc 0.3] [--dec 0.5] [--seed 42] [--probe-docs all|N] [--out results.json] [--save DIR]`
 *
 * The experiment the product exists for, in one run: from the same starting
 * encoder, continue pre-training with RetroMAE and with MLM only (same data,
 * steps, masks and seed), probe zero-shot nDCG@10 on SciFact (documents at
 * 512 tokens, queries at 64) every `every` steps, and compare the final
 * encoders with the start, the untrained model, MLM-only and BM25, with 95%
 * intervals and paired randomization tests against each of those baselines.
 * Prints JSON lines: the start's score and the untrained model's, one line
 * per probe (run, step, nDCG@10, the paired p against the start and against
 * the untrained model, the [CLS] geometry, and for MLM-only's steps also
 * RetroMAE against it at the same step), wall time, and the final table with
 * its findings; `--out` writes them all as one JSON file.
 */
import * as path from "path";
import { use } from "../lib/engine/backend";
import { loadBeir } from "../lib/data/beir";
import { loadCheckpoint, RetroMAE, saveCheckpoint } from "../lib/model/retromae";
import { starterCheckpoint } from "../lib/model/starter";
import { pairedRandomizationTest } from "../lib/probe/stats";
import type { Metrics } from "../lib/probe/metrics";
import { writeFileAtomic } from "../lib/util";
import { Bm25Index } from "../lib/probe/bm25";
import { compare, PUBLISHED_SCIFACT, RunMetrics } from "../lib/probe/compare";
import { evaluate } from "../lib/probe/metrics";
import { beirDocText, makeProbeSet, runProbe } from "../lib/probe/probe";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { emit, option, SHARED_DATA } from "./common";

/** Paired randomization p of a against b on NDCG@10, over the same queries. */
function pairedP(a: ReadonlyMap<string, Metrics>, b: ReadonlyMap<string, Metrics>): number {
  const qs = [...b.keys()];
  const col = (m: ReadonlyMap<string, Metrics>) => Float64Array.from(qs, (q) => m.get(q)!["NDCG@10"]);
  return +pairedRandomizationTest(col(a), col(b), { samples: 10_000, seed: 0 }).p.toFixed(4);
}

export async function benchScience(args: string[]): Promise<void> {
  const startArg = option(args, "start") ?? "starter";
  const start = startArg === "starter" ? starterCheckpoint() : startArg;
  const steps = Number(option(args, "steps") ?? 1200);
  const every = Number(option(args, "every") ?? 300);
  const batchSize = Number(option(args, "batch") ?? 32);
  const maxLength = Number(option(args, "length") ?? 128);
  const lr = Number(option(args, "lr") ?? 1e-3);
  const encoderMaskRatio = Number(option(args, "enc") ?? 0.3);
  const decoderMaskRatio = Number(option(args, "dec") ?? 0.5);
  const seed = Number(option(args, "seed") ?? 42);
  const probeDocs = option(args, "probe-docs") ?? "all";
  const out = option(args, "out");
  const save = option(args, "save");
  const lines: Record<string, unknown>[] = [];
  const record = (row: Record<string, unknown>) => {
    lines.push(row);
    emit(row);
  };
  const t0 = performance.now();
  const wall = () => +((performance.now() - t0) / 1000).toFixed(1);
  const choice = await use(option(args, "backend") ?? "auto");
  const tok = BertTokenizer.bertBaseUncased();
  const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));
  const set = makeProbeSet(ds, { distractors: probeDocs === "all" ? "all" : Number(probeDocs), seed });
  const corpus = PackedCorpus.fromTexts([...ds.corpus.values()].map((d) => beirDocText(d.title, d.text)), tok, maxLength);
  const settings = { start, steps, every, batchSize, maxLength, lr, encoderMaskRatio, decoderMaskRatio, seed, backend: choice.backend, docs: set.docIds.length, queries: set.queryIds.length };
  record({ bench: "science", settings });

  const results: RunMetrics[] = [];
  const perStep = new Map<string, Map<number, ReadonlyMap<string, Metrics>>>();
  const probe = async (name: string, model: RetroMAE, step: number, vs: Record<string, ReadonlyMap<string, Metrics>>) => {
    const r = await runProbe(model, tok, set, { progress: false, geometry: true });
    const g = r.geometry!;
    (perStep.get(name) ?? perStep.set(name, new Map()).get(name)!).set(step, r.perQuery);
    const other = name === "MLM only" ? perStep.get("RetroMAE")?.get(step) : undefined;
    record({
      bench: "science",
      run: name,
      step,
      ndcg10: +r.metrics["NDCG@10"].toFixed(4),
      recall100: +r.metrics["Recall@100"].toFixed(4),
      ...Object.fromEntries(Object.entries(vs).map(([b, q]) => [`p_vs_${b}`, pairedP(r.perQuery, q)])),
      anisotropy: +g.anisotropy.toFixed(4),
      uniformity: +g.uniformity.toFixed(4),
      alignment: +g.alignment.toFixed(4),
      effective_rank: +g.effectiveRank.toFixed(2),
      ...(other ? { retromae_ndcg10: +[...other.values()].reduce((a, m) => a + m["NDCG@10"], 0) / other.size, p_retromae_vs_mlm: pairedP(other, r.perQuery) } : {}),
      probe_s: +((r.encodeDocsMs + r.encodeQueriesMs + r.searchMs) / 1000).toFixed(1),
      wall_s: wall(),
    });
    return r;
  };

  const untrained = RetroMAE.create("tiny", { seed });
  const u = await probe("untrained", untrained, 0, {});
  results.push({ name: "untrained tiny", metrics: u.metrics, perQuery: u.perQuery, probeId: u.probeId });
  untrained.dispose();
  const startModel = loadCheckpoint(start).model;
  const s = await probe("start", startModel, 0, { untrained: u.perQuery });
  results.push({ name: "start", metrics: s.metrics, perQuery: s.perQuery, probeId: s.probeId });
  startModel.dispose();

  for (const [name, decoderLossWeight] of [["RetroMAE", 1], ["MLM only", 0]] as const) {
    const { model } = loadCheckpoint(start);
    model.decoderLossWeight = decoderLossWeight;
    // one schedule over all the steps (warmup 10%, linear decay), whatever the probe interval
    const trainer = new Trainer({ model, tokenizer: tok, data: corpus, seed, batchSize, maxLength, lr, totalSteps: steps, encoderMaskRatio, decoderMaskRatio, settings: { name } });
    let last = s;
    for (let done = 0; done < steps; ) {
      const n = Math.min(every, steps - done);
      const fit = await trainer.fit({ steps: n, live: false });
      done += n;
      record({ bench: "science", run: name, step: done, loss: fit.lastLoss, train_s: +(fit.totalMs / 1000).toFixed(1), wall_s: wall() });
      last = await probe(name, model, done, { start: s.perQuery, untrained: u.perQuery });
    }
    results.push({ name, metrics: last.metrics, perQuery: last.perQuery, probeId: last.probeId });
    if (save) await saveCheckpoint(model, path.join(save, name === "RetroMAE" ? "retromae" : "mlm-only"), { encoderOnly: true, vocab: tok.vocab });
    trainer.dispose();
    model.dispose();
  }

  const bm25 = new Bm25Index(set.docIds.map((id, i): [string, string] => [id, set.docTexts[i]]));
  const bm25Run = new Map(set.queryIds.map((q, i) => [q, new Map(bm25.search(set.queryTexts[i], 100))]));
  const b = evaluate(set.qrels, bm25Run, [1, 3, 5, 10, 100]);
  results.push({ name: "BM25", metrics: b.metrics, perQuery: b.perQuery, probeId: set.id }, ...PUBLISHED_SCIFACT);

  const cols = ["NDCG@10", "Recall@100"];
  const table = compare(results, cols, { baseline: ["start", "untrained tiny", "MLM only"] });
  const findings = table.findings("NDCG@10", { runs: ["RetroMAE", "MLM only", "start"] });
  record({ bench: "science", table: table.toJSON(), findings, wall_s: wall() });
  console.error(`${table.toString()}\n${findings.join("\n")}`);
  if (out) writeFileAtomic(out, JSON.stringify({ settings, lines, table: table.toJSON(), findings }, null, 1) + "\n");
}
