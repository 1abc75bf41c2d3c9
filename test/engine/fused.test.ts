/**
 * lib/engine/fused.ts's counter-based dropout in JavaScript (the reference
 * for the webgpu kernel, which must give the same bits: test/engine/webgpu.test.ts).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { DROPOUT, dropoutAttrs, dropoutWithSeed, hash32, registerCounterDropout } from "../../lib/engine/fused";

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

test.run();
