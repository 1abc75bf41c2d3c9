import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { Rng } from "../../lib/engine/rng";
import { use } from "../../lib/engine/backend";

test("same seed, same stream; different seed, different stream", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const xa = Array.from({ length: 100 }, () => a.uint32());
  const xb = Array.from({ length: 100 }, () => b.uint32());
  const xc = Array.from({ length: 100 }, () => c.uint32());
  assert.equal(xa, xb);
  assert.not.equal(xa, xc);
  assert.ok(xa.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32));
});

test("xoshiro128** matches the reference output for a known state", () => {
  // Reference values computed from the published C algorithm with state {1, 2, 3, 4}.
  const r = Rng.fromState({ algorithm: "xoshiro128**", s: [1, 2, 3, 4], spare: null });
  assert.equal([r.uint32(), r.uint32(), r.uint32()], [11520, 0, 5927040]);
});

/** xoshiro128** as the published C code has it, every word a uint32: the generator before its state was kept as int32. */
function referenceXoshiro(s: number[]): () => number {
  const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
  return () => {
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] = (s[2] ^ s[0]) >>> 0;
    s[3] = (s[3] ^ s[1]) >>> 0;
    s[1] = (s[1] ^ s[2]) >>> 0;
    s[0] = (s[0] ^ s[3]) >>> 0;
    s[2] = (s[2] ^ t) >>> 0;
    s[3] = rotl(s[3], 11);
    return result;
  };
}

test("the state's words past 2^31 give the reference's draws, saved states and ints (with % as the reference's remainder)", () => {
  const start: [number, number, number, number] = [0xdeadbeef, 0x80000000, 0xffffffff, 0x9e3779b9];
  const r = Rng.fromState({ algorithm: "xoshiro128**", s: start, spare: null });
  const ref = [...start];
  const next = referenceXoshiro(ref);
  for (let i = 0; i < 10_000; i++) assert.is(r.uint32(), next());
  assert.equal(r.getState().s, ref, "saved as uint32s");
  // int(n): draws below 2^32 − (2^32 mod n), then the draw mod n
  const bounds = [2, 3, 7, 1000, 1_000_000_007, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 3_000_000_019, 2 ** 32 - 1, 2 ** 32];
  for (const n of bounds) {
    for (let i = 0; i < 2_000; i++) {
      const limit = 2 ** 32 - Number(2n ** 32n % BigInt(n));
      let x = next();
      while (x >= limit) x = next();
      assert.is(r.int(n), Number(BigInt(x) % BigInt(n)), `int(${n})`);
    }
  }
});

test("float is in [0, 1), int is unbiased and in range, normal has mean 0 and std 1", () => {
  const r = new Rng(7);
  const n = 50_000;
  let sum = 0;
  let sq = 0;
  const counts = new Array(5).fill(0);
  for (let i = 0; i < n; i++) {
    const f = r.float();
    assert.ok(f >= 0 && f < 1);
    counts[r.int(5)]++;
    const z = r.normal();
    sum += z;
    sq += z * z;
  }
  assert.ok(Math.abs(sum / n) < 0.02, `mean ${sum / n}`);
  assert.ok(Math.abs(Math.sqrt(sq / n) - 1) < 0.02, `std ${Math.sqrt(sq / n)}`);
  for (const c of counts) assert.ok(Math.abs(c / n - 0.2) < 0.01, `bucket ${c / n}`);
});

test("state saves and restores mid-stream, including the spare normal", () => {
  const r = new Rng(123);
  r.normal(); // leaves a spare behind
  const saved = JSON.parse(JSON.stringify(r.getState()));
  const after = [r.normal(), r.normal(), r.uint32(), r.float()];
  const restored = Rng.fromState(saved);
  assert.equal([restored.normal(), restored.normal(), restored.uint32(), restored.float()], after);
});

test("shuffle and permutation are seeded permutations", () => {
  const p1 = new Rng(5).permutation(50);
  const p2 = new Rng(5).permutation(50);
  assert.equal(p1, p2);
  assert.equal([...p1].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  assert.not.equal(p1, Array.from({ length: 50 }, (_, i) => i));
});

test("fork gives independent, reproducible children", () => {
  const a = new Rng(9);
  const b = new Rng(9);
  const ca = a.fork();
  const cb = b.fork();
  assert.equal(ca.uint32(), cb.uint32());
  assert.equal(a.uint32(), b.uint32());
  assert.not.equal(ca.getState().s, a.getState().s);
});

test("bad seeds and bad states get one clear sentence", () => {
  assert.throws(() => new Rng(1.5), /seed must be a safe integer/);
  assert.throws(() => new Rng(0).setState({ s: [1, 2] } as never), /not a saved xoshiro128\*\* state/);
  assert.throws(() => new Rng(0).int(0), /whole number bound/);
});

test("same seed gives identical tensors on the same backend (init and dropout)", async () => {
  for (const name of ["cpu", "wasm"] as const) {
    await use(name);
    const make = (seed: number) => {
      const rng = new Rng(seed);
      const w = tf.tensor(rng.fillNormal(new Float32Array(256), 0, 0.02), [16, 16]);
      const d = tf.dropout(tf.ones([16, 16]), 0.3, undefined, rng.seed());
      const out = [Array.from(w.dataSync()), Array.from(d.dataSync())];
      tf.dispose([w, d]);
      return out;
    };
    const [w1, d1] = make(11);
    const [w2, d2] = make(11);
    const [w3, d3] = make(12);
    assert.equal(w1, w2, `${name}: init differs for the same seed`);
    assert.equal(d1, d2, `${name}: dropout differs for the same seed`);
    assert.not.equal(w1, w3);
    assert.not.equal(d1, d3);
    assert.ok(d1.some((x) => x === 0) && d1.some((x) => x > 1), "dropout zeroes and rescales");
  }
});

test.run();
