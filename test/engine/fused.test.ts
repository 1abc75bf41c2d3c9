/**
 * lib/engine/fused.ts's counter-based dropout in JavaScript (the reference
 * for the webgpu kernel, which must give the same bits: test/engine/webgpu.test.ts),
 * and the additive mask of a byte matrix on the host path.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { additiveMaskOfBytes, bytesAsWords, DROPOUT, dropoutAttrs, dropoutWithSeed, hash32, registerCounterDropout, repeatedRow } from "../../lib/engine/fused";

test("hash32 is lowbias32: known values, a bijection's spread", () => {
  assert.is(hash32(0), 0);
  // the same function in Python's integers: x ^= x >> 16; x = x * 0x7feb352d mod 2³²; x ^= x >> 15; x = x * 0x846ca68b mod 2³²; x ^= x >> 16
  assert.equal([1, 2, 12345, 0xffffffff].map(hash32), [1753845952, 3507691905, 2435775735, 1734902346]);
  const seen = new Set<number>();
  for (let i = 0; i < 100_000; i++) seen.add(hash32(i));
  assert.is(seen.size, 100_000, "no collisions among 100,000 counters (a bijection on u32)");
  let ones = 0;
  for (let i = 0; i < 100_000; i++) ones += hash32(i) >>> 31;
  assert.ok(Math.abs(ones / 100_000 - 0.5) < 0.01, `top bit set in ${ones} of 100,000`);
});

test("counter dropout on cpu: keeps 1 − rate of the elements, scales them by 1/(1 − rate), zeros the rest; a seed gives one mask", async () => {
  await use("cpu");
  registerCounterDropout("cpu");
  const n = 200_003;
  const x = tf.tensor1d(new Rng(1).fillNormal(new Float32Array(n)));
  for (const rate of [0.1, 0.5, 0.7]) {
    const y = dropoutWithSeed(x, rate, 12345).dataSync();
    const xv = x.dataSync();
    const scale = Math.fround(1 / (1 - rate));
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (y[i] !== 0) {
        kept++;
        assert.is(y[i], Math.fround(xv[i] * scale));
      }
    }
    assert.ok(Math.abs(kept / n - (1 - rate)) < 0.005, `rate ${rate}: kept ${kept} of ${n}`);
    assert.equal(Array.from(dropoutWithSeed(x, rate, 12345).dataSync()), Array.from(y), "the same seed, the same mask");
    const other = dropoutWithSeed(x, rate, 12346).dataSync();
    let same = 0;
    for (let i = 0; i < n; i++) same += +((other[i] === 0) === (y[i] === 0));
    assert.ok(same < n * 0.99, "another seed, another mask");
  }
  assert.throws(() => dropoutAttrs(1, 1), /Dropout rate must be in \[0, 1\), got 1\./);
  x.dispose();
});

test("counter dropout's gradient applies the same mask and scale to dy", async () => {
  await use("cpu");
  registerCounterDropout("cpu");
  const x = tf.tensor2d(new Rng(2).fillNormal(new Float32Array(37 * 11)), [37, 11]);
  const dy = tf.tensor2d(new Rng(3).fillNormal(new Float32Array(37 * 11)), [37, 11]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(dropoutWithSeed(t, 0.3, 99), dy)))(x);
  const mask = dropoutWithSeed(tf.onesLike(x), 0.3, 99).dataSync();
  const dv = dy.dataSync();
  const gv = g.dataSync();
  for (let i = 0; i < gv.length; i++) assert.is(gv[i], Math.fround(dv[i] * mask[i]));
  tf.unregisterKernel(DROPOUT, "cpu");
  // without the kernel, tfjs's own dropout (the published runs' masks)
  const plain = dropoutWithSeed(x, 0.3, 99).dataSync();
  const tfjs = tf.dropout(x, 0.3, undefined, 99).dataSync();
  assert.equal(Array.from(plain), Array.from(tfjs));
});

test("bytesAsWords views aligned bytes in place and copies the rest, zero-padded; additiveMaskOfBytes on cpu is (1 − visible) · value but for zero's sign, and a short array is one sentence", async () => {
  await use("cpu");
  const buffer = new Uint8Array(16);
  const aligned = buffer.subarray(4, 12);
  const words = bytesAsWords(aligned);
  assert.ok(words.buffer === buffer.buffer && words.byteOffset === 4 && words.length === 2, "a view of the same memory");
  for (const bytes of [buffer.subarray(1, 9), buffer.subarray(0, 7)]) {
    bytes.set([1, 0, 1, 1, 0, 0, 1].slice(0, bytes.length));
    const copy = bytesAsWords(bytes);
    assert.ok(copy.buffer !== buffer.buffer && copy.length === Math.ceil(bytes.length / 4));
    assert.equal(Array.from(new Uint8Array(copy.buffer)), [...Array.from(bytes), ...new Array(4 * copy.length - bytes.length).fill(0)]);
  }
  const value = -3.4028234663852886e38;
  const rng = new Rng(4);
  const shape = [3, 1, 5, 7];
  const bytes = Uint8Array.from({ length: 105 }, () => (rng.float() < 0.5 ? 1 : 0));
  const mask = additiveMaskOfBytes(bytesAsWords(bytes), shape, value);
  const composed = tf.mul(tf.sub(1, tf.tensor(bytes, shape, "float32")), value);
  assert.equal(mask.shape, shape);
  assert.equal(Array.from(mask.dataSync()).map((v) => v || 0), Array.from(composed.dataSync()).map((v) => v || 0));
  assert.ok(Array.from(mask.dataSync()).every((v) => !Object.is(v, -0)), "0, not −0, where visible (the same scores once added)");
  assert.throws(() => additiveMaskOfBytes(new Int32Array(1), [5], value), /A mask of shape \[5\] needs 5 bytes and was given 4; pass bytesAsWords of all its bytes\./);
  tf.dispose([mask, composed]);
});


test("repeatedRow: under the tape on cpu the row gathered at each position (the gradient's published order of sums), else the row alone; the same sum of a broadcast add and the same gradient either way", async () => {
  await use("cpu");
  const table = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
  const dy = tf.tensor3d(Array.from({ length: 2 * 4 * 2 }, (_, i) => (i * 7) % 5 - 2), [2, 4, 2]);
  const untaped = repeatedRow(table, 1, 4);
  assert.equal(untaped.shape, [1, 2]);
  assert.equal(Array.from(await untaped.data()), [3, 4]);
  let shape: number[] = [];
  const grad = tf.grad((t: tf.Tensor) => {
    const rows = repeatedRow(t as tf.Tensor2D, 1, 4);
    shape = rows.shape;
    return tf.sum(tf.mul(tf.add(tf.zeros([2, 4, 2]), rows), dy));
  })(table);
  assert.equal(shape, [4, 2], "taped on cpu: gathered at each of the 4 positions");
  // the row's gradient is dy summed over the batch and the positions; the other rows get none
  const sums = [0, 1].map((h) => Array.from(dy.dataSync()).filter((_, i) => i % 2 === h).reduce((a, b) => a + b, 0));
  assert.equal(Array.from(await grad.data()), [0, 0, ...sums, 0, 0]);
  tf.dispose([table, dy, untaped, grad]);
});

test.run();
