/**
 * IR metrics as BEIR computes them (pytrec_eval / trec_eval, plus BEIR's
 * own MRR@k):
 *
 * - ranking: score descending; ties broken by doc id descending, as
 *   trec_eval does;
 * - relevant means a judgment > 0; gains are the graded judgments (linear
 *   gain, as trec_eval's ndcg);
 * - NDCG@k = DCG@k / IDCG@k with log2(rank + 1) discounts;
 * - MAP@k (map_cut): sum of precision at each relevant rank ≤ k, over the
 *   number of relevant documents;
 * - Recall@k: relevant in the top k over all relevant;
 * - P@k: relevant in the top k over k (even when fewer were retrieved);
 * - MRR@k: 1 / rank of the first relevant document within k, else 0.
 *
 * Averages run over the judged queries that appear in the run, as
 * pytrec_eval evaluates them and BEIR averages them: a query whose
 * judgments are all 0 is kept and scores 0 on every metric (trec_eval's
 * ndcg with no ideal gain, recall with no relevant document). BEIR's
 * `ignore_identical_ids` (on by default, as in EvaluateRetrieval) drops a
 * document whose id equals the query's before scoring.
 */
export type Qrels = ReadonlyMap<string, ReadonlyMap<string, number>>;
/** query id -> doc id -> score */
export type Run = ReadonlyMap<string, ReadonlyMap<string, number>>;

export interface Metrics {
  [name: string]: number;
}

/** Doc ids of one query's results, ranked as trec_eval ranks them. */
export function rank(results: ReadonlyMap<string, number>): string[] {
  return [...results.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0)).map(([id]) => id);
}

/** Per-query metrics at each k. */
export function queryMetrics(judged: ReadonlyMap<string, number>, results: ReadonlyMap<string, number>, ks: readonly number[]): Metrics {
  const ranked = rank(results);
  const relevantTotal = [...judged.values()].filter((r) => r > 0).length;
  const ideal = [...judged.values()].filter((r) => r > 0).sort((a, b) => b - a);
  const out: Metrics = {};
  for (const k of ks) {
    let dcg = 0;
    let hits = 0;
    let apSum = 0;
    let firstHit = 0;
    for (let i = 0; i < Math.min(k, ranked.length); i++) {
      const rel = judged.get(ranked[i]) ?? 0;
      if (rel > 0) {
        dcg += rel / Math.log2(i + 2);
        hits++;
        apSum += hits / (i + 1);
        if (!firstHit) firstHit = i + 1;
      }
    }
    let idcg = 0;
    for (let i = 0; i < Math.min(k, ideal.length); i++) idcg += ideal[i] / Math.log2(i + 2);
    out[`NDCG@${k}`] = idcg > 0 ? dcg / idcg : 0;
    out[`MAP@${k}`] = relevantTotal > 0 ? apSum / relevantTotal : 0;
    out[`Recall@${k}`] = relevantTotal > 0 ? hits / relevantTotal : 0;
    out[`P@${k}`] = hits / k;
    out[`MRR@${k}`] = firstHit ? 1 / firstHit : 0;
  }
  return out;
}

export interface EvaluateOptions {
  /** Drop results whose doc id equals the query id (BEIR's ignore_identical_ids). Default true. */
  ignoreIdenticalIds?: boolean;
}

export interface Evaluation {
  /** Means over the evaluated queries. */
  metrics: Metrics;
  /** How many queries were evaluated. */
  queries: number;
  /** Each evaluated query's metrics, for confidence intervals and paired tests. */
  perQuery: Map<string, Metrics>;
}

/** Mean metrics over the evaluated queries, each query's metrics, and how many were evaluated. */
export function evaluate(qrels: Qrels, run: Run, ks: readonly number[] = [1, 3, 5, 10, 100, 1000], options: EvaluateOptions = {}): Evaluation {
  const ignoreIdentical = options.ignoreIdenticalIds ?? true;
  const sums: Metrics = {};
  const perQuery = new Map<string, Metrics>();
  for (const [qid, judged] of qrels) {
    let results = run.get(qid);
    if (!results) continue;
    if (ignoreIdentical && results.has(qid)) results = new Map([...results].filter(([d]) => d !== qid));
    const q = queryMetrics(judged, results, ks);
    perQuery.set(qid, q);
    for (const [name, v] of Object.entries(q)) sums[name] = (sums[name] ?? 0) + v;
  }
  const n = perQuery.size;
  const metrics: Metrics = {};
  for (const [name, v] of Object.entries(sums)) metrics[name] = n ? v / n : 0;
  return { metrics, queries: n, perQuery };
}
