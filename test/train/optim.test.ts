import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { AdamW, clipGradNorm } from "../../lib/train/optim";
import { LrSchedule } from "../../lib/train/schedule";

/** Two AdamW steps computed by hand in float64, as torch.optim.AdamW does them. */
function byHand(p0: number[], gs: number[][], lr: number, wd: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): number[] {
  let p = [...p0];
  let m = p.map(() => 0);
  let v = p.map(() => 0);
  gs.forEach((g, k) => {
    const t = k + 1;
    p = p.map((x) => x * (1 - lr * wd));
    m = m.map((x, i) => b1 * x + (1 - b1) * g[i]);
    v = v.map((x, i) => b2 * x + (1 - b2) * g[i] * g[i]);
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    p = p.map((x, i) => x - (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps)));
  });
  return p;
}

test("AdamW matches a step computed by hand, with decoupled decay on weights only", async () => {
  await use("cpu");
  const w0 = [0.5, -1.5, 2.0];
  const b0 = [0.1, 0.2, -0.3];
  const params = new Map([
    ["layer.dense.weight", tf.variable(tf.tensor1d(w0))],
    ["layer.dense.bias", tf.variable(tf.tensor1d(b0))],
    ["layer.LayerNorm.weight", tf.variable(tf.tensor1d(w0))],
  ]);
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
  assert.ok(opt.decays("layer.dense.weight"));
  assert.not.ok(opt.decays("layer.dense.bias"));
  assert.not.ok(opt.decays("layer.LayerNorm.weight"));
  const gs = [
    [0.3, -0.2, 1.0],
    [-0.1, 0.4, 0.5],
  ];
  for (const g of gs) {
    const grads = new Map([...params.keys()].map((k) => [k, tf.tensor1d(g)]));
    opt.apply(grads);
    tf.dispose([...grads.values()]);
  }
  const close = (got: ArrayLike<number>, want: number[]) => want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-6, `${got[i]} vs ${w}`));
  close(params.get("layer.dense.weight")!.dataSync(), byHand(w0, gs, 1e-2, 0.1));
  close(params.get("layer.dense.bias")!.dataSync(), byHand(b0, gs, 1e-2, 0));
  close(params.get("layer.LayerNorm.weight")!.dataSync(), byHand(w0, gs, 1e-2, 0));
  assert.is(opt.step, 2);
});

test("native backend: AdamW updates in place from the second step (no kernels run) and still matches by hand", async () => {
  await use("native");
  const w0 = Array.from({ length: 50 }, (_, i) => Math.sin(i));
  const params = new Map([
    ["layer.dense.weight", tf.variable(tf.tensor1d(w0))],
    ["layer.dense.bias", tf.variable(tf.tensor1d(w0))],
  ]);
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
  const gs = [0, 1, 2, 3].map((k) => w0.map((_, i) => Math.cos(i * (k + 1))));
  const kernelsPerStep: number[] = [];
  for (const g of gs) {
    const grads = new Map([...params.keys()].map((k) => [k, tf.tensor1d(g)]));
    const prof = await tf.profile(() => opt.apply(grads));
    kernelsPerStep.push(prof.kernels.length);
    tf.dispose([...grads.values()]);
  }
  assert.ok(kernelsPerStep[0] > 0, "the first step runs the tensor ops");
  assert.equal(kernelsPerStep.slice(1), [0, 0, 0], "later steps update in place");
  const close = (got: ArrayLike<number>, want: number[]) => want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-6, `${got[i]} vs ${w}`));
  close(params.get("layer.dense.weight")!.dataSync(), byHand(w0, gs, 1e-2, 0.1));
  close(params.get("layer.dense.bias")!.dataSync(), byHand(w0, gs, 1e-2, 0));
  const state = await opt.getState();
  state.m.get("layer.dense.weight")![0] = 123; // a copy: the optimizer's moment is untouched
  assert.not.equal((await opt.getState()).m.get("layer.dense.weight")![0], 123);
  opt.dispose();
  params.forEach((p) => p.dispose());
});

test("AdamW state round-trips and leaks no tensors per step", async () => {
  await use("cpu");
  const p = new Map([["x.weight", tf.variable(tf.tensor1d([1, 2, 3]))]]);
  const start = tf.memory().numTensors;
  const opt = new AdamW(p);
  const before = tf.memory().numTensors;
  assert.is(before, start + 2, "two moments per weight, nothing else");
  for (let i = 0; i < 5; i++) {
    const g = new Map([["x.weight", tf.tensor1d([0.1, 0.2, 0.3])]]);
    opt.apply(g);
    tf.dispose([...g.values()]);
  }
  assert.is(tf.memory().numTensors, before);
  const state = await opt.getState();
  const q = new Map([["x.weight", tf.variable(tf.tensor1d([1, 2, 3]))]]);
  const opt2 = new AdamW(q);
  opt2.setState(state);
  assert.is(opt2.step, 5);
  assert.equal(Array.from((await opt2.getState()).m.get("x.weight")!), Array.from(state.m.get("x.weight")!));
  assert.throws(() => opt2.setState({ step: 1, m: new Map(), v: new Map() }), /no matching "m" for weight "x.weight"/);
  const live = tf.memory().numTensors;
  opt2.dispose();
  assert.is(tf.memory().numTensors, live - 2, "dispose frees the moments");
  assert.throws(() => new AdamW(p, { lr: -1 }), /lr must be a finite number >= 0/);
  assert.throws(() => new AdamW(p, { betas: [0.9, 1] }), /betas must be in \[0, 1\)/);
});

