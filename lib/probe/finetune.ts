/**
 * Contrastive fine-tuning of the encoder as a bi-encoder, as the official
 * RetroMAE bi_encoder (src/bi_encoder: data.py TrainDatasetForBiE, modeling.py)
 * fine-tunes: each epoch visits every training query once; a query's group is
 * one positive drawn at random from its judged positives, then
 * trainGroupSize − 1 negatives drawn from BM25's top 200 for that query
 * (the official code samples them from mined negatives, `sample_neg_from_topk`
 * 200), judged positives left out. Scores = q · pᵀ / temperature over every
 * passage in the batch (the others' groups are in-batch negatives), and
 * cross-entropy towards the query's own positive at index i · groupSize.
 * Only the encoder's weights (bert.*) are trained; AdamW with the
 * TrainingArguments defaults the official runs use (weight decay 0, no
 * warmup) and clipping at 1.
 *
 * This lets a notebook compare "pre-trained with ratios A" against "with
 * ratios B" after the same fine-tune.
 */
import * as tf from "../engine/tf";
import { DropoutSeeds } from "../engine/fused";
import { Rng } from "../engine/rng";
import { asDeviceFailure, computesNothing, freeGpuMemory, mibOf, overBufferLimit, throwIfDeviceError, trimGpuPool } from "../engine/webgpu/backend";
import { StepRecorder, type RecordedSteps } from "../engine/webgpu/replay";
import type { BeirDataset } from "../data/beir";
import { crossEntropy } from "../model/bert";
import type { RetroMAE } from "../model/retromae";
import type { BertTokenizer } from "../text/tokenizer";
import type { LossChart } from "../plot/loss-chart";
import { LiveReport } from "../train/live";
import { AdamW, finiteStepGuard } from "../train/optim";
import { LrSchedule } from "../train/schedule";
import { Bm25Index } from "./bm25";
import { CACHED_IDS } from "./encode";
import { beirDocText } from "./probe";

export interface FinetuneOptions {
  /** Queries per batch. Default 16. */
  batchSize?: number;
  epochs?: number;
  /** Overrides epochs. */
  steps?: number;
  lr?: number;
  /** Default 0, TrainingArguments' default, which the official bi_encoder runs keep. */
  weightDecay?: number;
  /** Default 0, as weightDecay. */
  warmupRatio?: number;
  /** Scores are divided by this. Default 1 (dot product, the official default). */
  temperature?: number;
  /** Cosine instead of dot product. Default false. */
  normalize?: boolean;
  /**
   * Passages per query: its positive and trainGroupSize − 1 negatives from
   * BM25's top `negativesFromTopK`. Default 1 (in-batch negatives only); the
   * official default is 8, which costs 8 times the passages per step.
   */
  trainGroupSize?: number;
  /** Default 200, the official `sample_neg_from_topk`. */
  negativesFromTopK?: number;
  /** Old spelling of trainGroupSize 2. */
  bm25HardNegatives?: boolean;
  /** Passage tokens. Default 128, the official `passage_max_len`. */
  maxLength?: number;
  /** Query tokens. Default 32, the official `query_max_len`. */
  queryMaxLength?: number;
  seed?: number;
  signal?: AbortSignal;
  /** After each step, with its loss, the gradient norm before clipping, and the learning rate. */
  onStep?: (e: { step: number; loss: number; gradNorm: number; lr: number }) => void;
  /**
   * Draw the loss live on this chart (e.g. `new LossChart(title, { lossTitle:
   * "contrastive loss" })`), as a run named `name`, with a progress bar;
   * several fine-tunes can share one chart.
   */
  chart?: LossChart;
  /** The run's name on the chart. Default "fine-tune". */
  name?: string;
  /**
   * On webgpu, record a step's GPU commands and replay them for the steps
   * after, as Trainer's recordSteps does (lib/engine/webgpu/replay.ts): the
   * host issues a step in a few milliseconds instead of tfjs's tens. Queries
   * are then padded to queryMaxLength and passages to maxLength, so that
   * every step has the same shapes, and dropout's seeds are drawn on the
   * host as one value per step. "tfjs": the same steps, every one run
   * through tfjs (what a replay must equal, bit for bit). Default: true on
   * webgpu; ignored elsewhere.
   */
  recordSteps?: boolean | "tfjs";
}

