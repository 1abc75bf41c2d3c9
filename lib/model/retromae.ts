/**
 * RetroMAE (Xiao et al., EMNLP 2022): a BERT encoder whose [CLS] embedding a
 * one-layer "enhanced" decoder must rebuild the sentence from.
 *
 * Weights (HF names): the encoder is BertForMaskedLM (`bert.*`,
 * `cls.predictions.*`, decoder tied to the word embeddings); the decoder
 * layer is `c_head.*`, with BertLayer's sub-names. Only the encoder is kept
 * after pre-training.
 */
import * as tf from "../engine/tf";
import { Rng } from "../engine/rng";
import { IGNORE, RetroMAEBatch } from "../masking/batch";
import {
  bertEmbeddings,
  embeddingsOfVectors,
  bertEncoder,
  bertLayer,
  encoderWeightShapes,
  ForwardOptions,
  initialValues,
  layerWeightShapes,
  MASK_VALUE,
  mlmLogits,
  mlmTransform,
  paddingMask,
  tiedSoftmaxCrossEntropy,
  weight,
  Weights,
} from "./bert";
import { BertConfig, bertConfig, PresetName, validateConfig } from "./config";
import { LoadOptions, LoadReport, matchWeights, readCheckpointFiles, SaveOptions, writeCheckpointFiles } from "./checkpoint";
import type { NamedArray } from "./safetensors";
import { hubSnapshot, HubOptions } from "./hub";
import { maxTensorElements, mibOf, overBufferLimit } from "../engine/webgpu/backend";
import { additiveMaskOfBytes, attentionInPlace, bytesAsWords } from "../engine/fused";

export const DECODER_PREFIX = "c_head";

/** The parts of the RetroMAE loss. Scalars; dispose them, or read them with `lossValues`. */
export interface RetroMAELosses {
  loss: tf.Scalar;
  encoderLoss: tf.Scalar;
  decoderLoss: tf.Scalar;
  encoderAccuracy: tf.Scalar;
  decoderAccuracy: tf.Scalar;
  /** [B, H] sentence embeddings (last hidden state at [CLS]). */
  cls: tf.Tensor2D;
  /** DupMAE bag-of-words loss (unweighted), when bowLossWeight > 0. */
  bowLoss?: tf.Scalar;
}

/** The loss parts as device scalars, before they are read. */
export interface LossTensors {
  loss: tf.Scalar;
  encoderLoss: tf.Scalar;
  decoderLoss: tf.Scalar;
  encoderAccuracy: tf.Scalar;
  decoderAccuracy: tf.Scalar;
  bowLoss?: tf.Scalar;
}

/**
 * The loss parts as one vector, to read in one transfer: [loss, encoderLoss,
 * decoderLoss, encoderAccuracy, decoderAccuracy, (bowLoss)], then `extra`
 * (float32 scalars). The parts and `extra` are disposed.
 */
export function stackLossValues(t: LossTensors, extra: tf.Scalar[] = []): tf.Tensor1D {
  const parts = [t.loss, t.encoderLoss, t.decoderLoss, t.encoderAccuracy, t.decoderAccuracy, ...(t.bowLoss ? [t.bowLoss] : []), ...extra];
  const stacked = tf.stack(parts) as tf.Tensor1D;
  tf.dispose(parts);
  return stacked;
}

/** The loss values from stackLossValues's vector, as read; `bow` where it has bowLoss. */
export function lossValuesOf(v: ArrayLike<number>, bow: boolean): LossValues {
  const values: LossValues = { loss: v[0], encoderLoss: v[1], decoderLoss: v[2], encoderAccuracy: v[3], decoderAccuracy: v[4] };
  if (bow) values.bowLoss = v[5];
  return values;
}

/** Read loss parts in one transfer (awaited, never a synchronous read), then dispose them. */
export async function readLossValues(t: LossTensors): Promise<LossValues> {
  const stacked = stackLossValues(t);
  const v = await stacked.data();
  stacked.dispose();
  return lossValuesOf(v, !!t.bowLoss);
}

export interface LossValues {
  loss: number;
  encoderLoss: number;
  decoderLoss: number;
  encoderAccuracy: number;
  decoderAccuracy: number;
  /** DupMAE bag-of-words loss (unweighted), when enabled. */
  bowLoss?: number;
}

