/**
 * Batched [CLS] embeddings for retrieval: no gradients, every batch tidied,
 * texts sorted by length so batches carry little padding (the output keeps
 * the input order), and batches of shorter texts holding more of them
 * (encodingBatches). Optional L2 normalisation (off: RetroMAE scores with
 * the dot product).
 */
import * as tf from "../engine/tf";
import { asDeviceFailure, freeGpuMemory, mibOf, overBufferLimit, throwIfDeviceError, trimGpuPool } from "../engine/webgpu/backend";
import type { RetroMAE } from "../model/retromae";
import type { BertTokenizer } from "../text/tokenizer";
import { display, isTerminal } from "../display";
import { progressBundle, ProgressState } from "../plot/progress";

export interface EncodeOptions {
  /** Texts per batch at the longest text's length (default 64); batches of shorter texts hold more, up to as many tokens (encodingBatches). */
  batchSize?: number;
  /** Default 512, the length BEIR's evaluation encodes documents at; at most the model's positions (longer texts are cut there, as HF's tokenizers cut at model_max_length). */
  maxLength?: number;
  normalize?: boolean;
  /** Show a progress bar (notebook) or line (terminal). Default true. */
  progress?: boolean;
  label?: string;
  /**
   * Pad each batch's length up to a multiple of this (HF's pad_to_multiple_of; never past maxLength).
   * Default 16 on webgpu (WEBGPU_PAD_MULTIPLE), 1 elsewhere: on a GPU, batches of one shape reuse the
   * buffers of the batch before and are queued before its read.
   */
  padToMultipleOf?: number;
}

/**
 * encodeTexts' padding multiple on webgpu. SciFact's 5,183 documents
 * (title and text) at 512 tokens in batches of 64: with no rounding, 46
 * shapes in 53 batches (7 batches of the shape before them) and 1.4% of the
 * tokens padding; to a multiple of 16, 23 shapes in 54 batches (31) and
 * 3.4%; of 32, 12 shapes in 55 batches (43) and 5.6%.
 */
export const WEBGPU_PAD_MULTIPLE = 16;

/**
 * Token ids of texts encoded before, per tokenizer, texts array and length: a
 * probe during training encodes the same corpus every time, and tokenizing
 * SciFact's 5,183 documents at 512 tokens took 0.46 s, a quarter of a probe's
 * host time on webgpu. Kept while the array lives, for arrays of up to
 * CACHED_IDS ids, and used only while it holds the same strings.
 */
const tokenized = new WeakMap<BertTokenizer, WeakMap<readonly string[], Map<number, { texts: string[]; ids: number[][] }>>>();
/** The most token ids a cache of them keeps (64 MB): encoding's per texts array and length, a fine-tune's in all. */
export const CACHED_IDS = 8_000_000;

function tokenIds(tokenizer: BertTokenizer, texts: readonly string[], maxLength: number): number[][] {
  let byTexts = tokenized.get(tokenizer);
  if (!byTexts) tokenized.set(tokenizer, (byTexts = new WeakMap()));
  const byLength = byTexts.get(texts);
  const hit = byLength?.get(maxLength);
  if (hit && hit.texts.length === texts.length && hit.texts.every((t, i) => t === texts[i])) return hit.ids;
  const ids = texts.map((t) => tokenizer.encode(t, { maxLength }).inputIds);
  if (ids.reduce((n, r) => n + r.length, 0) <= CACHED_IDS) {
    if (byLength) byLength.set(maxLength, { texts: [...texts], ids });
    else byTexts.set(texts, new Map([[maxLength, { texts: [...texts], ids }]]));
  }
  return ids;
}

/**
 * How encoding groups texts of these token lengths: longest first, each
 * batch as many texts as fit batchSize × the longest length in tokens
 * (padded), at least one. A GPU's peak memory is then the first batch's
 * (a later batch's activations, B·L, and attention scores, B·L², are no
 * larger), and short texts do not go in batches a fraction of its size:
 * SciFact's 5,183 documents at 512 tokens and batch 64 take 53 batches
 * instead of 81, for 0.6% more padded tokens. -> each batch's indices
 */
export function encodingBatches(lengths: readonly number[], batchSize: number): number[][] {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error(`batchSize must be a whole number ≥ 1; got ${String(batchSize)}.`);
  // stable: texts of one length keep their order
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a]);
  const budget = batchSize * (order.length ? lengths[order[0]] : 0);
  const batches: number[][] = [];
  for (let start = 0; start < order.length; ) {
    const count = Math.max(1, Math.floor(budget / Math.max(1, lengths[order[start]])));
    batches.push(order.slice(start, start + count));
    start += count;
  }
  return batches;
}

