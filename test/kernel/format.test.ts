import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { tensorSummary, toBundle } from "../../kernel/runtime/format";

test("plain values are util.inspect'ed; undefined shows nothing", () => {
  assert.equal(toBundle(42), { "text/plain": "42" });
  assert.equal(toBundle("ab"), { "text/plain": "'ab'" });
  assert.equal(toBundle([1, 2]), { "text/plain": "[ 1, 2 ]" });
  assert.is(toBundle(undefined), null);
  assert.equal(toBundle(null), { "text/plain": "null" });
});

test("objects choose their own bundle: Jupyter.display first, then toMimeBundle", () => {
  const both = { [Symbol.for("Jupyter.display")]: () => ({ "text/html": "<b>j</b>" }), toMimeBundle: () => ({ "text/plain": "m" }) };
  assert.equal(toBundle(both), { "text/html": "<b>j</b>", "text/plain": "<rich output>" });
  assert.equal(toBundle({ toMimeBundle: () => ({ "text/plain": "m", "text/markdown": "*m*" }) }), { "text/plain": "m", "text/markdown": "*m*" });
  assert.throws(() => toBundle({ toMimeBundle: () => 5 }), /must return a MIME bundle/);
});

test("tensors show dtype, shape and a value summary", async () => {
  await tf.setBackend("cpu");
  const t = tf.tensor2d([
    [1, 2],
    [3, 4],
  ]);
  const text = toBundle(t)!["text/plain"] as string;
  assert.match(text, /^Tensor float32 \[2, 2\]  min 1  mean 2\.5000  max 4\n/);
  assert.match(text, /\[\[1, 2\],/);
  assert.match(tensorSummary(tf.tensor1d([1, NaN, 3])), /NaN 1/);
  const s = tf.scalar(3, "int32");
  assert.match(tensorSummary(s), /^Tensor int32 \[\]  min 3  mean 3  max 3/);
  t.dispose();
  assert.match(tensorSummary(t), /\(disposed\)/);
  s.dispose();
});

test.run();