/** Names and shapes of every RetroMAE weight: the encoder's, then the decoder layer's. */
export function retroMAEWeightShapes(cfg: BertConfig): Map<string, number[]> {
  const shapes = encoderWeightShapes(cfg);
  for (const [name, shape] of layerWeightShapes(cfg)) shapes.set(`${DECODER_PREFIX}.${name}`, shape);
  return shapes;
}

/**
 * Flat row indices (b·L + i) where labels are not IGNORE, and those labels.
 * With `slots` (the batch's labelSlots), padded to that many rows: the
 * padding points at row 0 with label 0 and weight 0, and `weights` is 1 for
 * the labelled rows.
 */
function labelledPositions(labels: Int32Array, slots?: number): Labelled {
  let n = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] !== IGNORE) n++;
  if (slots !== undefined && n > slots) {
    throw new Error(`The batch labels ${n} positions but its labelSlots hold ${slots}; make batches with the collator that set them, or without staticShapes.`);
  }
  const rows = new Int32Array(slots ?? n);
  const targets = new Int32Array(slots ?? n);
  const weights = slots !== undefined ? new Float32Array(slots) : null;
  for (let i = 0, k = 0; i < labels.length; i++) {
    if (labels[i] !== IGNORE) {
      if (weights) weights[k] = 1;
      rows[k] = i;
      targets[k++] = labels[i];
    }
  }
  return { rows, targets, weights };
}

interface Labelled {
  rows: Int32Array;
  targets: Int32Array;
  /** 1 at labelled rows, 0 at padding; null when not padded. */
  weights: Float32Array | null;
}

/**
 * The host arrays a batch's step uploads, beyond the batch's own: made once
 * per batch, so the step's tensors come from these very arrays (a recorded
 * step's inputs, see stepInputs).
 */
interface Prepared {
  encoder: Labelled;
  decoder: Labelled;
  /** [B, L, L] the decoder's attention mask, its bytes four to an int32 word (bytesAsWords). */
  visibleWords: Int32Array;
  /** DupMAE's bag-of-words target, once asked for. */
  bow?: Float32Array;
}

const preparedBatches = new WeakMap<RetroMAEBatch, Prepared>();

function prepared(batch: RetroMAEBatch): Prepared {
  let p = preparedBatches.get(batch);
  if (!p) {
    p = {
      encoder: labelledPositions(batch.encoderLabels, batch.labelSlots?.encoder),
      decoder: labelledPositions(batch.decoderLabels, batch.labelSlots?.decoder),
      visibleWords: bytesAsWords(batch.decoderAttentionMask),
    };
    preparedBatches.set(batch, p);
  }
  return p;
}

/**
 * Cross-entropy and accuracy of the MLM head at the labelled rows of
 * hidden [B·L, H]. Logits are computed at those rows only (the loss is the
 * same as with full logits). No labelled rows gives a zero loss. Padded
 * rows (weight 0) add nothing to the loss, the accuracy or the gradients.
 */
function mlmLoss(w: Weights, cfg: BertConfig, hidden: tf.Tensor2D, labelled: Labelled): { loss: tf.Scalar; acc: tf.Scalar } {
  const { rows, targets, weights } = labelled;
  if (rows.length === 0) return { loss: tf.scalar(0), acc: tf.scalar(0) };
  const picked = tf.gather(hidden, tf.tensor1d(rows, "int32")) as tf.Tensor2D; // [M, H]
  const t = mlmTransform(w, cfg, picked); // [M, H]
  // a GPU's largest buffer may hold fewer rows of logits than are labelled: then they go in parts
  const limit = maxTensorElements();
  const { loss, accuracy } = tiedSoftmaxCrossEntropy(
    t,
    weight(w, "bert.embeddings.word_embeddings.weight") as tf.Tensor2D,
    weight(w, "cls.predictions.bias") as tf.Tensor1D,
    tf.tensor1d(targets, "int32"),
    weights ? tf.tensor1d(weights) : undefined,
    limit === null ? Infinity : Math.floor(limit / cfg.vocabSize),
  );
  return { loss, acc: accuracy };
}

