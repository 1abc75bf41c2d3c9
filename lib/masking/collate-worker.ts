/**
 * The collating thread (see ahead.ts): it makes a training step's batches
 * while the main thread issues the step before it. Each job is the
 * collator's whole input (the examples, the generator's state, the ratios
 * and shapes), so what it returns is what the main thread would have made.
 */
import { parentPort } from "worker_threads";
import { Rng } from "../engine/rng";
import { BertTokenizer } from "../text/tokenizer";
import { Vocab } from "../text/vocab";
import type { RetroMAEBatch } from "./batch";
import { RetroMAECollator } from "./collator";
import type { AheadReply, AheadRequest } from "./ahead";

const tokenizers = new Map<number, BertTokenizer>();

function buffersOf(batch: RetroMAEBatch): ArrayBuffer[] {
  const arrays = [batch.encoderInputIds, batch.attentionMask, batch.encoderLabels, batch.decoderInputIds, batch.decoderAttentionMask, batch.decoderLabels, batch.encoderMaskKinds, batch.lengths];
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

parentPort!.on("message", (m: AheadRequest) => {
  if (m.type === "tokenizer") {
    tokenizers.set(m.id, new BertTokenizer(new Vocab(m.tokens), m.specials));
    return;
  }
  let reply: AheadReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const tokenizer = tokenizers.get(m.tokenizer);
    if (!tokenizer) throw new Error(`no tokenizer ${m.tokenizer} was sent to the collating thread`);
    const rng = Rng.fromState(m.rng);
    const collator = new RetroMAECollator({ tokenizer, rng, ...m.options });
    const batches: RetroMAEBatch[] = [];
    const seeds: number[] = [];
    let at = 0;
    for (const sizes of m.sizes) {
      const examples = sizes.map((n) => {
        const example = m.ids.subarray(at, at + n);
        at += n;
        return example;
      });
      batches.push(collator.collate(examples));
      if (m.seedCalls >= 0) seeds.push(rng.seeds(m.seedCalls));
    }
    reply = { type: "made", id: m.id, batches, seeds: m.seedCalls >= 0 ? seeds : null, rng: rng.getState() };
    transfer = batches.flatMap(buffersOf);
  } catch (err) {
    reply = { type: "failed", id: m.id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(reply, transfer);
});
parentPort!.postMessage({ type: "ready" } satisfies AheadReply);
