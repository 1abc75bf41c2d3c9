/**
 * Parity with the plain-PyTorch reference (bench/reference/retromae_ref.py),
 * through a committed fixture; regenerate with `npm run fixture:parity`.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { loadBatch } from "../../lib/masking/batch-io";
import { saveCheckpoint } from "../../lib/model/retromae";
import { BATCH_FILE, EXPECTED_FILE, fixtureBatch, fixtureModel } from "../fixtures/parity/spec";
import { testVulkan, useSoftwareVulkan } from "../webgpu-helpers";

interface Expected {
  cls: number[][];
  encoder_loss: number;
  decoder_loss: number;
  bow_loss: number;
  model_sha256: string;
  grads: Record<string, { norm: number; max_abs: number; indices: number[]; values: number[] }>;
}

const expected = JSON.parse(fs.readFileSync(EXPECTED_FILE, "utf8")) as Expected;

test("the fixture's model and batch are what this code makes from the seed", async () => {
  await use("cpu");
  const model = fixtureModel();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parity-"));
  await saveCheckpoint(model, dir);
  const sha = crypto.createHash("sha256").update(fs.readFileSync(path.join(dir, "model.safetensors"))).digest("hex");
  assert.is(sha, expected.model_sha256, "init or checkpoint format changed: regenerate with npm run fixture:parity");
  const fresh = fixtureBatch();
  const saved = loadBatch(BATCH_FILE);
  assert.equal(Array.from(saved.encoderInputIds), Array.from(fresh.encoderInputIds));
  assert.equal(Array.from(saved.decoderAttentionMask), Array.from(fresh.decoderAttentionMask));
  model.dispose();
});

// webgpu runs on SwiftShader here (Vulkan on the CPU): the one real-tiny test of that backend.
// scripts/test.js runs this file again on lavapipe, for webgpu only.
useSoftwareVulkan();
const BACKENDS = testVulkan() === "lavapipe" ? (["webgpu"] as const) : (["cpu", "wasm", "native", "webgpu"] as const);

for (const name of BACKENDS) {
  test(`${name}: [CLS], losses and gradients match PyTorch`, async () => {
    await use(name);
    const model = fixtureModel();
    const batch = loadBatch(BATCH_FILE);
    const clsTensor = tf.tidy(() => model.losses(batch, { training: false }).cls);
    const cls = (await clsTensor.array()) as number[][];
    clsTensor.dispose();
    let worstCls = 0;
    cls.forEach((row, b) => row.forEach((v, i) => (worstCls = Math.max(worstCls, Math.abs(v - expected.cls[b][i])))));
    assert.ok(worstCls < 1e-4, `[CLS] max abs diff ${worstCls}`);

    const { grads, values } = await model.forwardBackward(batch, { training: false });
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    assert.ok(rel(values.encoderLoss, expected.encoder_loss) < 1e-4, `encoder loss ${values.encoderLoss} vs ${expected.encoder_loss}`);
    assert.ok(rel(values.decoderLoss, expected.decoder_loss) < 1e-4, `decoder loss ${values.decoderLoss} vs ${expected.decoder_loss}`);
    assert.equal([...grads.keys()].sort(), Object.keys(expected.grads).sort());
    for (const [wname, g] of grads) {
      const e = expected.grads[wname];
      const data = await g.data();
      let sq = 0;
      for (let i = 0; i < data.length; i++) sq += data[i] * data[i];
      const norm = Math.sqrt(sq);
      assert.ok(Math.abs(norm - e.norm) <= 1e-3 * e.norm + 1e-9, `${wname}: grad norm ${norm} vs ${e.norm}`);
      e.indices.forEach((ix, k) => {
        assert.ok(Math.abs(data[ix] - e.values[k]) <= 1e-3 * e.max_abs + 1e-9, `${wname}[${ix}]: ${data[ix]} vs ${e.values[k]}`);
      });
    }
    tf.dispose([...grads.values()]);
    model.dispose();
  });
}

test("DupMAE bag-of-words loss matches PyTorch; off by default, weighted 0.1 into the total when on", async () => {
  await use("wasm");
  const model = fixtureModel();
  const batch = loadBatch(BATCH_FILE);
  const off = await model.forwardBackward(batch, { training: false });
  assert.is(off.values.bowLoss, undefined);
  tf.dispose([...off.grads.values()]);
  model.bowLossWeight = 0.1;
  const on = await model.forwardBackward(batch, { training: false });
  const bow = on.values.bowLoss!;
  assert.ok(Math.abs(bow - expected.bow_loss) / expected.bow_loss < 1e-4, `bow ${bow} vs ${expected.bow_loss}`);
  assert.ok(Math.abs(on.values.loss - (on.values.encoderLoss + on.values.decoderLoss + 0.1 * bow)) < 1e-4);
  for (const g of on.grads.values()) assert.ok(g.dataSync().every(Number.isFinite));
  tf.dispose([...on.grads.values()]);
  model.dispose();
});

test.run();