/**
 * DupMAE's bag-of-words target (Xiao et al. 2023, FlagEmbedding
 * modeling_duplex.py): 1/n for each distinct token among the n body tokens
 * (no [CLS]/[SEP]/padding) of each row. -> [B, V]
 */
export function bagOfWordsWeights(batch: RetroMAEBatch, vocabSize: number): Float32Array {
  const { batchSize: B, seqLength: L } = batch;
  const out = new Float32Array(B * vocabSize);
  for (let b = 0; b < B; b++) {
    const n = batch.lengths[b] - 2;
    for (let i = 1; i <= n; i++) out[b * vocabSize + batch.decoderInputIds[b * L + i]] = 1 / n;
  }
  return out;
}

/**
 * DupMAE bag-of-words loss: the encoder's MLM logits at positions 1..L-1,
 * padding pushed down by 1000, max-pooled over the sequence into one
 * vocabulary-sized vector per row, then cross-entropy against the bag of
 * words. hidden [B, L, H] -> scalar
 */
function bowLoss(w: Weights, cfg: BertConfig, hidden: tf.Tensor3D, batch: RetroMAEBatch): tf.Scalar {
  const { batchSize: B, seqLength: L } = batch;
  const H = cfg.hiddenSize;
  const V = cfg.vocabSize;
  const body = tf.slice(hidden, [0, 1, 0], [B, L - 1, H]).reshape([B * (L - 1), H]) as tf.Tensor2D;
  const logits = mlmLogits(w, cfg, body).reshape([B, L - 1, V]); // [B, L-1, V]
  const attn = tf.slice(tf.tensor2d(batch.attentionMask, [B, L], "int32"), [0, 1], [B, L - 1]);
  const penalty = tf.mul(tf.sub(1, tf.cast(attn, "float32")), -1000).reshape([B, L - 1, 1]);
  const pooled = tf.max(tf.add(logits, penalty), 1) as tf.Tensor2D; // [B, V]
  const p = prepared(batch);
  const target = tf.tensor2d((p.bow ??= bagOfWordsWeights(batch, V)), [B, V]);
  return tf.mean(tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(pooled)), 1))) as tf.Scalar;
}

export class RetroMAE {
  readonly config: BertConfig;
  /**
   * Weight of DupMAE's bag-of-words loss on the encoder's MLM logits; 0 (off)
   * by default, 0.1 in DupMAE. It needs logits at every position, so it costs
   * a full-vocabulary projection of the encoder output.
   */
  get bowLossWeight(): number {
    return this.bowWeight;
  }
  set bowLossWeight(w: number) {
    if (typeof w !== "number" || !(w >= 0) || !Number.isFinite(w)) {
      throw new Error(`bowLossWeight must be a number >= 0, got ${String(w)}; DupMAE uses 0.1, and 0 turns it off.`);
    }
    this.bowWeight = w;
  }
  private bowWeight = 0;
  /**
   * Weight of the decoder's loss; 1 in RetroMAE. 0 gives the MLM-only
   * baseline of the same encoder and budget: the decoder is not run and gets
   * no gradient, and its loss and accuracy read NaN.
   */
  get decoderLossWeight(): number {
    return this.decWeight;
  }
  set decoderLossWeight(w: number) {
    if (typeof w !== "number" || !(w >= 0) || !Number.isFinite(w)) {
      throw new Error(`decoderLossWeight must be a number >= 0, got ${String(w)}; RetroMAE uses 1, and 0 trains the MLM-only baseline.`);
    }
    this.decWeight = w;
  }
  private decWeight = 1;
  /** All weights, HF names; the encoder's are `bert.*` and `cls.*`, the decoder's `c_head.*`. */
  readonly weights: Map<string, tf.Variable>;

  constructor(config: BertConfig, weights: Map<string, tf.Variable>) {
    validateConfig(config);
    this.config = config;
    this.weights = weights;
  }

  /**
   * Throws one sentence when `source` (a tokenizer, a corpus) has token ids up
   * to `largestId`, past the model's vocabulary: the embedding lookup would
   * read past its table. The cpu backends would stop inside tfjs; webgpu
   * checks no index, and would give a wrong vector, silently.
   */
  checkTokenIds(largestId: number, source: string): void {
    const V = this.config.vocabSize;
    if (largestId < V) return;
    throw new Error(`${source} has token ids up to ${largestId.toLocaleString("en-US")}, past this model's vocabulary of ${V.toLocaleString("en-US")} (config.vocabSize); use the tokenizer the model was made with, or a model made for this one (vocabSize ${(largestId + 1).toLocaleString("en-US")} or more).`);
  }