/** (query id, positive doc id) pairs from a dataset's qrels (relevance > 0). */
export function trainingPairs(ds: BeirDataset): [string, string][] {
  const pairs: [string, string][] = [];
  for (const [q, docs] of ds.qrels) for (const [d, r] of docs) if (r > 0 && ds.queries.has(q) && ds.corpus.has(d)) pairs.push([q, d]);
  return pairs;
}

/** Each training query with its judged positives (relevance > 0), in qrels order. */
export function trainingQueries(ds: BeirDataset): { query: string; positives: string[] }[] {
  const out: { query: string; positives: string[] }[] = [];
  for (const [q, docs] of ds.qrels) {
    if (!ds.queries.has(q)) continue;
    const positives = [...docs].filter(([d, r]) => r > 0 && ds.corpus.has(d)).map(([d]) => d);
    if (positives.length) out.push({ query: q, positives });
  }
  return out;
}

/**
 * The official TrainDatasetForBiE's sampling: one epoch is a shuffled pass
 * over the queries; each query's group is [one random positive, then
 * groupSize − 1 negatives]. Negatives are drawn without replacement from
 * the query's top-k BM25 results that are not judged positive; when there
 * are fewer than needed, the rest are drawn at random from the corpus (as
 * the official code does when its mined list is short).
 */
export class TrainGroups {
  readonly queries: { query: string; positives: string[] }[];
  private readonly mined = new Map<string, string[]>();
  private readonly docIds: string[];
  private readonly bm25: Bm25Index | null;

  constructor(private readonly ds: BeirDataset, readonly groupSize: number, private readonly rng: Rng, private readonly topK = 200) {
    if (!Number.isInteger(groupSize) || groupSize < 1) throw new Error(`trainGroupSize must be a whole number ≥ 1 (one positive plus negatives); got ${groupSize}.`);
    this.queries = trainingQueries(ds);
    this.docIds = [...ds.corpus.keys()];
    this.bm25 = groupSize > 1 ? new Bm25Index([...ds.corpus].map(([id, d]) => [id, beirDocText(d.title, d.text)])) : null;
  }

  /** The mined negatives of one query: BM25's top k minus its judged positives. */
  negativesOf(query: string): string[] {
    let m = this.mined.get(query);
    if (!m) {
      const judged = this.ds.qrels.get(query);
      m = this.bm25!.search(this.ds.queries.get(query)!, this.topK).map(([id]) => id).filter((id) => !((judged?.get(id) ?? 0) > 0));
      this.mined.set(query, m);
    }
    return m;
  }

  /** One query's group of passage ids: positive first. */
  group(q: { query: string; positives: string[] }): string[] {
    const ids = [q.positives[this.rng.int(q.positives.length)]];
    if (this.groupSize === 1) return ids;
    const pool = this.negativesOf(q.query).slice();
    const need = this.groupSize - 1;
    for (let i = 0; i < need && pool.length; i++) ids.push(pool.splice(this.rng.int(pool.length), 1)[0]);
    while (ids.length < this.groupSize) ids.push(this.docIds[this.rng.int(this.docIds.length)]);
    return ids;
  }