/** The length a text of `length` tokens is padded to: up to a multiple of `multiple`, at most maxLength. */
export function paddedLength(length: number, multiple: number, maxLength: number): number {
  return Math.min(maxLength, Math.ceil(length / multiple) * multiple);
}

/** Encode texts -> Float32Array [N × H], row i for texts[i]. */
export async function encodeTexts(model: RetroMAE, tokenizer: BertTokenizer, texts: readonly string[], options: EncodeOptions = {}): Promise<Float32Array> {
  const batchSize = options.batchSize ?? 64;
  const maxLength = Math.min(options.maxLength ?? 512, model.config.maxPositionEmbeddings);
  const multiple = options.padToMultipleOf ?? (tf.getBackend() === "webgpu" ? WEBGPU_PAD_MULTIPLE : 1);
  if (!(Number.isInteger(multiple) && multiple >= 1)) throw new Error(`padToMultipleOf must be a whole number ≥ 1; got ${String(options.padToMultipleOf)}.`);
  const H = model.config.hiddenSize;
  model.checkTokenIds(tokenizer.vocab.size - 1, "The tokenizer");
  const ids = tokenIds(tokenizer, texts, maxLength);
  const lengths = ids.map((r) => paddedLength(r.length, multiple, maxLength));
  // longest first: batches shrink, so each fits in the memory of the one before it
  const batches = encodingBatches(lengths, batchSize);
  const shapeOf = (k: number) => `${batches[k].length}x${lengths[batches[k][0]]}`;
  const out = new Float32Array(texts.length * H);
  const started = performance.now();
  const show = options.progress !== false && texts.length > batchSize;
  const state = (done: number, status = "running"): ProgressState => ({
    step: done,
    totalSteps: texts.length,
    elapsedMs: performance.now() - started,
    tokensPerSec: 0,
    loss: null,
    status,
  });
  const terminal = isTerminal();
  const handle = show && !terminal ? display(progressBundle(state(0))) : null;
  let lastShown = 0;
  // what training left on the GPU (pooled buffers, a recorded step's) goes back first: the batches have shapes of their own
  freeGpuMemory();
  const fix = `pass a smaller batchSize (e.g. ${Math.max(1, batchSize >> 1)}) to runProbe, probeHook or encodeTexts, or a lower maxLength`;
  /** A batch queued on the device, its read started (the read submits its work). */
  type Queued = { k: number; what: string; emb: tf.Tensor; read: Promise<tf.backend_util.BackendValues> };
  const queue = (k: number): Queued => {
    const L = lengths[batches[k][0]];
    const batch = tokenizer.padBatch(batches[k].map((i) => ids[i]), { padding: "max_length", maxLength: L });
    const what = `Encoding a batch of ${batch.batchSize} × ${L} tokens`;
    checkEncodeFits(model, batch.batchSize, L, batchSize);
    try {
      const emb = tf.tidy(() => {
        const inputIds = tf.tensor2d(batch.inputIds, [batch.batchSize, L], "int32");
        const mask = tf.tensor2d(batch.attentionMask, [batch.batchSize, L], "int32");
        let cls = model.encode(inputIds, mask);
        if (options.normalize) cls = tf.div(cls, tf.maximum(tf.norm(cls, 2, 1, true), 1e-12)) as tf.Tensor2D;
        return cls;
      });
      const read = emb.data();
      read.catch(() => undefined); // awaited in finish; a batch left unread when the one before fails must not reject unhandled
      return { k, what, emb, read };
    } catch (err) {
      throw asDeviceFailure(err, what, fix);
    }
  };
  let done = 0;
  const finish = async (q: Queued) => {
    let data: Float32Array;
    try {
      data = (await q.read) as Float32Array;
      // On webgpu, an error the device reported (out of memory) means these vectors are not the model's.
      throwIfDeviceError(q.what, fix);
    } catch (err) {
      throw asDeviceFailure(err, q.what, fix);
    } finally {
      q.emb.dispose();
    }
    batches[q.k].forEach((i, r) => out.set(data.subarray(r * H, (r + 1) * H), i * H));
    done += batches[q.k].length;
    if (show && performance.now() - lastShown > 500) {
      lastShown = performance.now();
      if (handle) handle.update(progressBundle(state(done)));
      else process.stderr.write(`\r${options.label ?? "encode"} ${done}/${texts.length}`);
    }
  };
  // A batch of the shape of the one before is queued before that one is read: it reuses the buffers that
  // batch gave back when its read was submitted (the device runs the two in order), and the device has the
  // next batch while the host reads one. A batch of another shape waits for the read: none of the last
  // batch's buffers can serve it, so they all go back before it allocates its own (its memory is never held
  // beside theirs); after the last batch all go back too (what runs next has shapes of its own).
  // Whatever ends the loop, every pooled buffer goes back (after a failure, so that a retry with a
  // smaller batch has the memory), and a batch queued when the one before it failed is disposed unread.
  let pending: Queued | null = null;
  const readPending = async () => {
    const q = pending!;
    pending = null;
    await finish(q);
  };
  try {
    for (let k = 0; k < batches.length; k++) {
      if (pending && shapeOf(k) !== shapeOf(pending.k)) {
        await readPending();
        trimGpuPool(true);
      }
      const before: Queued | null = pending;
      pending = queue(k);
      if (before) {
        await finish(before);
        trimGpuPool(false);
      }
      await new Promise((r) => setImmediate(r));
    }
    if (pending) await readPending();
  } finally {
    (pending as Queued | null)?.emb.dispose();
    trimGpuPool(true);
  }
  if (handle) handle.update(progressBundle(state(texts.length, "done")));
  else if (show && terminal) process.stderr.write(`\r${options.label ?? "encode"} ${texts.length}/${texts.length}\n`);
  return out;
}