  /** Throws one sentence when a length setting (`name`: maxLength, queryMaxLength) is past the model's positions. */
  checkLength(value: number, name: string): void {
    const P = this.config.maxPositionEmbeddings;
    if (value > P) throw new Error(`${name} ${value} exceeds the model's ${P} positions; lower ${name}.`);
  }

  /**
   * A checkpoint from the Hugging Face Hub, e.g. "bert-base-uncased" or
   * "Shitao/RetroMAE" (safetensors; cached as huggingface_hub caches), or a
   * local folder. Weights the checkpoint lacks (the decoder) start fresh.
   */
  static async fromPretrained(repoOrPath: string, options: HubOptions & LoadOptions = {}): Promise<RetroMAE> {
    return loadCheckpoint(await hubSnapshot(repoOrPath, options), options).model;
  }

  /** A freshly initialised model (HF init: normal(0, 0.02), zero biases, LayerNorm 1). */
  static create(preset: PresetName | BertConfig = "tiny", options: { rng?: Rng; seed?: number; overrides?: Partial<BertConfig> } = {}): RetroMAE {
    const cfg = typeof preset === "string" ? bertConfig(preset, options.overrides) : { ...preset, ...options.overrides };
    validateConfig(cfg);
    const rng = options.rng ?? new Rng(options.seed ?? 42);
    const shapes = retroMAEWeightShapes(cfg);
    const values = initialValues(shapes, cfg, rng);
    return new RetroMAE(cfg, variablesFrom(values, shapes));
  }

  /** Sentence embeddings: last hidden state at [CLS]. inputIds, attentionMask [B, L] -> [B, H] */
  encode(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, opts: ForwardOptions = { training: false }): tf.Tensor2D {
    return tf.tidy(() => this.cls(inputIds, attentionMask, opts));
  }

  /** As encode, without its tidy: for use inside tf.variableGrads (fine-tuning). */
  cls(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, opts: ForwardOptions = { training: false }): tf.Tensor2D {
    // Inference computes the last layer at [CLS] only (same vector, less work). Training keeps
    // the full stack, so dropout draws, and fine-tuning runs, stay as they were.
    return clsOf(this.encoderHidden(inputIds, attentionMask, opts, !opts.training)); // [B, H]
  }

  /** -> [B, L, H], or [B, 1, H] (position 0) with clsOnly */
  private encoderHidden(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, opts: ForwardOptions, clsOnly = false): tf.Tensor3D {
    // (past the position table, webgpu's gather would read beyond it unchecked)
    if (inputIds.shape[1] > this.config.maxPositionEmbeddings) throw new Error(`Input length ${inputIds.shape[1]} exceeds the model's ${this.config.maxPositionEmbeddings} positions; truncate the inputs to ${this.config.maxPositionEmbeddings} tokens.`);
    const w = this.weights;
    const embedded = bertEmbeddings(w, this.config, inputIds, null, opts); // [B, L, H]
    return bertEncoder(w, this.config, embedded, paddingMask(attentionMask), opts, clsOnly);
  }

  /**
   * The enhanced decoder. cls [B, H], ids [B, L] original ids, mask
   * [B, 1, L, L] additive (0 where row i may see j) -> hidden [B, L, H].
   *
   * H1 (query) = position embeddings + [CLS] embedding at every position
   * (RetroMAE's modeling.py). In DupMAE mode (bowLossWeight > 0) it goes
   * through the embedding module as modeling_duplex.py does:
   * LayerNorm([CLS] + position + token-type[0]), then dropout.
   * H2 (key/value) = [CLS] embedding, then the encoder's embedding layer on
   * the original ids at positions 1..L-1. The residual adds to the query.
   */
  private decoderHidden(cls: tf.Tensor2D, ids: tf.Tensor2D, mask: tf.Tensor4D, opts: ForwardOptions): tf.Tensor3D {
    const w = this.weights;
    const cfg = this.config;
    const [B, L] = ids.shape;
    const H = cfg.hiddenSize;
    const cls3 = cls.reshape([B, 1, H]); // [B, 1, H]
    const embedded = bertEmbeddings(w, cfg, ids, null, opts); // [B, L, H]
    const keyValue = tf.concat([cls3, tf.slice(embedded, [0, 1, 0], [B, L - 1, H])], 1) as tf.Tensor3D; // H2 [B, L, H]
    const query = this.bowLossWeight > 0
      ? embeddingsOfVectors(w, cfg, tf.broadcastTo(cls3, [B, L, H]) as tf.Tensor3D, null, opts) // H1 [B, L, H], DupMAE
      : (tf.add(tf.slice(w.get("bert.embeddings.position_embeddings.weight")!, [0, 0], [L, H]), cls3) as tf.Tensor3D); // H1 [B, L, H]
    return bertLayer(w, DECODER_PREFIX, cfg, query, keyValue, mask, opts); // [B, L, H]
  }

