/**
 * `npm run bench -- probe [--backend NAME] [--presets tiny,mini] [--batch 64] [--max-length 512]`
 *
 * On SciFact (5,183 docs, 300 test queries), per preset: corpus encoding
 * (`docs_per_s`), search (`queries_per_s`: encoding the queries, exact
 * top-100 over the corpus and scoring), the whole probe (`full_probe_s`), and BM25's
 * nDCG@10 (`bm25_ndcg10`). With torch available, the PyTorch reference
 * encodes the same padded batches in the same run, twice: every layer at
 * every position (HF's BertModel; `ratio_vs_torch`), and with the last layer
 * at [CLS] only, as encode does (`ratio_vs_torch_same_work`). The reference
 * starts from token ids; encode from text, so the corpus's tokenization is
 * timed too (`tokenize_docs_s`), and `model_docs_per_s` leaves it out.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { use } from "../lib/engine/backend";
import { loadAddon } from "../lib/engine/native";
import { Rng } from "../lib/engine/rng";
import { loadBeir } from "../lib/data/beir";
import { hfConfig } from "../lib/model/checkpoint";
import { bertConfig, PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { Bm25Index } from "../lib/probe/bm25";
import { evaluate } from "../lib/probe/metrics";
import { makeProbeSet, runProbe } from "../lib/probe/probe";
import { BertTokenizer } from "../lib/text/tokenizer";
import { emit, NO_TORCH, option, peakRssMb, runTorch, SHARED_DATA, torchAvailable, TORCH_ENVS, writeEncodeBatches } from "./common";

export async function benchProbe(args: string[]): Promise<void> {
  const presets = (option(args, "presets") ?? "tiny,mini").split(",") as PresetName[];
  const batchSize = Number(option(args, "batch") ?? 64);
  // Documents at BEIR's 512 tokens (the probe's default), queries at 64.
  const maxLength = Number(option(args, "max-length") ?? 512);
  const choice = await use(option(args, "backend") ?? "auto");
  const tok = BertTokenizer.bertBaseUncased();
  const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));
  const set = makeProbeSet(ds, { distractors: "all" });

  const t0 = performance.now();
  const bm25 = new Bm25Index(set.docIds.map((id, i) => [id, set.docTexts[i]]));
  const bm25Run = new Map(set.queryIds.map((q, i) => [q, new Map(bm25.search(set.queryTexts[i], 100))]));
  const bm25Result = evaluate(set.qrels, bm25Run, [10]);
  const bm25Seconds = (performance.now() - t0) / 1000;

  // The padded, length-sorted batches the encoder sees, for the torch reference.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-probe-"));
  const batchesFile = path.join(dir, "batches.safetensors");
  writeEncodeBatches(batchesFile, set.docTexts, tok, batchSize, maxLength);
  // Encode tokenizes too, and the torch reference is given the ids, so the model's own rate is shown apart: timed
  // again now that the tokenizer's word cache is warm, as it is when the probes below encode.
  const tokenizeStart = performance.now();
  for (const t of set.docTexts) tok.encode(t, { maxLength });
  const tokenizeMs = performance.now() - tokenizeStart;

  for (const preset of presets) {
    const model = RetroMAE.create(preset, { rng: new Rng(1) });
    const r = await runProbe(model, tok, set, { batchSize, maxLength, progress: false });
    const row: Record<string, unknown> = {
      bench: "probe",
      preset,
      backend: choice.backend,
      ...(choice.backend === "native" ? { gemm: loadAddon()?.gemm() } : {}),
      docs: r.docs,
      max_length: maxLength,
      queries: r.queries,
      docs_per_s: +(r.docs / (r.encodeDocsMs / 1000)).toFixed(1),
      tokenize_docs_s: +(tokenizeMs / 1000).toFixed(1),
      model_docs_per_s: +(r.docs / ((r.encodeDocsMs - tokenizeMs) / 1000)).toFixed(1),
      queries_per_s: +(r.queries / ((r.encodeQueriesMs + r.searchMs) / 1000)).toFixed(1),
      full_probe_s: +((r.encodeDocsMs + r.encodeQueriesMs + r.searchMs) / 1000).toFixed(1),
      encode_docs_s: +(r.encodeDocsMs / 1000).toFixed(1),
      encode_queries_s: +(r.encodeQueriesMs / 1000).toFixed(2),
      search_s: +(r.searchMs / 1000).toFixed(3),
      ndcg10_untrained: +r.metrics["NDCG@10"].toFixed(4),
      bm25_ndcg10: +bm25Result.metrics["NDCG@10"].toFixed(4),
      bm25_s: +bm25Seconds.toFixed(1),
      peak_rss_mb: peakRssMb(),
    };
    if (torchAvailable()) {
      for (const { name, env } of TORCH_ENVS) row[`torch_${name}`] = runTorch("encode_bench.py", [JSON.stringify(hfConfig(bertConfig(preset))), batchesFile], env);
      const best = (key: "docs_per_s" | "docs_per_s_same_work") => Math.max(...TORCH_ENVS.map(({ name }) => (row[`torch_${name}`] as Record<string, number>)[key]));
      row.ratio_vs_torch = +((row.docs_per_s as number) / best("docs_per_s")).toFixed(3);
      // encode computes the last layer at [CLS] only; the same-work reference does too, and is given token ids
      row.ratio_vs_torch_same_work = +((row.docs_per_s as number) / best("docs_per_s_same_work")).toFixed(3);
      row.model_ratio_vs_torch_same_work = +((row.model_docs_per_s as number) / best("docs_per_s_same_work")).toFixed(3);
    } else {
      row.torch = `skipped: ${NO_TORCH}`;
    }
    model.dispose();
    emit(row);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
