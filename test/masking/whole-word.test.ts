import { test } from "uvu";
import * as assert from "uvu/assert";
import { Rng } from "../../lib/engine/rng";
import { maskCount, pyRound, wholeWordMask } from "../../lib/masking/whole-word";

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

test.run();