test("clipGradNorm reports the norm before clipping and scales as torch does", async () => {
  await use("cpu");
  const grads = new Map([
    ["a", tf.tensor1d([3, 0])],
    ["b", tf.tensor1d([0, 4])],
  ]);
  const { grads: clipped, norm } = clipGradNorm(grads, 1.0);
  assert.ok(Math.abs(norm.dataSync()[0] - 5) < 1e-6);
  const coef = 1 / (5 + 1e-6);
  assert.ok(Math.abs(clipped.get("a")!.dataSync()[0] - 3 * coef) < 1e-7);
  assert.ok(Math.abs(clipped.get("b")!.dataSync()[1] - 4 * coef) < 1e-7);
  const small = new Map([["a", tf.tensor1d([0.3, 0.4])]]);
  const before = small.get("a")!.dataSync().slice();
  const r = clipGradNorm(small, 1.0);
  assert.equal(new Uint32Array(r.grads.get("a")!.dataSync().buffer), new Uint32Array(before.buffer), "under the limit: the same bits");
  assert.ok(Math.abs(r.norm.dataSync()[0] - 0.5) < 1e-6);
});

for (const name of ["cpu", "native"] as const) {
  test(`clipAndApply is clipGradNorm, the guard on the norm, then apply, bit for bit (${name}); it takes the gradients`, async () => {
    await use(name);
    const make = () => new Map([["x.weight", tf.variable(tf.tensor1d([1, -2, 3]))], ["x.bias", tf.variable(tf.tensor1d([0.5]))]]);
    const g = (s: number) => new Map([["x.weight", tf.tensor1d([3 * s, 0.25, -1])], ["x.bias", tf.tensor1d([4 * s])]]);
    const [pa, pb] = [make(), make()];
    const [a, b] = [new AdamW(pa, { lr: 1e-2 }), new AdamW(pb, { lr: 1e-2 })];
    const start = tf.memory().numTensors;
    for (const s of [1, 0.01]) {
      const ga = g(s);
      const seen: number[] = [];
      const r = a.clipAndApply(ga, { maxNorm: 1, lr: 1e-2, guard: (norm) => (seen.push(norm.dataSync()[0]), tf.isFinite(norm) as tf.Scalar) });
      assert.ok([...ga.values()].every((t) => t.isDisposed), "the gradients are taken");
      const { grads, norm } = clipGradNorm(g(s), 1);
      const ok = tf.isFinite(norm) as tf.Scalar;
      b.apply(grads, 1e-2, ok);
      assert.equal(r.norm.dataSync(), norm.dataSync(), "the norm");
      assert.equal(seen, Array.from(norm.dataSync()), "the guard sees the norm");
      assert.equal(r.ok!.dataSync(), ok.dataSync());
      tf.dispose([r.norm, r.ok!, norm, ok, ...grads.values()]);
    }
    for (const k of pa.keys()) assert.equal(new Uint32Array(pa.get(k)!.dataSync().buffer), new Uint32Array(pb.get(k)!.dataSync().buffer), k);
    assert.is(tf.memory().numTensors, start, "nothing left behind");
    a.dispose();
    b.dispose();
  });


  test(`AdamW with a false device flag leaves weights and moments as they were (${name}); true gives the unguarded update`, async () => {
    await use(name);
    const make = () => new Map([["x.weight", tf.variable(tf.tensor1d([1, -2, 3]))]]);
    const g = () => new Map([["x.weight", tf.tensor1d([0.5, 0.25, -1])]]);
    const [pa, pb, pc] = [make(), make(), make()];
    const [a, b, c] = [new AdamW(pa), new AdamW(pb), new AdamW(pc)];
    const yes = tf.scalar(true, "bool");
    const no = tf.scalar(false, "bool");
    const start = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const [ga, gb, gc] = [g(), g(), g()];
      a.apply(ga, 1e-2, yes);
      b.apply(gb, 1e-2);
      c.apply(gc, 1e-2, no);
      tf.dispose([...ga.values(), ...gb.values(), ...gc.values()]);
    }
    assert.is(tf.memory().numTensors, start, "no tensors left behind");
    assert.equal(Array.from(pa.get("x.weight")!.dataSync()), Array.from(pb.get("x.weight")!.dataSync()));
    assert.equal(Array.from(pc.get("x.weight")!.dataSync()), [1, -2, 3]);
    assert.equal(Array.from((await c.getState()).m.get("x.weight")!), [0, 0, 0]);
    tf.dispose([yes, no]);
    for (const o of [a, b, c]) o.dispose();
    for (const p of [pa, pb, pc]) p.forEach((v) => v.dispose());
  });
}

test("linear and cosine schedules with warmup, as HF's", () => {
  const lin = new LrSchedule({ lr: 1e-4, totalSteps: 100, warmupRatio: 0.1 });
  assert.is(lin.warmupSteps, 10);
  const approx = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  approx(lin.at(0), 0);
  approx(lin.at(5), 0.5e-4);
  approx(lin.at(10), 1e-4);
  approx(lin.at(55), 0.5e-4);
  approx(lin.at(100), 0);
  const cos = new LrSchedule({ lr: 1e-4, totalSteps: 100, warmupSteps: 0, decay: "cosine" });
  approx(cos.at(0), 1e-4);
  approx(cos.at(50), 0.5e-4);
  approx(cos.at(100), 0);
  assert.is(new LrSchedule({ lr: 1, totalSteps: 7, warmupRatio: 0.1 }).warmupSteps, 1); // ceil, as HF
  assert.throws(() => new LrSchedule({ lr: 1, totalSteps: 0 }), /totalSteps must be a positive whole number/);
  assert.throws(() => new LrSchedule({ lr: 1, totalSteps: 10, warmupRatio: 2 }), /warmupRatio must be in \[0, 1\]/);
});

test.run();
