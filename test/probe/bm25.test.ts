import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import { loadBeir } from "../../lib/data/beir";
import { analyze, Bm25Index } from "../../lib/probe/bm25";
import { evaluate } from "../../lib/probe/metrics";
import { SHARED_DATA } from "../helpers";

test("analysis: lowercase, stop words out, Porter stems, possessives dropped", () => {
  assert.equal(analyze("The Studies of cancer's RUNNING cells"), ["studi", "cancer", "run", "cell"]);
});

test("BM25 scores by hand on a toy corpus", () => {
  const idx = new Bm25Index([
    ["a", "apple banana"],
    ["b", "apple apple cherry date"],
    ["c", "cherry"],
  ]);
  const [top, second] = idx.search("apple", 10);
  // N=3, n=2: idf = ln(1 + 1.5/2.5); avgdl = 7/3
  const idf = Math.log(1 + 1.5 / 2.5);
  const s = (tf: number, dl: number) => (idf * tf * 2.2) / (tf + 1.2 * (0.25 + (0.75 * dl) / (7 / 3)));
  assert.is(top[0], "b");
  assert.ok(Math.abs(top[1] - s(2, 4)) < 1e-9);
  assert.is(second[0], "a");
  assert.ok(Math.abs(second[1] - s(1, 2)) < 1e-9);
  assert.equal(idx.search("zebra"), []);
});

test("SciFact test: BM25 nDCG@10 near BEIR's published 0.665", () => {
  const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));
  const idx = new Bm25Index([...ds.corpus].map(([id, d]) => [id, `${d.title} ${d.text}`]));
  const run = new Map([...ds.qrels.keys()].map((qid) => [qid, new Map(idx.search(ds.queries.get(qid)!, 100))]));
  const { metrics, queries } = evaluate(ds.qrels, run, [10, 100]);
  assert.is(queries, 300);
  console.log(`    BM25 SciFact test: nDCG@10 ${metrics["NDCG@10"].toFixed(4)}, Recall@100 ${metrics["Recall@100"].toFixed(4)}`);
  assert.ok(metrics["NDCG@10"] > 0.62 && metrics["NDCG@10"] < 0.71, `nDCG@10 ${metrics["NDCG@10"]}`);
});

test.run();
