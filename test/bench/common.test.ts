/**
 * bench/common.ts's recordBatches (the batches of a trainer's timed steps)
 * and writeEncodeBatches (encoding's batches), for the PyTorch reference to
 * time the same ones.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { loadBeir } from "../../lib/data/beir";
import type { RetroMAEBatch } from "../../lib/masking/batch";
import { loadBatch } from "../../lib/masking/batch-io";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { recordBatches, writeEncodeBatches } from "../../bench/common";
import { readSafetensors } from "../../lib/model/safetensors";
import { SHARED_DATA } from "../helpers";
import { microModel, microTokenizer } from "../webgpu-helpers";

const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].slice(0, 40).map((d) => d.text);
const tok = microTokenizer(texts);
const corpus = PackedCorpus.fromTexts(texts, tok, 32);
const arrays = (b: RetroMAEBatch) => [b.encoderInputIds, b.attentionMask, b.encoderLabels, b.decoderInputIds, b.decoderAttentionMask, b.decoderLabels].map((a) => Array.from(a));

test("recordBatches saves the batches of the steps between it and stop() (Trainer.onBatch), byte for byte those the collator gave, with gradient accumulation", async () => {
  await use("cpu");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "record-batches-"));
  const rng = new Rng(3);
  const model = microModel(tok.vocab.size, 3);
  const t = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 3, batchSize: 2, gradAccumulation: 2, maxLength: 32, totalSteps: 10 });
  try {
    await t.fit({ steps: 1, live: false });
    const used: RetroMAEBatch[] = [];
    const collate = t.collator.collate.bind(t.collator);
    t.collator.collate = (examples, trace) => {
      const b = collate(examples, trace);
      used.push(b);
      return b;
    };
    const recording = recordBatches(t);
    await t.fit({ steps: 2, live: false });
    recording.stop();
    assert.is(t.onBatch, null);
    await t.fit({ steps: 1, live: false }); // after stop: not recorded
    const file = path.join(dir, "batch.safetensors");
    recording.save(file);
    assert.is(used.length, 6);
    assert.equal(fs.readdirSync(dir).sort(), ["batch.safetensors", "batch.safetensors.1", "batch.safetensors.2", "batch.safetensors.3"]);
    ["", ".1", ".2", ".3"].forEach((s, i) => assert.equal(arrays(loadBatch(file + s)), arrays(used[i]), `micro-batch ${i}`));
  } finally {
    t.dispose();
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("writeEncodeBatches gives PyTorch encodeTexts's batches, padded up to the same multiple (16 as on webgpu, 1 by default), the real tokens masked in", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "encode-batches-"));
  try {
    const docs = texts.slice(0, 12);
    for (const multiple of [1, 16]) {
      const file = path.join(dir, `encode-${multiple}.safetensors`);
      writeEncodeBatches(file, docs, tok, 4, 48, ...(multiple === 1 ? [] : [multiple]));
      const { tensors } = readSafetensors(file);
      const lengths = docs.map((t) => tok.encode(t, { maxLength: 48 }).inputIds.length);
      let rows = 0;
      let real = 0;
      for (let n = 0; tensors.has(`input_ids_${n}`); n++) {
        const [B, L] = tensors.get(`input_ids_${n}`)!.shape;
        assert.ok(multiple === 1 || L === 48 || L % 16 === 0, `batch ${n}: length ${L}`);
        rows += B;
        real += Array.from(tensors.get(`attention_mask_${n}`)!.data as Int32Array).reduce((a, b) => a + b, 0);
      }
      assert.is(rows, docs.length);
      assert.is(real, lengths.reduce((a, b) => a + b, 0), "every real token, and only those, masked in");
      if (multiple === 1) assert.is(tensors.get("input_ids_0")!.shape[1], Math.max(...lengths), "unpadded: the longest text's length");
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