  /**
   * How many dropout calls one training forward (`losses` with training:
   * true) makes, each a draw of the run's generator on the backends that
   * seed dropout per call: the embeddings, and in every layer the attention
   * probabilities, the attention output and the feed-forward output; the
   * decoder's embeddings (twice in DupMAE mode) and its layer. A rate of 0
   * makes no call. webgpu draws as many per step (DropoutSeeds.forStep), so
   * that the masking after them draws the same values on every backend.
   */
  dropoutCalls(): number {
    const { hidden, layer } = this.dropoutsPerBlock();
    const decoder = this.decoderLossWeight > 0 ? hidden * (this.bowLossWeight > 0 ? 2 : 1) + layer : 0;
    return this.clsDropoutCalls() + decoder;
  }

  /** How many dropout calls one training `cls` (the encoder alone, as fine-tuning runs it) makes; see dropoutCalls. */
  clsDropoutCalls(): number {
    const { hidden, layer } = this.dropoutsPerBlock();
    return hidden + this.config.numHiddenLayers * layer;
  }

  /** Dropout calls of an embedding module (hidden) and of a transformer layer. */
  private dropoutsPerBlock(): { hidden: number; layer: number } {
    const hidden = this.config.hiddenDropoutProb > 0 ? 1 : 0;
    return { hidden, layer: 2 * hidden + (this.config.attentionProbsDropoutProb > 0 ? 1 : 0) };
  }

  /**
   * All loss parts for one batch: encoder MLM cross-entropy at its masked
   * positions, plus decoder cross-entropy at every labelled position. Call
   * inside tf.tidy or tf.variableGrads.
   */
  losses(batch: RetroMAEBatch, opts: ForwardOptions = { training: false }): RetroMAELosses {
    const cfg = this.config;
    const { batchSize: B, seqLength: L } = batch;
    if (L > cfg.maxPositionEmbeddings) {
      throw new Error(`Batch sequence length ${L} exceeds the model's ${cfg.maxPositionEmbeddings} positions; lower the collator's maxLength.`);
    }
    this.checkFits(batch);
    const H = cfg.hiddenSize;
    const encIds = tf.tensor2d(batch.encoderInputIds, [B, L], "int32");
    const attn = tf.tensor2d(batch.attentionMask, [B, L], "int32");
    const hidden = this.encoderHidden(encIds, attn, opts); // [B, L, H]
    const cls = clsOf(hidden); // [B, H]
    const p = prepared(batch);
    const enc = mlmLoss(this.weights, cfg, hidden.reshape([B * L, H]), p.encoder);

    let dec: { loss: tf.Scalar; acc: tf.Scalar };
    let loss: tf.Scalar;
    if (this.decoderLossWeight > 0) {
      const decIds = tf.tensor2d(batch.decoderInputIds, [B, L], "int32");
      const mask = additiveMaskOfBytes(p.visibleWords, [B, 1, L, L], MASK_VALUE) as tf.Tensor4D; // 0 where visible, else MASK_VALUE
      const decHidden = this.decoderHidden(cls, decIds, mask, opts); // [B, L, H]
      dec = mlmLoss(this.weights, cfg, decHidden.reshape([B * L, H]), p.decoder);
      loss = (this.decoderLossWeight === 1 ? tf.add(enc.loss, dec.loss) : tf.add(enc.loss, tf.mul(dec.loss, this.decoderLossWeight))) as tf.Scalar;
    } else {
      // MLM-only: no decoder pass at all.
      dec = { loss: tf.scalar(NaN), acc: tf.scalar(NaN) };
      loss = enc.loss;
    }

    const out: RetroMAELosses = {
      loss,
      encoderLoss: enc.loss,
      decoderLoss: dec.loss,
      encoderAccuracy: enc.acc,
      decoderAccuracy: dec.acc,
      cls,
    };
    if (this.bowLossWeight > 0) {
      out.bowLoss = bowLoss(this.weights, cfg, hidden, batch);
      out.loss = tf.add(out.loss, tf.mul(out.bowLoss, this.bowLossWeight)) as tf.Scalar;
    }
    return out;
  }

