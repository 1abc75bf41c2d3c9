/**
 * The official structure, not this project's reading of it: the batch this
 * project's collator makes, replayed with the same draws through the
 * official RetroMAECollator's statements, and the losses of the official
 * RetroMAE and DupMAE decoder forwards (test/fixtures/official/structure.py,
 * plain torch, line for line), through a committed fixture; regenerate with
 * `npm run fixture:official`.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { EXPECTED_FILE, MAX_SEQ_LENGTH, officialModel, tracedBatch } from "../fixtures/official/spec";

interface Expected {
  batch: Record<"encoder_input_ids" | "encoder_attention_mask" | "encoder_labels" | "decoder_input_ids" | "decoder_attention_mask" | "decoder_labels", number[][] | number[][][]>;
  encoder_loss: number;
  decoder_loss: number;
  dupmae_decoder_loss: number;
}
const expected = JSON.parse(fs.readFileSync(EXPECTED_FILE, "utf8")) as Expected;
const { batch, trace } = tracedBatch();

test("the fixture covers truncation, [UNK], whole words and padding", () => {
  const ids = expected.batch.decoder_input_ids as number[][];
  assert.is(ids[0].length, MAX_SEQ_LENGTH, "the long example is cut to max_seq_length");
  assert.ok(ids.some((row) => row.includes(100)), "an [UNK] token");
  assert.ok(ids.some((row) => row.includes(0)), "padding");
  assert.ok(trace.examples.some((e) => e.encoderWords.some((w) => w.length > 1)), "a word of several pieces");
});

test("the collator's six tensors equal the official collator's on the same draws", () => {
  const B = batch.batchSize;
  const L = batch.seqLength;
  const flat2 = (name: keyof Expected["batch"]) => (expected.batch[name] as number[][]).flat();
  assert.is(expected.batch.encoder_input_ids.length, B);
  assert.is((expected.batch.encoder_input_ids as number[][])[0].length, L);
  assert.equal(Array.from(batch.encoderInputIds), flat2("encoder_input_ids"), "encoder_input_ids");
  assert.equal(Array.from(batch.attentionMask), flat2("encoder_attention_mask"), "encoder_attention_mask");
  assert.equal(Array.from(batch.encoderLabels), flat2("encoder_labels"), "encoder_labels");
  assert.equal(Array.from(batch.decoderInputIds), flat2("decoder_input_ids"), "decoder_input_ids");
  assert.equal(Array.from(batch.decoderLabels), flat2("decoder_labels"), "decoder_labels");
  assert.equal(Array.from(batch.decoderAttentionMask), (expected.batch.decoder_attention_mask as number[][][]).flat(2), "decoder_attention_mask [B, L, L]");
});

test("RetroMAE's encoder and decoder losses, and DupMAE's decoder loss, equal the official forwards'", async () => {
  await use("cpu");
  const model = officialModel();
  const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 * Math.abs(b), `${what}: ${a} vs official ${b}`);
  const retro = await model.forwardBackward(batch, { training: false });
  near(retro.values.encoderLoss, expected.encoder_loss, "encoder loss");
  near(retro.values.decoderLoss, expected.decoder_loss, "decoder loss");
  tf.dispose([...retro.grads.values()]);
  model.bowLossWeight = 0.1; // DupMAE mode: the decoder query goes through the embedding module
  const dup = await model.forwardBackward(batch, { training: false });
  near(dup.values.decoderLoss, expected.dupmae_decoder_loss, "DupMAE decoder loss");
  assert.ok(Math.abs(dup.values.decoderLoss - retro.values.decoderLoss) > 100 * 1e-4 * expected.decoder_loss, "the two queries give clearly different losses, so the check can tell them apart");
  tf.dispose([...dup.grads.values()]);
  model.dispose();
});

test.run();
