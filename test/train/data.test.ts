import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { readCorpus, splitSentences } from "../../lib/text/corpus";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { BatchStream, PackedCorpus } from "../../lib/train/data";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();

test("sentence splitting keeps abbreviations and decimals together", () => {
  assert.equal(splitSentences("First one. Second one! Third? e.g. this stays. Fig. 2 shows 3.5 mm. Done."), [
    "First one.",
    "Second one!",
    "Third? e.g. this stays.",
    "Fig. 2 shows 3.5 mm.",
    "Done.",
  ]);
  assert.equal(splitSentences("no end"), ["no end"]);
});

test("readers stream jsonl, BEIR and text, and name the bad line", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "corpus-"));
  fs.writeFileSync(path.join(dir, "a.jsonl"), '{"text":"one"}\n\n{"text":"two"}\n');
  fs.writeFileSync(path.join(dir, "corpus.jsonl"), '{"_id":"1","title":"T","text":"body"}\n{"_id":"2","title":"","text":"plain"}\n');
  fs.writeFileSync(path.join(dir, "b.txt"), "line one\r\n\r\nline two\n");
  fs.writeFileSync(path.join(dir, "bad.jsonl"), '{"text":"ok"}\n{"body":"x"}\n');
  const all = async (f: string, o = {}) => {
    const out: string[] = [];
    for await (const t of readCorpus(path.join(dir, f), o)) out.push(t);
    return out;
  };
  assert.equal(await all("a.jsonl"), ["one", "two"]);
  assert.equal(await all("corpus.jsonl"), ["T body", "plain"]);
  assert.equal(await all("b.txt"), ["line one", "line two"]);
  try {
    await all("bad.jsonl");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /bad.jsonl line 2 has no "text" string field; pass \{ field: "..." \}/);
  }
  try {
    await all("missing.jsonl");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /does not exist/);
  }
});

test("packing appends whole sentences until a block holds at least maxLength - 2 ids", () => {
  const sentence = "The encoder sees a masked sentence."; // 8 ids
  const n = tok.textToIds(sentence).length;
  const c = PackedCorpus.fromTexts([Array(7).fill(sentence).join(" ")], tok, 2 + 3 * n);
  assert.equal(Array.from({ length: c.size }, (_, i) => c.block(i).length), [3 * n, 3 * n, n]);
  assert.equal(Array.from(c.block(0).subarray(0, n)), tok.textToIds(sentence));
  assert.is(c.maxId, Math.max(...tok.textToIds(sentence)), "the largest id, for the model's vocabulary check");
  assert.is(new PackedCorpus().maxId, -1);
});

test("one-sentence-per-line text packs across lines, within runs of 1,000 lines, as preprocess.py packs BookCorpus", async () => {
  const line = "He opened the door."; // 5 ids
  const n = tok.textToIds(line).length;
  const lines = Array(10).fill(line);
  const perDoc = PackedCorpus.fromTexts(lines, tok, 2 + 3 * n);
  assert.is(perDoc.size, 10, "as documents, every line is its own short block");
  const packed = PackedCorpus.fromTexts(lines, tok, 2 + 3 * n, { packing: "lines" });
  assert.equal(Array.from({ length: packed.size }, (_, i) => packed.block(i).length), [3 * n, 3 * n, 3 * n, n]);
  // a block never spans the 1,000-line boundary of datasets' batched map
  const many = PackedCorpus.fromTexts(Array(1001).fill(line), tok, 2 + 3 * n, { packing: "lines" });
  assert.equal(Array.from({ length: many.size }, (_, i) => many.block(i).length).slice(332), [3 * n, n, n]);
  // a plain text file packs as lines by default
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lines-"));
  fs.writeFileSync(path.join(dir, "book.txt"), lines.join("\n") + "\n");
  const fromFile = await PackedCorpus.fromFile(path.join(dir, "book.txt"), tok, 2 + 3 * n);
  assert.is(fromFile.size, 4);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("shortSeqProb draws shorter block targets in [3, target] with its probability; off by default", () => {
  const sentence = "The encoder sees a masked sentence."; // 8 ids
  const doc = Array(400).fill(sentence).join(" ");
  const full = PackedCorpus.fromTexts([doc], tok, 66);
  const lengths = (c: PackedCorpus) => Array.from({ length: c.size - 1 }, (_, i) => c.block(i).length); // the last block is the rest
  assert.ok(lengths(full).every((l) => l >= 64), "every block reaches the target without it");
  const short = PackedCorpus.fromTexts([doc], tok, 66, { shortSeqProb: 0.5, seed: 3 });
  const shorter = lengths(short).filter((l) => l < 64);
  assert.ok(shorter.length > 0.25 * short.size && shorter.length < 0.75 * short.size, `${shorter.length} of ${short.size} short`);
  assert.ok(shorter.every((l) => l >= 3), "at least 3 ids");
  assert.equal(lengths(PackedCorpus.fromTexts([doc], tok, 66, { shortSeqProb: 0.5, seed: 3 })), lengths(short), "seeded");
  assert.throws(() => PackedCorpus.fromTexts([doc], tok, 66, { shortSeqProb: 1.5 }), /shortSeqProb must be in \[0, 1\], got 1\.5; preprocess\.py's default is 0\./);
});

test("SciFact packs into blocks; batches follow a seeded order that a position restores", async () => {
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 128, { limit: 200 });
  assert.ok(corpus.size > 200, `${corpus.size} blocks`);
  const a = new BatchStream(corpus, 8, 11);
  const first = [a.next(), a.next(), a.next()];
  const b = new BatchStream(corpus, 8, 11);
  b.next();
  const pos = { ...b.position };
  const c = new BatchStream(corpus, 8, 11);
  c.position = pos;
  assert.equal(c.next().map((x) => Array.from(x)), first[1].map((x) => Array.from(x)));
  const d = new BatchStream(corpus, 8, 12);
  assert.not.equal(d.next().map((x) => Array.from(x)), first[0].map((x) => Array.from(x)));
  // an epoch visits every block once, then the next epoch starts
  const e = new BatchStream(corpus, 8, 1);
  const seen = new Set<number>();
  for (let i = 0; i < e.batchesPerEpoch; i++) e.next().forEach((blk) => seen.add(blk.byteOffset));
  assert.is(seen.size, e.batchesPerEpoch * 8);
  e.next();
  assert.is(e.position.epoch, 1);
  assert.throws(() => new BatchStream(corpus, corpus.size + 1, 0), /fewer than one batch/);
});

test.run();
