import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { RetroMAECollator } from "../../lib/masking/collator";
import { bertConfig } from "../../lib/model/config";
import { readSafetensors } from "../../lib/model/safetensors";
import { loadCheckpoint, RetroMAE } from "../../lib/model/retromae";
import { starterCheckpoint } from "../../lib/model/starter";
import { BertTokenizer } from "../../lib/text/tokenizer";

test("the shipped starter is a tiny BERT in fp16 with its training record, and a missing preset gets one sentence", () => {
  const dir = starterCheckpoint();
  const { tensors } = readSafetensors(path.join(dir, "model.safetensors"));
  assert.ok(tensors.has("bert.embeddings.word_embeddings.weight") && tensors.has("cls.predictions.bias"));
  assert.not.ok([...tensors.keys()].some((k) => k.startsWith("c_head.")), "encoder and MLM head only");
  const header = fs.readFileSync(path.join(dir, "model.safetensors"));
  assert.match(header.subarray(8, 8 + Number(header.readBigUInt64LE(0))).toString(), /"dtype":"F16"/);
  const training = JSON.parse(fs.readFileSync(path.join(dir, "training.json"), "utf8"));
  assert.is(training.decoderLossWeight, 0, "MLM only");
  assert.is(training.encoderMaskRatio, 0.15);
  assert.is(training.schedule.totalSteps, 2000);
  const curve = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.is(curve[curve.length - 1].step, 2000);
  assert.throws(() => starterCheckpoint("mini"), /No starter checkpoint for the mini preset in .*models; this package ships starter-tiny, and `npm run starter -- --preset mini` builds others\./);
});

test("the starter has left the unigram plateau: its MLM loss on SciFact-like text is far below an untrained model's", async () => {
  await use("cpu");
  const { model, report } = loadCheckpoint(starterCheckpoint());
  assert.equal(model.config, { ...bertConfig("tiny"), ...model.config });
  assert.ok(report.initialized.every((k) => k.startsWith("c_head.")), "only the decoder starts fresh");
  const tok = BertTokenizer.bertBaseUncased();
  const collator = new RetroMAECollator({ tokenizer: tok, rng: new Rng(1), maxLength: 64, encoderMaskRatio: 0.15 });
  const batch = collator.collate([
    "Alterations of the architecture of cerebral white matter in the developing human brain can affect cortical development and result in functional disabilities.",
    "The aim of this study was to determine the effect of vitamin D supplementation on bone mineral density in patients with chronic kidney disease.",
    "These results suggest that the protein plays an important role in the regulation of cell growth and apoptosis in cancer cells.",
    "Patients were randomly assigned to receive either the drug or placebo for twelve weeks, and the primary outcome was the change in blood pressure.",
  ]);
  const untrained = RetroMAE.create("tiny", { rng: new Rng(2) });
  const loss = async (m: RetroMAE) => {
    const r = await m.forwardBackward(batch, { training: false });
    tf.dispose([...r.grads.values()]);
    return r.values.encoderLoss;
  };
  const trained = await loss(model);
  const fresh = await loss(untrained);
  assert.ok(trained < 7 && fresh > 10 && trained < fresh - 3, `starter ${trained.toFixed(2)} vs untrained ${fresh.toFixed(2)}`);
  model.dispose();
  untrained.dispose();
});

test.run();