  /**
   * The host arrays a step on `batch` uploads, in a fixed order: the batch's
   * own and those derived from it (labelled rows, targets, weights). The
   * step's tensors are made from these very arrays, so they are the inputs
   * of a recorded step (lib/engine/webgpu/replay.ts).
   */
  stepInputs(batch: RetroMAEBatch): ArrayBufferView[] {
    const p = prepared(batch);
    const side = (l: Labelled) => [l.rows, l.targets, ...(l.weights ? [l.weights] : [])];
    const out: ArrayBufferView[] = [batch.encoderInputIds, batch.attentionMask, ...side(p.encoder)];
    if (this.decoderLossWeight > 0) out.push(batch.decoderInputIds, p.visibleWords, ...side(p.decoder));
    if (this.bowLossWeight > 0) out.push((p.bow ??= bagOfWordsWeights(batch, this.config.vocabSize)));
    return out;
  }

  /**
   * Forward and backward for one batch, queued on the device: nothing is
   * read back. Returns the gradients (HF names) and the loss parts as
   * scalars; the caller disposes both (readLossValues reads and disposes the
   * parts). Lookups of [PAD] add no gradient to its embedding row, as
   * PyTorch's padding_idx.
   */
  gradients(batch: RetroMAEBatch, opts: ForwardOptions = { training: true }): { grads: Map<string, tf.Tensor>; losses: LossTensors } {
    let kept: Omit<LossTensors, "loss"> | null = null;
    const { value, grads } = tf.variableGrads(() => {
      const out = this.losses(batch, opts);
      kept = {
        encoderLoss: tf.keep(out.encoderLoss),
        decoderLoss: tf.keep(out.decoderLoss),
        encoderAccuracy: tf.keep(out.encoderAccuracy),
        decoderAccuracy: tf.keep(out.decoderAccuracy),
        ...(out.bowLoss ? { bowLoss: tf.keep(out.bowLoss) } : {}),
      };
      return out.loss;
    }, [...this.weights].filter(([name]) => this.decoderLossWeight > 0 || !name.startsWith(`${DECODER_PREFIX}.`)).map(([, v]) => v));
    const byName = new Map<string, tf.Tensor>();
    for (const [name, v] of this.weights) if (grads[v.name]) byName.set(name, grads[v.name]);
    // MLM-only: the loss is the encoder's loss, one tensor. A clone (the same data, no kernel) gives
    // each part a tensor of its own, so a caller that adds and disposes them part by part (gradient
    // accumulation) does not read a part it already disposed.
    const loss = value === kept!.encoderLoss ? value.clone() : value;
    return { grads: byName, losses: { loss, ...kept! } };
  }

  /**
   * Forward and backward for one batch: the gradients (HF names; the caller
   * disposes them) and the loss parts as numbers, read with one awaited
   * transfer (no synchronous read: the same code on a GPU and a CPU).
   */
  async forwardBackward(batch: RetroMAEBatch, opts: ForwardOptions = { training: true }): Promise<{ grads: Map<string, tf.Tensor>; values: LossValues }> {
    const { grads, losses } = this.gradients(batch, opts);
    return { grads, values: await readLossValues(losses) };
  }

