import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as path from "path";
import { Rng } from "../../lib/engine/rng";
import { IGNORE, MaskKind } from "../../lib/masking/batch";
import { RetroMAECollator } from "../../lib/masking/collator";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();
const texts = fs
  .readFileSync(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), "utf8")
  .split("\n")
  .slice(0, 64)
  .map((l) => (JSON.parse(l) as { text: string }).text);

function collator(seed = 1, maxLength = 64) {
  return new RetroMAECollator({ tokenizer: tok, rng: new Rng(seed), maxLength });
}

test("shapes, padding and truncation", () => {
  const b = collator().collate(["a short one", texts[0], "[MASK] and [UNK] stay unmasked"]);
  assert.is(b.batchSize, 3);
  assert.is(b.seqLength, 64);
  assert.is(b.encoderInputIds.length, 3 * 64);
  assert.is(b.decoderAttentionMask.length, 3 * 64 * 64);
  assert.is(b.lengths[1], 64);
  const L = b.seqLength;
  const n0 = b.lengths[0];
  assert.is(b.decoderInputIds[0], 101);
  assert.is(b.decoderInputIds[n0 - 1], 102);
  for (let i = n0; i < L; i++) {
    assert.is(b.decoderInputIds[i], 0);
    assert.is(b.attentionMask[i], 0);
    assert.is(b.encoderLabels[i], IGNORE);
  }
});

test("encoder: only non-special tokens are masked, labels hold the originals, count follows the ratio", () => {
  const c = collator(2, 128);
  const b = c.collate(texts.slice(0, 16));
  const L = b.seqLength;
  for (let r = 0; r < b.batchSize; r++) {
    let masked = 0;
    for (let i = 0; i < L; i++) {
      const k = r * L + i;
      const label = b.encoderLabels[k];
      if (label === IGNORE) {
        assert.is(b.encoderInputIds[k], b.decoderInputIds[k], "unmasked tokens are unchanged");
        continue;
      }
      masked++;
      assert.is(label, b.decoderInputIds[k]);
      assert.not.ok(tok.specialIds.has(label));
    }
    const n = b.lengths[r];
    // whole words may leave the budget a little short, never over
    assert.ok(masked <= Math.max(1, Math.round(n * 0.3)) && masked >= Math.round(n * 0.3) - 6, `row ${r}: ${masked} of ${n}`);
  }
});

test("encoder: 80% [MASK], 10% random, 10% kept", () => {
  const c = collator(4, 128);
  const counts = [0, 0, 0, 0];
  for (let s = 0; s < 4; s++) {
    const b = c.collate(texts.slice(s * 16, s * 16 + 16));
    b.encoderMaskKinds.forEach((k, i) => {
      counts[k]++;
      if (k === MaskKind.Masked) assert.is(b.encoderInputIds[i], 103);
    });
  }
  const total = counts[1] + counts[2] + counts[3];
  assert.ok(total > 2000);
  assert.ok(Math.abs(counts[MaskKind.Masked] / total - 0.8) < 0.03, `masked ${counts[1] / total}`);
  assert.ok(Math.abs(counts[MaskKind.Random] / total - 0.1) < 0.03, `random ${counts[2] / total}`);
  assert.ok(Math.abs(counts[MaskKind.Kept] / total - 0.1) < 0.03, `kept ${counts[3] / total}`);
});

test("decoder: row i never sees itself; [CLS]/[SEP] always visible to others; padding never visible", () => {
  const b = collator(5).collate(["a short one", texts[1]]);
  const L = b.seqLength;
  for (let r = 0; r < 2; r++) {
    const n = b.lengths[r];
    for (let i = 0; i < L; i++) {
      const row = (r * L + i) * L;
      if (i >= n) {
        for (let j = 0; j < L; j++) assert.is(b.decoderAttentionMask[row + j], 0, "padding row sees nothing");
        continue;
      }
      assert.is(b.decoderAttentionMask[row + i], 0, "self hidden");
      if (i !== 0) assert.is(b.decoderAttentionMask[row], 1, "[CLS] visible");
      if (i !== n - 1) assert.is(b.decoderAttentionMask[row + n - 1], 1, "[SEP] visible");
      for (let j = n; j < L; j++) assert.is(b.decoderAttentionMask[row + j], 0, "padding hidden");
    }
  }
});