/**
 * Encoding's largest tensors must fit the GPU's largest buffer: checked
 * before a batch is queued, with the batch size that fits. A no-op off webgpu.
 */
function checkEncodeFits(model: RetroMAE, B: number, L: number, batchSize: number): void {
  const over = overBufferLimit(model.encoderTensors(B, L, false));
  if (!over) return;
  const fitsB = over.fits(B);
  const fix = fitsB >= 1 ? `pass batchSize ${Math.min(fitsB, batchSize)} to runProbe, probeHook or encodeTexts` : `pass a lower maxLength`;
  throw new Error(`Encoding a batch of ${B} × ${L} tokens needs ${mibOf(over.need)} for ${over.what}, more than this GPU's largest buffer (${mibOf(over.limit)}); ${fix}.`);
}

/**
 * Exact top-k by inner product. queries [Q × H], docs [D × H] (row-major);
 * the corpus is scored in blocks (a matmul, then top-k per block), and the
 * blocks' candidates are merged. Returns, per query, doc indices and scores,
 * best first. Reads are awaited (no synchronous GPU read).
 */
export async function searchTopK(queries: Float32Array, docs: Float32Array, H: number, k: number, blockSize = 8192): Promise<{ indices: Int32Array[]; scores: Float32Array[] }> {
  const Q = queries.length / H;
  const D = docs.length / H;
  const kk = Math.min(k, D);
  const best: { idx: number; score: number }[][] = Array.from({ length: Q }, () => []);
  const q = tf.tensor2d(queries, [Q, H]);
  for (let start = 0; start < D; start += blockSize) {
    const n = Math.min(blockSize, D - start);
    const { values, indices } = tf.tidy(() => {
      const block = tf.tensor2d(docs.subarray(start * H, (start + n) * H), [n, H]);
      return tf.topk(tf.matMul(q, block, false, true), Math.min(kk, n)); // [Q, min(k, n)]
    });
    const [v, ix] = await Promise.all([values.data(), indices.data()]);
    tf.dispose([values, indices]);
    const w = Math.min(kk, n);
    for (let r = 0; r < Q; r++) {
      const merged = best[r];
      for (let j = 0; j < w; j++) merged.push({ idx: start + ix[r * w + j], score: v[r * w + j] });
      merged.sort((a, b) => b.score - a.score);
      merged.length = Math.min(merged.length, kk);
    }
  }
  q.dispose();
  // tfjs's topk sorts in many passes, each with buffers of its own (300 queries against 5,183 documents
  // left 230 MB pooled): they go back to the GPU, or the training step after a probe may not fit.
  trimGpuPool(true);
  return {
    indices: best.map((b) => Int32Array.from(b.map((x) => x.idx))),
    scores: best.map((b) => Float32Array.from(b.map((x) => x.score))),
  };
}