  /**
   * On a GPU whose buffers have a size limit (webgpu: the adapter's
   * maxBufferSize and maxStorageBufferBindingSize), refuse a batch whose
   * largest tensor would not fit, with one sentence naming a batch size that
   * does, before anything is queued (the device would answer with a
   * validation error, asynchronously).
   */
  private checkFits(batch: RetroMAEBatch): void {
    const cfg = this.config;
    const { batchSize: B, seqLength: L } = batch;
    const V = cfg.vocabSize;
    // (the MLM logits need no check: they go in parts of as many rows as the largest buffer holds, mlmLoss)
    const candidates: [string, number][] = this.encoderTensors(B, L, true);
    if (this.bowLossWeight > 0) candidates.push([`the bag-of-words logits [${B}, ${L - 1}, ${V}]`, B * (L - 1) * V]);
    const over = overBufferLimit(candidates);
    if (!over) return;
    const fitsB = over.fits(B);
    const fix = fitsB >= 1 ? `use batchSize ${fitsB} (with gradAccumulation ${Math.ceil(B / fitsB)} to keep the effective batch)` : `lower maxLength to ${Math.max(1, over.fits(L))}`;
    throw new Error(`A batch of ${B} × ${L} needs ${mibOf(over.need)} for ${over.what}, more than this GPU's largest buffer (${mibOf(over.limit)}); ${fix}.`);
  }

  /**
   * The largest tensors one encoder pass over B × L makes, as [description,
   * float32 elements], for checking against a GPU's largest buffer. The
   * attention scores exist as a tensor in training, and in inference where
   * the fused attention is not registered.
   */
  encoderTensors(B: number, L: number, training: boolean): [string, number][] {
    const cfg = this.config;
    const tensors: [string, number][] = [
      [`the feed-forward activations [${B * L}, ${cfg.intermediateSize}]`, B * L * cfg.intermediateSize],
      [`the query, key and value [${B * L}, ${3 * cfg.hiddenSize}]`, B * L * 3 * cfg.hiddenSize],
    ];
    if (training || !attentionInPlace()) tensors.push([`the attention scores [${B}, ${cfg.numAttentionHeads}, ${L}, ${L}]`, B * cfg.numAttentionHeads * L * L]);
    return tensors;
  }

  /** Only the encoder's weights (what is kept after pre-training). */
  encoderWeights(): Map<string, tf.Variable> {
    return new Map([...this.weights].filter(([k]) => !k.startsWith(`${DECODER_PREFIX}.`)));
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
    this.weights.clear();
  }
}

/** Save a model as a Hugging Face folder (see checkpoint.ts for the layout). Each file is written atomically. */
export async function saveCheckpoint(model: RetroMAE, dir: string, options: SaveOptions = {}): Promise<void> {
  const weights = options.encoderOnly ? model.encoderWeights() : model.weights;
  const tensors = new Map<string, NamedArray>();
  for (const [name, v] of weights) tensors.set(name, { dtype: "F32", shape: v.shape, data: (await v.data()) as Float32Array });
  writeCheckpointFiles(dir, model.config, tensors, options);
}

/**
 * Load a checkpoint folder (or a model.safetensors path next to its
 * config.json) as a RetroMAE; weights the file lacks start fresh, and the
 * report says which (see matchWeights).
 */
export function loadCheckpoint(location: string, options: LoadOptions = {}): { model: RetroMAE; report: LoadReport } {
  const files = readCheckpointFiles(location);
  const shapes = retroMAEWeightShapes(files.config);
  const { values, report } = matchWeights(files, shapes, options);
  return { model: new RetroMAE(files.config, variablesFrom(values, shapes)), report };
}

/** hidden [B, L, H] -> [B, H] at position 0 */
function clsOf(hidden: tf.Tensor3D): tf.Tensor2D {
  const [B, , H] = hidden.shape;
  return tf.slice(hidden, [0, 0, 0], [B, 1, H]).reshape([B, H]) as tf.Tensor2D;
}

let variableCounter = 0;

/** tf.Variables from JS values, named uniquely so several models can live side by side. */
export function variablesFrom(values: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, number[]>): Map<string, tf.Variable> {
  const id = ++variableCounter;
  const out = new Map<string, tf.Variable>();
  for (const [name, shape] of shapes) {
    const v = values.get(name);
    if (!v) throw new Error(`Model weight "${name}" has no value.`);
    const t = tf.tensor(v, shape, "float32");
    out.set(name, tf.variable(t, true, `m${id}/${name}`));
    t.dispose();
  }
  return out;
}
