import { test } from "uvu";
import * as assert from "uvu/assert";
import { Rng } from "../../lib/engine/rng";
import { maskCount, pyRound, WholeWords, wholeWordMask } from "../../lib/masking/whole-word";

test("pyRound rounds halves to even, like Python's round", () => {
  assert.equal([0.5, 1.5, 2.5, 3.5, -0.5, 2.4999, 2.5001, 7].map(pyRound), [0, 2, 2, 4, -0, 2, 3, 7]);
});

test("maskCount is max(1, round(len × ratio)), capped", () => {
  assert.is(maskCount(5, 0.3), 2); // 1.5 -> 2
  assert.is(maskCount(25, 0.3), 8); // 7.5 -> 8
  assert.is(maskCount(15, 0.3), 4); // 4.5 -> 4 (half to even)
  assert.is(maskCount(2, 0.15), 1); // 0.3 -> 0 -> at least 1
  assert.is(maskCount(4000, 0.5), 512);
});

const TOKENS = ["[CLS]", "the", "un", "##aff", "##able", "cat", "sat", "on", "##ward", "[SEP]"];

test("never masks [CLS] or [SEP], and masks whole words only", () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 200; trial++) {
    const m = wholeWordMask(TOKENS, 0.5, rng);
    assert.is(m[0], 0);
    assert.is(m[9], 0);
    // "un ##aff ##able" and "on ##ward" are all-or-nothing
    assert.ok(m[2] === m[3] && m[3] === m[4], `word split: ${Array.from(m)}`);
    assert.ok(m[7] === m[8], `word split: ${Array.from(m)}`);
    const n = m.reduce((a, b) => a + b, 0);
    assert.ok(n <= maskCount(TOKENS.length, 0.5));
    assert.ok(n >= 1);
  }
});

test("fills the budget exactly when single-piece words can", () => {
  const tokens = ["[CLS]", ...Array.from({ length: 20 }, (_, i) => `w${i}`), "[SEP]"];
  const m = wholeWordMask(tokens, 0.3, new Rng(1));
  assert.is(m.reduce((a, b) => a + b, 0), maskCount(22, 0.3));
});

test("same seed, same mask", () => {
  assert.equal(Array.from(wholeWordMask(TOKENS, 0.3, new Rng(8))), Array.from(wholeWordMask(TOKENS, 0.3, new Rng(8))));
});

/** Hugging Face's _whole_word_mask as this project first wrote it: the words as lists, found again for every mask. */
function referenceMask(tokens: readonly string[], ratio: number, rng: Rng, order: number[][][]): Uint8Array {
  const words: number[][] = [];
  tokens.forEach((t, i) => {
    if (t === "[CLS]" || t === "[SEP]") return;
    if (words.length > 0 && t.startsWith("##")) words[words.length - 1].push(i);
    else words.push([i]);
  });
  rng.shuffle(words);
  order.push(words.map((w) => w.slice()));
  const budget = maskCount(tokens.length, ratio);
  const mask = new Uint8Array(tokens.length);
  let taken = 0;
  for (const word of words) {
    if (taken >= budget) break;
    if (taken + word.length > budget) continue;
    for (const i of word) mask[i] = 1;
    taken += word.length;
  }
  return mask;
}

test("WholeWords finds the words once and masks as the reference does, draw for draw (and wholeWordMask through it): the words in order, a piece after [SEP] joining the word before it, 0 written into a mask of 1s", () => {
  const tokens = ["[CLS]", "##lead", "the", "un", "##aff", "##able", "cat", "[SEP]", "##s", "on", "[SEP]"];
  const words = new WholeWords(tokens);
  assert.is(words.count, 5);
  for (const ratio of [0.15, 0.5, 1]) {
    const [a, b, c] = [new Rng(11), new Rng(11), new Rng(11)];
    for (let trial = 0; trial < 50; trial++) {
      const [orderA, orderB, orderC]: number[][][][] = [[], [], []];
      const expected = referenceMask(tokens, ratio, a, orderA);
      const visible = words.mask(ratio, b, new Uint8Array(tokens.length).fill(1), 0, 512, orderB);
      assert.equal(Array.from(visible), Array.from(expected, (m) => 1 - m));
      assert.equal(Array.from(wholeWordMask(tokens, ratio, c, 512, orderC)), Array.from(expected));
      assert.equal(orderB, orderA);
      assert.equal(orderC, orderA);
      assert.equal([...orderA[0]].sort((x, y) => x[0] - y[0]), [[1], [2], [3, 4, 5], [6, 8], [9]], "words, '##s' after [SEP] in 'cat'");
    }
    const next = a.uint32();
    assert.equal([b.uint32(), c.uint32()], [next, next], "the same draws");
  }
});

test.run();