  /** One epoch's batches of query indices: a shuffled pass, the last partial batch dropped. */
  epoch(batchSize: number): number[][] {
    const order = this.rng.permutation(this.queries.length);
    const batches: number[][] = [];
    for (let i = 0; i + batchSize <= order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
    return batches;
  }
}

/**
 * A step's largest tensors (the passages' pass, B·G rows) must fit the GPU's
 * largest buffer: checked before it is queued, with the batch size that fits.
 * A no-op off webgpu.
 */
function checkFinetuneFits(model: RetroMAE, rows: number, L: number, B: number, G: number): void {
  const over = overBufferLimit(model.encoderTensors(rows, L, true));
  if (!over) return;
  const fitsB = over.fits(B);
  const fix = fitsB >= 1 ? `use batchSize ${fitsB}${G > 1 ? ` (or a smaller trainGroupSize than ${G})` : ""}` : "lower maxLength";
  throw new Error(`Fine-tuning on ${rows} passages of ${L} tokens needs ${mibOf(over.need)} for ${over.what}, more than this GPU's largest buffer (${mibOf(over.limit)}); ${fix}.`);
}

/** What a fine-tune did: each step's loss, the steps taken, and on webgpu what recorded steps did (as Trainer.recordedSteps; null elsewhere or with recordSteps false). */
export interface FinetuneResult {
  losses: number[];
  steps: number;
  recordedSteps: RecordedSteps | null;
}

export async function contrastiveFinetune(model: RetroMAE, tokenizer: BertTokenizer, train: BeirDataset, options: FinetuneOptions = {}): Promise<FinetuneResult> {
  const B = options.batchSize ?? 16;
  const G = options.trainGroupSize ?? (options.bm25HardNegatives ? 2 : 1);
  const temperature = options.temperature ?? 1;
  const maxLength = options.maxLength ?? 128;
  const queryMaxLength = options.queryMaxLength ?? 32;
  model.checkTokenIds(tokenizer.vocab.size - 1, "The tokenizer");
  model.checkLength(maxLength, "maxLength");
  model.checkLength(queryMaxLength, "queryMaxLength");
  const record = options.recordSteps ?? true;
  if (record !== true && record !== false && record !== "tfjs") throw new Error(`Fine-tuning's recordSteps must be true, false or "tfjs", got ${JSON.stringify(record)}.`);
  const rng = new Rng(options.seed ?? 0);
  const groups = new TrainGroups(train, G, rng, options.negativesFromTopK ?? 200);
  const nq = groups.queries.length;
  if (nq < B) throw new Error(`Only ${nq} training queries with a positive judgement, fewer than one batch of ${B}; lower batchSize.`);
  const perEpoch = Math.floor(nq / B);
  const steps = options.steps ?? perEpoch * (options.epochs ?? 1);
  const encoder = new Map([...model.weights].filter(([k]) => k.startsWith("bert.")));
  const opt = new AdamW(encoder, { lr: options.lr ?? 2e-5, weightDecay: options.weightDecay ?? 0 });
  const schedule = new LrSchedule({ lr: opt.lr, totalSteps: steps, warmupRatio: options.warmupRatio ?? 0 });
  const docText = (id: string) => beirDocText(train.corpus.get(id)!.title, train.corpus.get(id)!.text);
  // Each query and passage is tokenized once: epochs revisit them, and tokenizing a step's 16 queries
  // and 16 passages took 1.6 ms, half a replayed step's host time. Up to CACHED_IDS ids are kept.
  const tokenIds = new Map<string, number[]>();
  let cachedIds = 0;
  const idsOf = (key: string, text: () => string, len: number): number[] => {
    let ids = tokenIds.get(key);
    if (!ids) {
      ids = tokenizer.encode(text(), { maxLength: len }).inputIds;
      if ((cachedIds += ids.length) <= CACHED_IDS) tokenIds.set(key, ids);
    }
    return ids;
  };
  // A recorded step has one shape: every batch padded to its maximum length (else to its longest row).
  const recorder = tf.getBackend() === "webgpu" && record !== false ? new StepRecorder({ replay: record !== "tfjs" }) : null;
  const batchOf = (rows: number[][], len: number) => tokenizer.padBatch(rows, recorder ? { padding: "max_length", maxLength: len } : {});
  const tensorsOf = (b: { inputIds: Int32Array; attentionMask: Int32Array; batchSize: number; seqLength: number }) =>
    [tf.tensor2d(b.inputIds, [b.batchSize, b.seqLength], "int32"), tf.tensor2d(b.attentionMask, [b.batchSize, b.seqLength], "int32")] as const;
  const labelIds = Int32Array.from({ length: B }, (_, i) => i * G); // query i's positive is passage i·G
  const embed = (ids: tf.Tensor2D, mask: tf.Tensor2D, seeds: DropoutSeeds | undefined) => {
    const e = model.cls(ids, mask, { training: true, rng, seeds });
    return options.normalize ? (tf.div(e, tf.maximum(tf.norm(e, 2, 1, true), 1e-12)) as tf.Tensor2D) : e;
  };
  const losses: number[] = [];
  // "every step so far was finite", on the device (finiteStepGuard): the trainer's guard
  const healthy = tf.tidy(() => tf.variable(tf.scalar(true, "bool"), false));
  const live = options.chart ? new LiveReport(options.chart, options.chart.addRun({ name: options.name ?? "fine-tune" }), steps) : null;
  // what ran before (a trainer's recorded step, a probe) goes back first: fine-tuning has a working set of its own
  freeGpuMemory();
  const started = performance.now();
  let failed = false;
  let recordedSteps: FinetuneResult["recordedSteps"] = null;
  // A step's loss is read one step behind, as the trainer reads its losses: the read starts as the
  // step is queued (it copies the loss after this step's work only), and is awaited once the next
  // step is queued, so on a GPU the device runs step s + 1 while the host takes step s's loss.
  type Queued = { step: number; value: tf.Tensor; read: Promise<ArrayLike<number>>; what: string; fix: string; lr: number }; // value: [loss, norm, ok]
  let queued: Queued | null = null; // the step queued last, not read yet
  const settle = async (q: Queued) => {
    let loss: number, gradNorm: number, ok: number;
    try {
      const v = await q.read;
      [loss, gradNorm, ok] = [v[0], v[1], v[2]];
      // On webgpu, an error the device reported (out of memory) means this step's update is not what it should be.
      throwIfDeviceError(q.what, q.fix);
    } catch (err) {
      trimGpuPool(true);
      throw asDeviceFailure(err, q.what, q.fix);
    } finally {
      q.value.dispose();
    }
    if (!ok && !computesNothing()) { // on Dawn's Null device no value is computed, so there is nothing to guard
      const what = Number.isFinite(loss) ? `the gradient norm became ${gradNorm} (loss ${loss})` : `the loss became ${loss}`;
      throw new Error(`Fine-tuning stopped at step ${q.step}: ${what}; no update was applied from that step on, so the encoder has step ${q.step - 1}'s weights. Lower lr (now ${opt.lr}) or check the data.`);
    }
    losses.push(loss);
    options.onStep?.({ step: q.step, loss, gradNorm, lr: q.lr });
    live?.push({ type: "step", step: q.step, loss, encoderLoss: loss, decoderLoss: NaN, lr: q.lr, elapsedMs: performance.now() - started, stepInFit: q.step });
  };
  try {
    let batches: number[][] = [];
    for (let step = 0; step < steps; step++) {
      if (options.signal?.aborted) break;
      if (step % perEpoch === 0) batches = groups.epoch(B);
      const batch = batches[step % perEpoch].map((i) => groups.queries[i]);
      const queries = batch.map((q) => idsOf(`q ${q.query}`, () => train.queries.get(q.query)!, queryMaxLength));
      const passages = batch.flatMap((q) => groups.group(q)).map((id) => idsOf(`d ${id}`, () => docText(id), maxLength)); // [B·G], query i's positive at i·G
      const qBatch = batchOf(queries, queryMaxLength);
      const pBatch = batchOf(passages, maxLength);
      // a recorded step's dropout seeds: as many draws as the two passes' dropout calls, where the CPU draws them
      const seeds = recorder ? DropoutSeeds.forStep(rng, 2 * model.clsDropoutCalls()) : undefined;
      const what = `Fine-tuning step ${step + 1} (${B} queries of up to ${queryMaxLength} tokens, ${B * G} passages of up to ${maxLength})`;
      const fix = `the encoder's weights may be damaged, so load it again and fine-tune with a smaller batchSize (e.g. ${Math.max(1, B >> 1)}) or maxLength`;
      const lr = schedule.at(step);
      // AdamW's scalars for this step, made before it where the step is recorded (they are one of its inputs)
      const hyper = recorder ? opt.advance(lr) : undefined;
      // forward, backward, clipping and the update where the step is finite, queued; returns [loss, norm, ok] in one tensor (one read)
      const queue = (): tf.Tensor[] => {
        const [qIds, qMask] = tensorsOf(qBatch);
        const [pIds, pMask] = tensorsOf(pBatch);
        const labels = tf.tensor1d(labelIds, "int32");
        try {
          const result = tf.variableGrads(() => {
            const q = embed(qIds, qMask, seeds); // [B, H]
            const p = embed(pIds, pMask, seeds); // [B·G, H]
            const scores = tf.div(tf.matMul(q, p, false, true), temperature) as tf.Tensor2D; // [B, B·G]
            return crossEntropy(scores, labels);
          }, [...encoder.values()]);
          if (seeds && seeds.callsMade !== 2 * model.clsDropoutCalls()) {
            tf.dispose([result.value, ...Object.values(result.grads)]);
            throw new Error(`The fine-tuning step made ${seeds.callsMade} dropout calls where 2 × RetroMAE.clsDropoutCalls() counts ${2 * model.clsDropoutCalls()}; update clsDropoutCalls to the model's structure (a bug in this package).`);
          }
          const named = new Map([...encoder].map(([k, v]) => [k, result.grads[v.name]]));
          const { norm, ok } = opt.clipAndApply(named, { maxNorm: 1.0, lr, hyper, guard: finiteStepGuard(healthy, result.value as tf.Scalar) });
          const values = tf.tidy(() => tf.stack([result.value, norm, tf.cast(ok!, "float32")]));
          tf.dispose([result.value, norm, ok!]);
          return [values];
        } finally {
          tf.dispose([qIds, qMask, pIds, pMask, labels]);
        }
      };
      let value: tf.Tensor;
      try {
        checkFinetuneFits(model, pBatch.batchSize, pBatch.seqLength, B, G);
        if (!recorder) [value] = queue();
        else {
          const inputs = [qBatch.inputIds, qBatch.attentionMask, pBatch.inputIds, pBatch.attentionMask, ...(seeds ? [seeds.base] : []), hyper!.device];
          [value] = recorder.run(JSON.stringify(inputs.map((a) => a.byteLength)), inputs, () => [...encoder.values(), ...opt.stateTensors(), healthy], queue);
        }
      } catch (err) {
        trimGpuPool(true);
        throw asDeviceFailure(err, what, fix);
      }
      const read = value.data();
      read.catch(() => undefined); // (awaited by settle; a run that fails first drops it)
      const previous: Queued | null = queued;
      queued = { step: step + 1, value, read, what, fix, lr };
      if (previous) await settle(previous);
      if (!recorder) trimGpuPool(); // batches of new padded lengths leave buffers of their own
      await new Promise((r) => setImmediate(r));
    }
    const last: Queued | null = queued;
    queued = null;
    if (last) await settle(last);
  } catch (err) {
    failed = true;
    (queued as Queued | null)?.value.dispose();
    throw err;
  } finally {
    live?.finish(failed ? "failed" : losses.length < steps ? "stopped" : "done");
    opt.dispose(); // the moments, also when a step failed
    healthy.dispose();
    recordedSteps = recorder?.counts ?? null;
    recorder?.dispose(); // a replay holds its step's working set on the GPU
  }
  return { losses, steps: losses.length, recordedSteps };
}
