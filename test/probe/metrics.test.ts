import { test } from "uvu";
import * as assert from "uvu/assert";
import { evaluate, queryMetrics, rank } from "../../lib/probe/metrics";

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);
const m = (o: Record<string, number>) => new Map(Object.entries(o));

test("graded relevance worked by hand: nDCG, MAP, recall, precision, MRR", () => {
  // qrels d1:1, d2:2; ranking d3, d2, d1
  const q = queryMetrics(m({ d1: 1, d2: 2 }), m({ d3: 0.9, d2: 0.8, d1: 0.7 }), [1, 3, 10]);
  const dcg = 2 / Math.log2(3) + 1 / Math.log2(4);
  const idcg = 2 / Math.log2(2) + 1 / Math.log2(3);
  close(q["NDCG@3"], dcg / idcg, "NDCG@3");
  close(q["NDCG@1"], 0, "NDCG@1");
  close(q["MAP@3"], (1 / 2 + 2 / 3) / 2, "MAP@3");
  close(q["Recall@1"], 0, "Recall@1");
  close(q["Recall@3"], 1, "Recall@3");
  close(q["P@3"], 2 / 3, "P@3");
  close(q["MRR@3"], 1 / 2, "MRR@3");
  close(q["MRR@1"], 0, "MRR@1");
});

test("k larger than the results: P divides by k, the rest use what is there", () => {
  const q = queryMetrics(m({ a: 1 }), m({ a: 0.5, b: 0.1 }), [10]);
  close(q["P@10"], 1 / 10, "P@10");
  close(q["NDCG@10"], 1, "NDCG@10");
  close(q["Recall@10"], 1, "Recall@10");
});

test("ties are broken by doc id descending, as trec_eval", () => {
  assert.equal(rank(m({ d1: 0.5, d2: 0.5, d0: 0.9 })), ["d0", "d2", "d1"]);
  const q = queryMetrics(m({ d1: 1 }), m({ d1: 0.5, d2: 0.5 }), [10]);
  close(q["MRR@10"], 1 / 2, "MRR@10 with a tie");
});

test("a query whose judgments are all 0 counts, scoring 0, as pytrec_eval scores it", () => {
  const qrels = new Map([
    ["q1", m({ a: 1 })],
    ["q2", m({ b: 0 })],
  ]);
  const run = new Map([
    ["q1", m({ a: 1, x: 0.5 })],
    ["q2", m({ b: 1 })],
  ]);
  const { metrics, queries, perQuery } = evaluate(qrels, run, [10]);
  assert.is(queries, 2);
  close(metrics["NDCG@10"], 0.5, "NDCG@10");
  close(metrics["MRR@10"], 0.5, "MRR@10");
  close(metrics["Recall@10"], 0.5, "Recall@10");
  assert.equal(perQuery.get("q2"), { "NDCG@10": 0, "MAP@10": 0, "Recall@10": 0, "P@10": 0, "MRR@10": 0 });
  close(perQuery.get("q1")!["NDCG@10"], 1, "q1");
});

test("ignore_identical_ids: a document with the query's own id is dropped, unless turned off", () => {
  const qrels = new Map([["q1", m({ a: 1 })]]);
  const run = new Map([["q1", m({ q1: 2, a: 1 })]]);
  close(evaluate(qrels, run, [1]).metrics["NDCG@1"], 1, "ignored");
  close(evaluate(qrels, run, [1], { ignoreIdenticalIds: false }).metrics["NDCG@1"], 0, "kept");
});

test("queries absent from the run are not evaluated", () => {
  const qrels = new Map([["q1", m({ a: 1 })], ["q2", m({ b: 1 })]]);
  assert.is(evaluate(qrels, new Map([["q1", m({ a: 1 })]]), [10]).queries, 1);
});

test.run();