test("decoder: hidden fraction follows the ratio; labels skip [CLS], last [SEP] and padding", () => {
  const c = collator(6, 128);
  const frac = (ratio: number) => {
    c.decoderMaskRatio = ratio;
    const b = c.collate(texts.slice(0, 8));
    const L = b.seqLength;
    let hidden = 0;
    let cells = 0;
    for (let r = 0; r < b.batchSize; r++) {
      const n = b.lengths[r];
      assert.is(b.decoderLabels[r * L], IGNORE);
      assert.is(b.decoderLabels[r * L + n - 1], IGNORE);
      for (let i = 1; i < n - 1; i++) assert.is(b.decoderLabels[r * L + i], b.decoderInputIds[r * L + i]);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        cells++;
        hidden += 1 - b.decoderAttentionMask[(r * L + i) * L + j];
      }
    }
    return hidden / cells;
  };
  const half = frac(0.5);
  const most = frac(0.9);
  assert.ok(half > 0.4 && half < 0.56, `0.5 -> ${half}`);
  assert.ok(most > 0.8, `0.9 -> ${most}`);
});

test("ratios change between batches; same seed gives the same batch; ids work as input", () => {
  const a = collator(9).collate(texts.slice(0, 4));
  const b = collator(9).collate(texts.slice(0, 4));
  assert.equal(Array.from(a.encoderInputIds), Array.from(b.encoderInputIds));
  assert.equal(Array.from(a.decoderAttentionMask), Array.from(b.decoderAttentionMask));
  const c = collator(9);
  c.encoderMaskRatio = 0.15;
  const low = c.collate(texts.slice(0, 4));
  const count = (x: Int32Array) => x.filter((v) => v !== IGNORE).length;
  assert.ok(count(low.encoderLabels) < count(a.encoderLabels));
  const ids = collator(9).collate(texts.slice(0, 4).map((t) => tok.textToIds(t)));
  assert.equal(Array.from(ids.encoderInputIds), Array.from(a.encoderInputIds));
});

test("staticShapes: every batch padded to maxLength, with labelSlots that hold every label the ratios can make", () => {
  const rng = new Rng(5);
  const c = new RetroMAECollator({ tokenizer: tok, rng, maxLength: 40, staticShapes: true, encoderMaskRatio: 0.3 });
  for (let i = 0; i < 20; i++) {
    const texts = Array.from({ length: 3 }, (_, j) => "word ".repeat(1 + ((i * 7 + j * 11) % 60)));
    const b = c.collate(texts);
    assert.is(b.seqLength, 40);
    assert.equal(b.labelSlots, { encoder: 3 * 12, decoder: 3 * 38 }); // max(1, round(40 × 0.3)) per row; 40 − 2 per row
    assert.ok(b.encoderLabels.filter((x) => x !== IGNORE).length <= b.labelSlots!.encoder);
    assert.ok(b.decoderLabels.filter((x) => x !== IGNORE).length <= b.labelSlots!.decoder);
  }
  const plain = new RetroMAECollator({ tokenizer: tok, rng, maxLength: 40 }).collate(["short text"]);
  assert.is(plain.labelSlots, undefined);
  assert.ok(plain.seqLength < 40);
});

test("bad input gets one clear sentence", () => {
  const c = collator();
  assert.throws(() => (c.encoderMaskRatio = 1.5), /encoderMaskRatio must be a number in \(0, 1\]/);
  assert.throws(() => (c.decoderMaskRatio = 0), /decoderMaskRatio must be a number in \(0, 1\]/);
  assert.throws(() => c.collate([]), /at least one example/);
  assert.throws(() => c.collate([[5, 99999]]), /Token id 99999 is outside the vocabulary/);
});

test.run();
