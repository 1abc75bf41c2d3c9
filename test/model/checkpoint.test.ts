import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { configFromHf, hfConfig } from "../../lib/model/checkpoint";
import { loadCheckpoint, saveCheckpoint } from "../../lib/model/retromae";
import { RetroMAE } from "../../lib/model/retromae";
import { NamedArray, readSafetensors, writeSafetensors } from "../../lib/model/safetensors";
import { bertBaseUncasedVocab } from "../../lib/text/vocab";

const OVERRIDES = { hiddenSize: 16, numAttentionHeads: 2, intermediateSize: 32, maxPositionEmbeddings: 24, vocabSize: 50 };
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "ckpt-"));

async function small(seed = 5): Promise<RetroMAE> {
  await use("cpu");
  return RetroMAE.create("tiny", { rng: new Rng(seed), overrides: OVERRIDES });
}

function sameWeights(a: RetroMAE, b: RetroMAE, names: string[]): void {
  for (const n of names) {
    assert.equal(Array.from(a.weights.get(n)!.dataSync()), Array.from(b.weights.get(n)!.dataSync()), n);
  }
}

test("save then load gives the same weights, config and RetroMAE settings; three files, no temporaries", async () => {
  const model = await small();
  const dir = tmp();
  await saveCheckpoint(model, dir, { vocab: bertBaseUncasedVocab(), retromae: { encoder_mask_ratio: 0.3, decoder_mask_ratio: 0.5, seed: 5 } });
  assert.equal(fs.readdirSync(dir).sort(), ["config.json", "model.safetensors", "vocab.txt"]);
  const { tensors } = readSafetensors(path.join(dir, "model.safetensors"));
  assert.ok(tensors.has("bert.encoder.layer.0.attention.self.query.weight"));
  assert.ok(tensors.has("c_head.attention.self.query.weight"));
  assert.not.ok(tensors.has("cls.predictions.decoder.weight"), "tied weight not stored");
  assert.equal(tensors.get("bert.encoder.layer.0.intermediate.dense.weight")!.shape, [32, 16], "[out, in]");
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.equal(config.architectures, ["BertForMaskedLM"]);
  assert.is(config.model_type, "bert");
  assert.is(config.hidden_size, 16);
  assert.is(config.layer_norm_eps, 1e-12);
  const { model: back, report } = loadCheckpoint(dir);
  assert.equal(back.config, model.config);
  assert.equal(report.initialized, []);
  assert.equal(report.unused, []);
  assert.equal(report.retromae, { encoder_mask_ratio: 0.3, decoder_mask_ratio: 0.5, seed: 5 });
  sameWeights(model, back, [...model.weights.keys()]);
});

test("a plain HF BertForPreTraining-style file loads: no c_head (fresh decoder), pooler, NSP head, position_ids and the tied decoder weight ignored", async () => {
  const model = await small();
  const dir = tmp();
  const tensors = new Map<string, NamedArray>();
  for (const [name, v] of model.encoderWeights()) tensors.set(name, { dtype: "F32", shape: v.shape, data: v.dataSync() as Float32Array });
  tensors.set("cls.predictions.decoder.weight", tensors.get("bert.embeddings.word_embeddings.weight")!);
  tensors.set("bert.embeddings.position_ids", { dtype: "I64", shape: [1, 24], data: BigInt64Array.from({ length: 24 }, (_, i) => BigInt(i)) });
  tensors.set("bert.pooler.dense.weight", { dtype: "F32", shape: [16, 16], data: new Float32Array(256) });
  tensors.set("bert.pooler.dense.bias", { dtype: "F32", shape: [16], data: new Float32Array(16) });
  tensors.set("cls.seq_relationship.weight", { dtype: "F32", shape: [2, 16], data: new Float32Array(32) });
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...hfConfig(model.config), architectures: ["BertForPreTraining"], retromae: undefined }));
  const { model: back, report } = loadCheckpoint(dir);
  assert.ok(report.initialized.length === 16 && report.initialized.every((n) => n.startsWith("c_head.")), `${report.initialized}`);
  assert.equal(report.unused.sort(), ["bert.embeddings.position_ids", "bert.pooler.dense.bias", "bert.pooler.dense.weight", "cls.predictions.decoder.weight", "cls.seq_relationship.weight"]);
  sameWeights(model, back, [...model.encoderWeights().keys()]);
  assert.equal(Array.from(back.weights.get("c_head.attention.output.LayerNorm.weight")!.dataSync()), new Array(16).fill(1));
});

