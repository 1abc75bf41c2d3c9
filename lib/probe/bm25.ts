/**
 * Okapi BM25, k1 = 1.2 and b = 0.75 (Elasticsearch's defaults, which BEIR's
 * BM25 baseline ran with), Lucene's idf ln(1 + (N − n + 0.5)/(n + 0.5)).
 * Analysis approximates Elasticsearch's "english" analyzer: lowercase, split
 * on non-alphanumerics, drop possessive 's, Lucene's English stop words,
 * Porter stemming (npm `stemmer`). Title and text are indexed as one field;
 * BEIR's index keeps them as two fields (multi_match best_fields).
 */
const porter: (word: string) => string = require("stemmer");

const STOP = new Set(
  "a an and are as at be but by for if in into is it no not of on or such that the their then there these they this to was will with".split(" "),
);

export function analyze(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.toLowerCase().split(/[^\p{L}\p{N}']+/u)) {
    const w = raw.replace(/'s$/, "").replace(/'/g, "");
    if (!w || STOP.has(w)) continue;
    out.push(porter(w));
  }
  return out;
}

export interface Bm25Options {
  k1?: number;
  b?: number;
}

export class Bm25Index {
  readonly k1: number;
  readonly b: number;
  readonly ids: string[] = [];
  private readonly postings = new Map<string, { doc: number; tf: number }[]>();
  private readonly lengths: number[] = [];
  private avgLength = 0;

  constructor(docs: Iterable<[string, string]>, options: Bm25Options = {}) {
    this.k1 = options.k1 ?? 1.2;
    this.b = options.b ?? 0.75;
    let total = 0;
    for (const [id, text] of docs) {
      const doc = this.ids.length;
      this.ids.push(id);
      const terms = analyze(text);
      this.lengths.push(terms.length);
      total += terms.length;
      const counts = new Map<string, number>();
      for (const t of terms) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const [t, tf] of counts) {
        let list = this.postings.get(t);
        if (!list) this.postings.set(t, (list = []));
        list.push({ doc, tf });
      }
    }
    this.avgLength = this.ids.length ? total / this.ids.length : 0;
  }

  /** Top k (doc id, score), best first. */
  search(query: string, k = 100): [string, number][] {
    const N = this.ids.length;
    const scores = new Map<number, number>();
    for (const term of new Set(analyze(query))) {
      const list = this.postings.get(term);
      if (!list) continue;
      const idf = Math.log(1 + (N - list.length + 0.5) / (list.length + 0.5));
      for (const { doc, tf } of list) {
        const norm = tf + this.k1 * (1 - this.b + (this.b * this.lengths[doc]) / this.avgLength);
        scores.set(doc, (scores.get(doc) ?? 0) + (idf * tf * (this.k1 + 1)) / norm);
      }
    }
    return [...scores.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([doc, s]) => [this.ids[doc], s]);
  }
}
