/**
 * `npm run bench -- tokenize [--corpus PATH]`
 * Tokenizer throughput on the SciFact corpus (title + " " + text, [CLS]/[SEP] added).
 */
import * as fs from "fs";
import * as path from "path";
import { BertTokenizer } from "../lib/text/tokenizer";
import { emit, option, SHARED_DATA } from "./common";

export async function benchTokenize(args: string[]): Promise<void> {
  const corpus = option(args, "corpus") ?? path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl");
  const texts = fs
    .readFileSync(corpus, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const d = JSON.parse(l) as { title?: string; text: string };
      return d.title ? `${d.title} ${d.text}` : d.text;
    });
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);
  const runs: number[] = [];
  let tokens = 0;
  for (let r = 0; r < 3; r++) {
    const tok = BertTokenizer.bertBaseUncased(); // fresh word cache each run: no warm-cache advantage
    const t = performance.now();
    tokens = 0;
    for (const text of texts) tokens += tok.encode(text).inputIds.length;
    runs.push((performance.now() - t) / 1000);
  }
  runs.sort((a, b) => a - b);
  const s = runs[1];
  emit({
    bench: "tokenize",
    corpus: path.basename(path.dirname(corpus)),
    docs: texts.length,
    mb: +(bytes / 1e6).toFixed(3),
    tokens,
    seconds_median: +s.toFixed(3),
    mb_per_s: +(bytes / 1e6 / s).toFixed(2),
    docs_per_s: Math.round(texts.length / s),
    tokens_per_s: Math.round(tokens / s),
  });
}