test("keys without the bert. prefix and old gamma/beta LayerNorm names load; a missing MLM head is initialised", async () => {
  const model = await small();
  const dir = tmp();
  const tensors = new Map<string, NamedArray>();
  for (const [name, v] of model.encoderWeights()) {
    if (!name.startsWith("bert.")) continue;
    const key = name.replace(/^bert\./, "").replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(/LayerNorm\.bias$/, "LayerNorm.beta");
    tensors.set(key, { dtype: "F32", shape: v.shape, data: v.dataSync() as Float32Array });
  }
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(hfConfig(model.config)));
  const { model: back, report } = loadCheckpoint(dir);
  assert.ok(report.initialized.includes("cls.predictions.bias"));
  assert.ok(report.initialized.includes("c_head.output.dense.weight"));
  sameWeights(model, back, [...model.weights.keys()].filter((n) => n.startsWith("bert.")));
});

test("bad checkpoints get one clear sentence naming the key and both shapes", async () => {
  const model = await small();
  const dir = tmp();
  await saveCheckpoint(model, dir);
  const { tensors } = readSafetensors(path.join(dir, "model.safetensors"));
  const good = new Map(tensors);
  tensors.set("bert.encoder.layer.1.output.dense.weight", { dtype: "F32", shape: [16, 16], data: new Float32Array(256) });
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  assert.throws(() => loadCheckpoint(dir), /weight "bert.encoder.layer.1.output.dense.weight" has shape \[16,16\] but config.json implies \[16,32\]/);
  assert.throws(() => loadCheckpoint(path.join(dir, "nope")), /Checkpoint folder ".*nope" does not exist/);
  const empty = tmp();
  assert.throws(() => loadCheckpoint(empty), /has no config.json/);
  fs.writeFileSync(path.join(empty, "config.json"), "{");
  assert.throws(() => loadCheckpoint(empty), /config.json is not valid JSON/);
  fs.writeFileSync(path.join(empty, "config.json"), JSON.stringify(hfConfig(model.config)));
  assert.throws(() => loadCheckpoint(empty), /has no weights \(model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin, pytorch_model\.bin\.index\.json\)/);
  fs.writeFileSync(path.join(empty, "pytorch_model.bin"), "x");
  assert.throws(() => loadCheckpoint(empty), /pytorch_model\.bin is not a PyTorch checkpoint \(not a torch\.save zip archive\)/);
  fs.writeFileSync(path.join(empty, "model.safetensors"), Buffer.from([1, 0, 0]));
  assert.throws(() => loadCheckpoint(empty), /is not a valid safetensors file: it is 3 bytes/);
  const partial = new Map([...good].filter(([k]) => k !== "bert.embeddings.LayerNorm.weight"));
  writeSafetensors(path.join(empty, "model.safetensors"), partial);
  assert.throws(() => loadCheckpoint(empty), /lacks 1 encoder weight\(s\), e.g. "bert.embeddings.LayerNorm.weight"/);
  assert.throws(() => configFromHf({ model_type: "roberta" }), /describes a "roberta" model; only BERT/);
  assert.throws(() => configFromHf({ model_type: "bert" }), /has no hidden_size/);
});

test("encoderOnly saves what is kept after pre-training", async () => {
  const model = await small();
  const dir = tmp();
  await saveCheckpoint(model, dir, { encoderOnly: true });
  const names = [...readSafetensors(path.join(dir, "model.safetensors")).tensors.keys()];
  assert.ok(names.length > 0 && !names.some((n) => n.startsWith("c_head.")));
});

test.run();
