import { test } from "uvu";
import * as assert from "uvu/assert";
import { Rng } from "../../lib/engine/rng";
import { RetroMAECollator } from "../../lib/masking/collator";
import { Display, JUPYTER_DISPLAY, MimeBundle, setDisplay, terminalDisplay, toBundle } from "../../lib/display";
import { PLOTLY_MIME } from "../../lib/plot/figure";
import { BertTokenizer } from "../../lib/text/tokenizer";

const tok = BertTokenizer.bertBaseUncased();
const TEXT = "RetroMAE pre-trains a retrieval-oriented encoder with a masked auto-encoder and an enhanced decoder.";

test("preview matches a batch collated from the same generator state", () => {
  const a = new RetroMAECollator({ tokenizer: tok, rng: new Rng(3), encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 });
  const b = new RetroMAECollator({ tokenizer: tok, rng: new Rng(3), encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 });
  const p = a.preview(TEXT);
  const batch = b.collate([TEXT]);
  const n = batch.lengths[0];
  assert.is(p.tokens.length, n);
  assert.equal(p.tokens.map((t) => t.token), Array.from(batch.decoderInputIds.subarray(0, n)).map((id) => tok.vocab.token(id)));
  assert.equal(p.tokens.map((t) => t.encoderInput), Array.from(batch.encoderInputIds.subarray(0, n)).map((id) => tok.vocab.token(id)));
  p.tokens.forEach((t) => {
    if (t.kind === "masked") assert.is(t.encoderInput, "[MASK]");
    if (t.kind === "none" || t.kind === "kept") assert.is(t.encoderInput, t.token);
  });
  assert.ok(p.stats.masked + p.stats.random + p.stats.kept >= 1);
  assert.equal(p.decoderVisible[1], Array.from(batch.decoderAttentionMask.subarray(batch.seqLength, batch.seqLength + n)));
  assert.ok(p.stats.decoderHiddenFraction > 0.3 && p.stats.decoderHiddenFraction < 0.7, `${p.stats.decoderHiddenFraction}`);
});

test("bundles: HTML highlights and grid, a Plotly heatmap over the tokens, text for terminals", () => {
  const c = new RetroMAECollator({ tokenizer: tok, rng: new Rng(4) });
  const p = c.preview(TEXT);
  const bundle = p.toMimeBundle();
  assert.equal(p[JUPYTER_DISPLAY](), bundle);
  assert.match(bundle["text/html"] as string, /Encoder input<\/b> \(ratio 0.3\)/);
  assert.match(bundle["text/html"] as string, /display:grid;grid-template-columns:repeat\(\d+,/);
  assert.match(bundle["text/plain"] as string, /^encoder \(ratio 0.3\): \d+ masked, \d+ random, \d+ kept of \d+/);
  const fig = toBundle(p.heatmap)[PLOTLY_MIME] as { data: { type: string; z: number[][]; x: string[] }[] };
  assert.is(fig.data[0].type, "heatmap");
  assert.is(fig.data[0].z.length, p.tokens.length);
  assert.is(fig.data[0].x[0], "0:[CLS]");
  assert.not.match(bundle["text/html"] as string, /<script/);
});

test("show() sends the encoder highlights and the Plotly heatmap through the display interface", () => {
  const shown: MimeBundle[] = [];
  const capture: Display = { show: (v) => (shown.push(toBundle(v)), { update: () => undefined }) };
  const previous = setDisplay(capture);
  try {
    new RetroMAECollator({ tokenizer: tok, rng: new Rng(5) }).preview(TEXT).show();
  } finally {
    setDisplay(previous);
  }
  assert.is(previous, terminalDisplay);
  assert.is(shown.length, 2);
  assert.ok("text/html" in shown[0]);
  assert.ok(PLOTLY_MIME in shown[1]);
});

test("HTML escapes token text", () => {
  const p = new RetroMAECollator({ tokenizer: tok, rng: new Rng(6) }).preview("a < b & c > d");
  assert.not.match(p.toMimeBundle()["text/html"] as string, / < | & | > /);
});

test.run();
