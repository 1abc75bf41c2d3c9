import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { crossEntropy, embeddingLookup, gelu, MASK_VALUE } from "../../lib/model/bert";

for (const name of ["cpu", "wasm"] as const) {
  test(`${name}: embeddingLookup gives [PAD] lookups no gradient, other rows the usual sum`, async () => {
    await use(name);
    const table = tf.variable(tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]));
    const ids = tf.tensor2d([[0, 1, 0, 3], [1, 1, 4, 0]], [2, 4], "int32");
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(embeddingLookup(table, ids, 0), tf.tensor1d([1, 10]))) as tf.Scalar, [table]);
    // rows weigh 1·a + 10·b: [PAD] (21) three times, row 1 (43) three times, row 3 (87), row 4 (109)
    assert.is(value.dataSync()[0], 3 * 21 + 3 * 43 + 87 + 109);
    assert.equal(Array.from(grads[table.name].dataSync()), [0, 0, 3, 30, 0, 0, 1, 10, 1, 10]);
    tf.dispose([table, ids, value, ...Object.values(grads)]);
  });

  test(`${name}: crossEntropy equals -log softmax at the label, and its gradient is (softmax - onehot)/N`, async () => {
    await use(name);
    const logits = tf.variable(tf.tensor2d([[1, 2, 3], [0, 0, 0]]));
    const labels = tf.tensor1d([2, 0], "int32");
    const { value, grads } = tf.variableGrads(() => crossEntropy(logits, labels), [logits]);
    const lse0 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
    const expected = ((lse0 - 3) + Math.log(3)) / 2;
    assert.ok(Math.abs(value.dataSync()[0] - expected) < 1e-6);
    const p0 = [1, 2, 3].map((x) => Math.exp(x - lse0));
    const want = [p0[0] / 2, p0[1] / 2, (p0[2] - 1) / 2, (1 / 3 - 1) / 2, 1 / 6, 1 / 6];
    const got = Array.from(grads[logits.name].dataSync());
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-6, `${i}: ${g} vs ${want[i]}`));
    tf.dispose([logits, labels, value, ...Object.values(grads)]);
  });

  test(`${name}: a fully masked attention row softmaxes to uniform, not NaN`, async () => {
    await use(name);
    const p = tf.softmax(tf.add(tf.tensor2d([[0.3, -1, 2]]), MASK_VALUE)).dataSync();
    assert.ok(Array.from(p).every((x) => Math.abs(x - 1 / 3) < 1e-6), `${Array.from(p)}`);
  });
}

test("gelu is the exact erf form", async () => {
  await use("cpu");
  const y = gelu(tf.tensor1d([-1, 0, 1, 2])).dataSync();
  // x·Φ(x): Φ(1) = 0.8413447460685429, Φ(2) = 0.9772498680518208
  const want = [-(1 - 0.8413447460685429), 0, 0.8413447460685429, 2 * 0.9772498680518208];
  Array.from(y).forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${i}: ${v}`));
});

test.run();
