import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { Vocab } from "../../lib/text/vocab";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();

test("hand-checked ids: 'Hello, world!'", () => {
  assert.equal(tok.encode("Hello, world!").inputIds, [101, 7592, 1010, 2088, 999, 102]);
});

test("WordPiece is greedy longest-match-first", () => {
  // The BERT README's example vocabulary has no "una": un ##aff ##able.
  const small = new BertTokenizer(
    new Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "##a", "a"]),
  );
  assert.equal(small.tokenize("unaffable"), ["un", "##aff", "##able"]);
  // bert-base-uncased has "una", so the longest first match gives una ##ffa ##ble (HF gives the same).
  assert.equal(tok.tokenize("unaffable"), ["una", "##ffa", "##ble"]);
  // A word no pieces can cover becomes one [UNK].
  assert.equal(small.tokenize("unx"), ["[UNK]"]);
});

test("accents are stripped after lowercasing; composed and decomposed forms agree", () => {
  assert.equal(tok.tokenize("Héllo Wörld naïve CAFÉ"), ["hello", "world", "naive", "cafe"]);
  assert.equal(tok.tokenize("cafe\u0301"), tok.tokenize("caf\u00e9"));
  const cased = new BertTokenizer(tok.vocab, { doLowerCase: false });
  assert.equal(cased.tokenize("Héllo"), ["[UNK]"]);
});

test("CJK ideographs are split into single characters", () => {
  assert.equal(tok.tokenize("我爱北京"), ["我", "[UNK]", "北", "京"]);
  assert.equal(tok.tokenize("abc我def"), ["abc", "我", "def"]);
});

test("control characters are dropped, whitespace of every kind splits", () => {
  assert.equal(tok.tokenize("a\u0000b\u0007c\ufffd"), ["abc"]);
  assert.equal(tok.tokenize("zero\u200bwidth"), tok.tokenize("zerowidth"));
  assert.equal(tok.tokenize("one\ttwo\nthree\u00a0four\u3000five\r\nsix"), ["one", "two", "three", "four", "five", "six"]);
});

test("punctuation, ASCII and Unicode, is split off", () => {
  assert.equal(tok.tokenize("don't"), ["don", "'", "t"]);
  assert.equal(tok.tokenize("«hi»—ok"), ["«", "hi", "»", "—", "ok"]);
  assert.equal(tok.tokenize("e.g.,"), ["e", ".", "g", ".", ","]);
});

test("a word longer than 100 characters becomes [UNK]; 100 does not", () => {
  assert.equal(tok.tokenize("x".repeat(101)), ["[UNK]"]);
  const hundred = tok.tokenize("x".repeat(100));
  assert.ok(hundred.length > 1 && !hundred.includes("[UNK]"));
  assert.equal(tok.tokenize("a " + "y".repeat(150) + " b"), ["a", "[UNK]", "b"]);
});

test("empty and blank strings", () => {
  assert.equal(tok.encode("").inputIds, [101, 102]);
  assert.equal(tok.tokenize("   \n\t "), []);
});

test("special tokens written in the text stay whole; lowercase look-alikes do not", () => {
  assert.equal(tok.encode("[CLS] hi [MASK]there").inputIds, [101, 101, 7632, 103, 2045, 102]);
  assert.equal(tok.tokenize("[mask]"), ["[", "mask", "]"]);
});

test("truncation counts the special tokens", () => {
  const e = tok.encode("one two three four five six", { maxLength: 5 });
  assert.equal(e.inputIds, [101, ...tok.textToIds("one two three"), 102]);
  assert.equal(e.attentionMask, [1, 1, 1, 1, 1]);
  assert.equal(tok.encode("one two", { addSpecialTokens: false }).inputIds, tok.textToIds("one two"));
  assert.throws(() => tok.encode("x", { maxLength: 2 }), /maxLength must be a whole number of at least 3/);
});

test("batch encoding pads with [PAD] and masks the padding", () => {
  const b = tok.encodeBatch(["Hello, world!", "hi"]);
  assert.is(b.batchSize, 2);
  assert.is(b.seqLength, 6);
  assert.equal(Array.from(b.inputIds), [101, 7592, 1010, 2088, 999, 102, 101, 7632, 102, 0, 0, 0]);
  assert.equal(Array.from(b.attentionMask), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  assert.equal(Array.from(b.lengths), [6, 3]);
  const fixed = tok.encodeBatch(["hi"], { padding: "max_length", maxLength: 8 });
  assert.is(fixed.seqLength, 8);
  assert.throws(() => tok.encodeBatch(["hi"], { padding: "max_length" }), /needs maxLength/);
});

test("decode joins pieces and cleans spaces like HF", () => {
  const ids = tok.encode("Hello, world! Don't unaffable").inputIds;
  assert.is(tok.decode(ids, { skipSpecialTokens: true }), "hello, world! don't unaffable");
  assert.is(tok.decode(ids), "[CLS] hello, world! don't unaffable [SEP]");
});

test("vocab.txt and folder paths load; a missing path gets one clear sentence", () => {
  const fromFile = BertTokenizer.fromFile(path.join(SHARED_DATA, "bert-base-uncased", "vocab.txt"));
  assert.equal(fromFile.encode("Hello, world!").inputIds, [101, 7592, 1010, 2088, 999, 102]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tok-"));
  fs.writeFileSync(
    path.join(dir, "tokenizer.json"),
    JSON.stringify({
      normalizer: { type: "BertNormalizer", lowercase: true, strip_accents: null, clean_text: true, handle_chinese_chars: true },
      model: { type: "WordPiece", unk_token: "[UNK]", vocab: Object.fromEntries(tok.vocab.tokens.map((t, i) => [t, i])) },
    }),
  );
  assert.equal(BertTokenizer.fromFile(dir).encode("Hello, world!").inputIds, [101, 7592, 1010, 2088, 999, 102]);
  assert.throws(() => BertTokenizer.fromFile("/no/such/vocab.txt"), /^Vocabulary path "\/no\/such\/vocab.txt" does not exist/);
  assert.throws(() => new BertTokenizer(new Vocab(["a", "b"])), /has no \[UNK\] token/);
  assert.throws(() => tok.encode(undefined as unknown as string), /takes a string, got undefined/);
});

test("the whole SciFact corpus tokenizes without error", () => {
  const lines = fs.readFileSync(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), "utf8").split("\n").filter(Boolean);
  assert.is(lines.length, 5183);
  let tokens = 0;
  let unk = 0;
  for (const line of lines) {
    const d = JSON.parse(line) as { title: string; text: string };
    const ids = tok.encode(`${d.title} ${d.text}`).inputIds;
    assert.ok(ids.length > 2 && ids.every((i) => i >= 0 && i < 30522));
    tokens += ids.length;
    unk += ids.filter((i) => i === 100).length;
  }
  assert.ok(tokens > 1_000_000, `tokens ${tokens}`);
  assert.ok(unk / tokens < 0.001, `[UNK] rate ${unk / tokens}`);
});

test.run();
