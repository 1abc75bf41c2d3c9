import { test } from "uvu";
import * as assert from "uvu/assert";
import { bootstrapCI, mean, pairedRandomizationTest, sd } from "../../lib/probe/stats";
import { Rng } from "../../lib/engine/rng";

test("mean and sample sd", () => {
  assert.is(mean([1, 2, 3, 4]), 2.5);
  assert.ok(Math.abs(sd([1, 2, 3, 4]) - Math.sqrt(5 / 3)) < 1e-12);
  assert.is(sd([7]), 0);
});

test("the bootstrap interval holds the mean, narrows with more queries, and reproduces with its seed", () => {
  const rng = new Rng(3);
  const small = Array.from({ length: 30 }, () => rng.float());
  const large = Array.from({ length: 3000 }, () => rng.float());
  const [lo, hi] = bootstrapCI(small, { seed: 1 });
  assert.ok(lo < mean(small) && mean(small) < hi);
  const [lo2, hi2] = bootstrapCI(large, { seed: 1 });
  assert.ok(hi2 - lo2 < (hi - lo) / 5, `${hi2 - lo2} vs ${hi - lo}`);
  // Uniform(0, 1): sd 0.2887; the 95% half-width for n = 3000 is about 1.96 * 0.2887 / sqrt(3000) = 0.0103.
  assert.ok(Math.abs((hi2 - lo2) / 2 - 0.0103) < 0.002, `${(hi2 - lo2) / 2}`);
  assert.equal(bootstrapCI(small, { seed: 1 }), [lo, hi]);
});

test("paired randomization test: identical runs p = 1, a consistent gain is significant, and the null is rejected at its level", () => {
  const a = Array.from({ length: 50 }, (_, i) => (i % 7) / 7);
  assert.is(pairedRandomizationTest(a, a).p, 1);
  const better = a.map((x) => x + 0.05);
  const r = pairedRandomizationTest(better, a, { samples: 2000 });
  assert.ok(Math.abs(r.difference - 0.05) < 1e-12);
  assert.ok(r.p < 0.001, String(r.p)); // every difference has the same sign
  // Under the null (symmetric noise), p < 0.05 about 5% of the time: the test's size is right.
  const rng = new Rng(9);
  let rejected = 0;
  for (let t = 0; t < 200; t++) {
    const noisy = a.map((x) => x + (rng.float() - 0.5) * 0.01);
    if (pairedRandomizationTest(noisy, a, { samples: 1000, seed: t }).p < 0.05) rejected++;
  }
  assert.ok(rejected >= 3 && rejected <= 20, `${rejected} of 200 null datasets rejected at 0.05`);
  assert.throws(() => pairedRandomizationTest([1, 2], [1]), /same queries for both runs; got 2 and 1/);
});

test("exact small case: with 3 queries the p-value is the share of the 8 sign patterns at least as extreme", () => {
  // d = [1, 1, 1]: only all-plus and all-minus reach |mean| 1, so p = 2/8 = 0.25.
  const r = pairedRandomizationTest([1, 1, 1], [0, 0, 0], { samples: 40_000, seed: 2 });
  assert.ok(Math.abs(r.p - 0.25) < 0.01, String(r.p));
});

test("the randomization test's signs are rng.float() < 0.5, as it drew them before it went branchless: the same p for every seed", () => {
  const reference = (a: number[], b: number[], samples: number, seed: number) => {
    const d = a.map((x, i) => x - b[i]);
    const observed = Math.abs(mean(d));
    const rng = new Rng(seed);
    let hits = 0;
    for (let s = 0; s < samples; s++) {
      let sum = 0;
      for (let i = 0; i < d.length; i++) sum += rng.float() < 0.5 ? d[i] : -d[i];
      if (Math.abs(sum / d.length) >= observed - 1e-12) hits++;
    }
    return (hits + 1) / (samples + 1);
  };
  const rng = new Rng(11);
  for (let seed = 0; seed < 5; seed++) {
    const a = Array.from({ length: 40 + seed }, () => rng.float());
    const b = a.map((x) => x + (rng.float() - 0.45) * 0.2);
    assert.is(pairedRandomizationTest(a, b, { samples: 3000, seed }).p, reference(a, b, 3000, seed), `seed ${seed}`);
  }
});

test.run();
