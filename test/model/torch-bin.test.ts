/**
 * pytorch_model.bin, read by the restricted unpickler, against fixtures that
 * real torch.save wrote (test/fixtures/torch/make.py, Debian's python3-torch).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { use } from "../../lib/engine/backend";
import { readCheckpointFiles } from "../../lib/model/checkpoint";
import { loadCheckpoint } from "../../lib/model/retromae";
import { readSafetensors } from "../../lib/model/safetensors";
import { readTorchBin } from "../../lib/model/torch-bin";

const FIX = path.join(__dirname, "..", "fixtures", "torch");
const expected = readSafetensors(path.join(FIX, "expected.safetensors")).tensors;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "torch-bin-"));

function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1e-3, Math.abs(b[i])));
  return worst;
}

test.before(async () => {
  await use("cpu");
});

test("fp32: every weight as torch saved it; the tied decoder and the int64 position_ids view", () => {
  const t = readTorchBin(path.join(FIX, "fp32", "pytorch_model.bin"));
  for (const [name, want] of expected) {
    if (name.startsWith("c_head.")) continue;
    const got = t.get(name)!;
    assert.ok(got, name);
    assert.equal(got.shape, want.shape, name);
    assert.equal(Array.from(got.data as Float32Array), Array.from(want.data as Float32Array), name);
  }
  // Shared storage: the decoder weight is the word embeddings again.
  assert.equal(Array.from(t.get("cls.predictions.decoder.weight")!.data as Float32Array), Array.from(expected.get("bert.embeddings.word_embeddings.weight")!.data as Float32Array));
  // arange(16).expand(1, -1): int64, stride 0 on the first dimension.
  const pos = t.get("bert.embeddings.position_ids")!;
  assert.is(pos.dtype, "I64");
  assert.equal(pos.shape, [1, 16]);
  assert.equal(Array.from(pos.data as BigInt64Array, Number), Array.from({ length: 16 }, (_, i) => i));
});

test("fp16 and bf16 are widened to float32", () => {
  for (const [dtype, tol] of [["fp16", 1e-3], ["bf16", 1e-2]] as const) {
    const t = readTorchBin(path.join(FIX, dtype, "pytorch_model.bin"));
    const name = "bert.encoder.layer.0.intermediate.dense.weight";
    const got = t.get(name)!;
    assert.is(got.dtype, "F32");
    const err = maxRelError(got.data as Float32Array, expected.get(name)!.data as Float32Array);
    assert.ok(err > 0 && err < tol, `${dtype}: max relative error ${err}`);
  }
});

test("a folder with pytorch_model.bin loads as a model, with transformers' unused names reported", () => {
  const { model, report } = loadCheckpoint(path.join(FIX, "fp32"));
  assert.equal(Array.from(model.weights.get("bert.encoder.layer.0.attention.self.query.weight")!.dataSync()), Array.from(expected.get("bert.encoder.layer.0.attention.self.query.weight")!.data as Float32Array));
  assert.ok(report.initialized.every((n) => n.startsWith("c_head.")) && report.initialized.length > 0, report.initialized.join());
  for (const n of ["bert.pooler.dense.weight", "bert.embeddings.position_ids", "cls.predictions.decoder.weight"]) assert.ok(report.unused.includes(n), n);
  model.dispose();
});

test("sharded .bin with its index gives the same weights", () => {
  const files = readCheckpointFiles(path.join(FIX, "sharded"));
  assert.match(files.weightsFile, /pytorch_model\.bin\.index\.json$/);
  const name = "cls.predictions.transform.dense.weight";
  assert.equal(Array.from(files.tensors.get(name)!.data as Float32Array), Array.from(expected.get(name)!.data as Float32Array));
  assert.is(files.tensors.size, readTorchBin(path.join(FIX, "fp32", "pytorch_model.bin")).size);
});

test("the official RetroMAEForPretraining state dict (lm.*, decoder_embeddings.*, c_head.*) loads its decoder too", () => {
  const { model, report } = loadCheckpoint(path.join(FIX, "official"));
  assert.equal(report.initialized, []);
  const name = "c_head.intermediate.dense.weight";
  assert.equal(Array.from(model.weights.get(name)!.dataSync()), Array.from(expected.get(name)!.data as Float32Array));
  assert.ok(report.unused.includes("decoder_embeddings.word_embeddings.weight"), report.unused.join());
  model.dispose();
});

test("a pickle that calls a function is refused, and nothing runs", () => {
  const marker = path.join(FIX, "PWNED");
  fs.rmSync(marker, { force: true });
  assert.throws(() => readTorchBin(path.join(FIX, "evil.bin")), /names the global (posix|os)\.system, which a state dict never needs; it was refused and nothing was run\./);
  assert.not.ok(fs.existsSync(marker));
});

test("bad input gets one sentence: truncated, legacy format, not a checkpoint, a missing shard", () => {
  const good = fs.readFileSync(path.join(FIX, "fp32", "pytorch_model.bin"));
  const cut = path.join(tmp, "cut.bin");
  fs.writeFileSync(cut, good.subarray(0, Math.floor(good.length / 2)));
  assert.throws(() => readTorchBin(cut), /cut\.bin is not a valid PyTorch checkpoint: .*; the download may be incomplete\./);
  const legacy = path.join(tmp, "legacy.bin");
  fs.writeFileSync(legacy, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
  assert.throws(() => readTorchBin(legacy), /legacy \(before 1\.6\) format/);
  const text = path.join(tmp, "text.bin");
  fs.writeFileSync(text, "<html>404</html>");
  assert.throws(() => readTorchBin(text), /is not a PyTorch checkpoint \(not a torch\.save zip archive\)/);
  const shardDir = path.join(tmp, "shards");
  fs.mkdirSync(shardDir);
  fs.copyFileSync(path.join(FIX, "sharded", "config.json"), path.join(shardDir, "config.json"));
  fs.copyFileSync(path.join(FIX, "sharded", "pytorch_model.bin.index.json"), path.join(shardDir, "pytorch_model.bin.index.json"));
  assert.throws(() => readCheckpointFiles(shardDir), /names the shard pytorch_model-00001-of-00002\.bin, which is not in .*; download every shard the index lists\./);
  fs.writeFileSync(path.join(shardDir, "pytorch_model.bin.index.json"), "{}");
  assert.throws(() => readCheckpointFiles(shardDir), /pytorch_model\.bin\.index\.json has no weight_map; it is not a sharded checkpoint's index\./);
  fs.writeFileSync(path.join(shardDir, "pytorch_model.bin.index.json"), "{");
  assert.throws(() => readCheckpointFiles(shardDir), /pytorch_model\.bin\.index\.json is not valid JSON/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
