import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { nativeUnavailableReason } from "../../lib/engine/native";
import { bertEmbeddings, bertEncoder, crossEntropy, embeddingLookup, gelu, MASK_VALUE, paddingMask, tiedSoftmaxCrossEntropy } from "../../lib/model/bert";
import { RetroMAE } from "../../lib/model/retromae";

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

  test(`${name}: the tied MLM cross-entropy with its rows in parts (a GPU's largest buffer) gives the whole's loss, accuracy and gradients, with and without padded rows`, async () => {
    await use(name);
    const [N, H, V] = [7, 5, 11];
    const rng = new Rng(12);
    const t = tf.variable(tf.tensor2d(rng.fillNormal(new Float32Array(N * H)), [N, H]));
    const E = tf.variable(tf.tensor2d(rng.fillNormal(new Float32Array(V * H)), [V, H]));
    const b = tf.variable(tf.tensor1d(rng.fillNormal(new Float32Array(V))));
    const labels = tf.tensor1d([3, 0, 10, 3, 7, 1, 5], "int32");
    for (const weights of [undefined, tf.tensor1d([1, 1, 0, 1, 1, 0, 0])]) {
      const run = (maxRows: number) => {
        const before = tf.memory().numTensors;
        let acc = 0;
        const { value, grads } = tf.variableGrads(() => {
          const r = tiedSoftmaxCrossEntropy(t, E, b, labels, weights, maxRows);
          acc = r.accuracy.dataSync()[0];
          r.accuracy.dispose();
          return r.loss;
        }, [t, E, b]);
        const out = { loss: value.dataSync()[0], acc, grads: [t, E, b].map((v) => Array.from(grads[v.name].dataSync())) };
        tf.dispose([value, ...Object.values(grads)]);
        assert.is(tf.memory().numTensors, before, `maxRows ${maxRows}: no tensor left`);
        return out;
      };
      const whole = run(Infinity);
      assert.ok(whole.loss > 0 && whole.acc >= 0);
      for (const maxRows of [1, 3, 6]) {
        const parts = run(maxRows); // 7 parts of 1; 3, 3, 1; 4 and 3
        assert.ok(Math.abs(parts.loss - whole.loss) <= 1e-6 * whole.loss, `maxRows ${maxRows}: loss ${parts.loss} vs ${whole.loss}`);
        assert.is(parts.acc, whole.acc, `maxRows ${maxRows}: accuracy`);
        parts.grads.forEach((g, k) => g.forEach((x, i) => assert.ok(Math.abs(x - whole.grads[k][i]) <= 1e-6, `maxRows ${maxRows}, weights ${!!weights}: gradient ${k}[${i}] ${x} vs ${whole.grads[k][i]}`)));
        if (weights) [2, 5, 6].forEach((r) => assert.ok(parts.grads[0].slice(r * H, (r + 1) * H).every((x) => x === 0), `padded row ${r} gets no gradient`));
      }
      weights?.dispose();
    }
    tf.dispose([t, E, b, labels]);
  });

  test(`${name}: a fully masked attention row softmaxes to uniform, not NaN`, async () => {
    await use(name);
    const p = tf.softmax(tf.add(tf.tensor2d([[0.3, -1, 2]]), MASK_VALUE)).dataSync();
    assert.ok(Array.from(p).every((x) => Math.abs(x - 1 / 3) < 1e-6), `${Array.from(p)}`);
  });
}

// native only where the addon is built (the native tests require it; this file does not)
const encodedOn = new Map<string, number[]>();
for (const name of ["cpu", "wasm", ...(nativeUnavailableReason() ? [] : ["native" as const])] as const) {
  test(`${name}: bertEncoder with clsOnly gives the full stack's [CLS] rows; encode uses it`, async () => {
    await use(name);
    const model = RetroMAE.create("tiny", { rng: new Rng(3), overrides: { numHiddenLayers: 3 } });
    const [B, L] = [3, 9];
    const ids = tf.tensor2d(Int32Array.from({ length: B * L }, (_, i) => 1000 + ((i * 7919) % 20000)), [B, L], "int32");
    const attn = tf.tensor2d(Int32Array.from({ length: B * L }, (_, i) => (i % L < L - (i / L | 0) * 3 ? 1 : 0)), [B, L], "int32"); // rows of 9, 6 and 3 tokens
    const before = tf.memory().numTensors;
    const [full, cls, encoded] = tf.tidy(() => {
      const opts = { training: false };
      const h = bertEmbeddings(model.weights, model.config, ids, null, opts);
      const mask = paddingMask(attn);
      const full = bertEncoder(model.weights, model.config, h, mask, opts); // [B, L, H]
      const cls = bertEncoder(model.weights, model.config, h, mask, opts, true); // [B, 1, H]
      return [tf.slice(full, [0, 0, 0], [B, 1, -1]), cls, model.encode(ids, attn).reshape([B, 1, -1])];
    });
    assert.equal(cls.shape, [B, 1, model.config.hiddenSize]);
    const want = full.dataSync();
    for (const got of [cls.dataSync(), encoded.dataSync()]) {
      const worst = Math.max(...Array.from(got as Float32Array, (x, i) => Math.abs(x - want[i])));
      assert.ok(worst < 1e-5, `largest difference ${worst}`);
    }
    encodedOn.set(name, Array.from(encoded.dataSync()));
    tf.dispose([full, cls, encoded]);
    assert.is(tf.memory().numTensors, before);
    tf.dispose([ids, attn]);
    model.dispose();
  });
}

for (const name of ["cpu", "wasm", ...(nativeUnavailableReason() ? [] : ["native" as const])] as const) {
  test(`${name}: bertEmbeddings without token types adds type 0's row as it is when no gradient is recorded (encoding): bit for bit the gather of type 0 at every position (training's path)`, async () => {
    await use(name);
    const model = RetroMAE.create("tiny", { rng: new Rng(4), overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
    const [B, L] = [2, 7];
    const ids = tf.tensor2d(Int32Array.from({ length: B * L }, (_, i) => 1000 + i * 31), [B, L], "int32");
    const zeros = tf.zeros([B, L], "int32") as tf.Tensor2D;
    const opts = { training: false };
    const [row, gathered] = tf.tidy(() => [bertEmbeddings(model.weights, model.config, ids, null, opts), bertEmbeddings(model.weights, model.config, ids, zeros, opts)]);
    assert.ok(Math.abs(model.weights.get("bert.embeddings.token_type_embeddings.weight")!.dataSync()[0]) > 0, "a type row that is not zero");
    assert.equal(Array.from(row.dataSync()), Array.from(gathered.dataSync()));
    tf.dispose([row, gathered, ids, zeros]);
    model.dispose();
  });
}

test("encode gives the same vectors on every backend (native: stacked Q|K|V read in place by the fused attention)", () => {
  const cpu = encodedOn.get("cpu")!;
  for (const [name, got] of encodedOn) {
    const worst = Math.max(...got.map((x, i) => Math.abs(x - cpu[i]) / (1e-3 + Math.abs(cpu[i]))));
    assert.ok(worst < 1e-3, `${name}: largest relative difference ${worst}`);
  }
  assert.ok(encodedOn.size >= 2);
});

test("gelu is the exact erf form", async () => {
  await use("cpu");
  const y = gelu(tf.tensor1d([-1, 0, 1, 2])).dataSync();
  // x·Φ(x): Φ(1) = 0.8413447460685429, Φ(2) = 0.9772498680518208
  const want = [-(1 - 0.8413447460685429), 0, 0.8413447460685429, 2 * 0.9772498680518208];
  Array.from(y).forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${i}: ${v}`));
});

test.run();
