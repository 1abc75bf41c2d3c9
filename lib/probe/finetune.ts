/**
 * Contrastive fine-tuning of the encoder as a bi-encoder (DPR / Tevatron
 * style, as the RetroMAE paper fine-tunes): for a batch of (query, positive
 * passage) pairs, scores = q · pᵀ / temperature over the batch's passages
 * (in-batch negatives, plus one BM25 hard negative per query if asked), and
 * cross-entropy towards each query's own positive. Only the encoder's
 * weights (bert.*) are trained; AdamW with warmup and clipping.
 *
 * This lets a notebook compare "pre-trained with ratios A" against "with
 * ratios B" after the same fine-tune.
 */
import * as tf from "../engine/tf";
import { Rng } from "../engine/rng";
import type { BeirDataset } from "../data/beir";
import { crossEntropy } from "../model/bert";
import type { RetroMAE } from "../model/retromae";
import type { BertTokenizer } from "../text/tokenizer";
import { AdamW, clipGradNorm } from "../train/optim";
import { LrSchedule } from "../train/schedule";
import { Bm25Index } from "./bm25";
import { beirDocText } from "./probe";

export interface FinetuneOptions {
  batchSize?: number;
  epochs?: number;
  /** Overrides epochs. */
  steps?: number;
  lr?: number;
  weightDecay?: number;
  warmupRatio?: number;
  /** Scores are divided by this. Default 1 (dot product, as DPR/Tevatron). */
  temperature?: number;
  /** Cosine instead of dot product. Default false. */
  normalize?: boolean;
  /** Add one BM25-retrieved non-relevant passage per query as a hard negative. */
  bm25HardNegatives?: boolean;
  maxLength?: number;
  queryMaxLength?: number;
  seed?: number;
  signal?: AbortSignal;
  onStep?: (e: { step: number; loss: number; lr: number }) => void;
}

/** (query id, positive doc id) pairs from a dataset's qrels (relevance > 0). */
export function trainingPairs(ds: BeirDataset): [string, string][] {
  const pairs: [string, string][] = [];
  for (const [q, docs] of ds.qrels) for (const [d, r] of docs) if (r > 0 && ds.queries.has(q) && ds.corpus.has(d)) pairs.push([q, d]);
  return pairs;
}

export async function contrastiveFinetune(model: RetroMAE, tokenizer: BertTokenizer, train: BeirDataset, options: FinetuneOptions = {}): Promise<{ losses: number[]; steps: number }> {
  const B = options.batchSize ?? 16;
  const temperature = options.temperature ?? 1;
  const maxLength = options.maxLength ?? 256;
  const queryMaxLength = options.queryMaxLength ?? 64;
  const rng = new Rng(options.seed ?? 0);
  const pairs = trainingPairs(train);
  if (pairs.length < B) throw new Error(`Only ${pairs.length} training pairs, fewer than one batch of ${B}; lower batchSize.`);
  const perEpoch = Math.floor(pairs.length / B);
  const steps = options.steps ?? perEpoch * (options.epochs ?? 1);
  const encoder = new Map([...model.weights].filter(([k]) => k.startsWith("bert.")));
  const opt = new AdamW(encoder, { lr: options.lr ?? 2e-5, weightDecay: options.weightDecay ?? 0.01 });
  const schedule = new LrSchedule({ lr: opt.lr, totalSteps: steps, warmupRatio: options.warmupRatio ?? 0.1 });
  const docText = (id: string) => beirDocText(train.corpus.get(id)!.title, train.corpus.get(id)!.text);
  const bm25 = options.bm25HardNegatives ? new Bm25Index([...train.corpus].map(([id, d]) => [id, beirDocText(d.title, d.text)])) : null;
  const relevant = (q: string, d: string) => (train.qrels.get(q)?.get(d) ?? 0) > 0;
  const batchTensors = (texts: string[], len: number) => {
    const b = tokenizer.padBatch(texts.map((t) => tokenizer.encode(t, { maxLength: len }).inputIds));
    return [tf.tensor2d(b.inputIds, [b.batchSize, b.seqLength], "int32"), tf.tensor2d(b.attentionMask, [b.batchSize, b.seqLength], "int32")] as const;
  };
  const embed = (ids: tf.Tensor2D, mask: tf.Tensor2D) => {
    const e = model.cls(ids, mask, { training: true, rng });
    return options.normalize ? (tf.div(e, tf.maximum(tf.norm(e, 2, 1, true), 1e-12)) as tf.Tensor2D) : e;
  };
  const losses: number[] = [];
  let order: number[] = [];
  for (let step = 0; step < steps; step++) {
    if (options.signal?.aborted) break;
    if (step % perEpoch === 0) order = rng.permutation(pairs.length);
    const batch = order.slice((step % perEpoch) * B, (step % perEpoch) * B + B).map((i) => pairs[i]);
    const queries = batch.map(([q]) => train.queries.get(q)!);
    const passages = batch.map(([, d]) => docText(d));
    if (bm25) {
      for (const [q, d] of batch) {
        const candidates = bm25.search(train.queries.get(q)!, 30).map(([id]) => id).filter((id) => id !== d && !relevant(q, id));
        passages.push(docText(candidates.length ? candidates[rng.int(candidates.length)] : pairs[rng.int(pairs.length)][1]));
      }
    }
    const [qIds, qMask] = batchTensors(queries, queryMaxLength);
    const [pIds, pMask] = batchTensors(passages, maxLength);
    const labels = tf.range(0, B, 1, "int32") as tf.Tensor1D;
    const { value, grads } = tf.variableGrads(() => {
      const q = embed(qIds, qMask); // [B, H]
      const p = embed(pIds, pMask); // [B or 2B, H]
      const scores = tf.div(tf.matMul(q, p, false, true), temperature) as tf.Tensor2D; // [B, B or 2B]
      return crossEntropy(scores, labels);
    }, [...encoder.values()]);
    const named = new Map([...encoder].map(([k, v]) => [k, grads[v.name]]));
    const { grads: clipped } = clipGradNorm(named, 1.0);
    const lr = schedule.at(step);
    opt.apply(clipped, lr);
    const loss = value.dataSync()[0];
    tf.dispose([value, qIds, qMask, pIds, pMask, labels, ...clipped.values()]);
    losses.push(loss);
    options.onStep?.({ step: step + 1, loss, lr });
    await new Promise((r) => setImmediate(r));
  }
  opt.dispose();
  return { losses, steps: losses.length };
}
