/**
 * BERT blocks, as in Devlin et al. 2019 and Hugging Face `modeling_bert.py`.
 *
 * Weights live in a flat map keyed by Hugging Face names
 * (`bert.encoder.layer.0.attention.self.query.weight`, ...). Linear weights are
 * stored [out, in], as PyTorch stores them, and applied as x · Wᵀ + b.
 *
 * Shapes: B batch, L sequence, H hidden, nh heads, dh = H / nh, V vocab.
 */
import * as tf from "../engine/tf";
import type { Rng } from "../engine/rng";
import { addLayerNorm, attentionContext, linearAndInput, feedForward, geluLayerNorm, embeddingGrad, repeatedRow, attentionInference, attentionInPlace, attentionScores, attentionTraining, attentionTrainingApplies, DropoutCall, dropoutWithSeed, DropoutSeeds, embeddingsLayerNorm, gelu as fusedGelu, layerNormDropout, linear, logSumExpArgMax, logSumExpRows, meanNllAndAccuracy, pickLabels, scaledMaskedSoftmax, softmaxMinusOneHot, softmaxMinusOneHotColSum, stackRows, tiedLogits } from "../engine/fused";
import type { BertConfig } from "./config";

export type Weights = ReadonlyMap<string, tf.Tensor>;

/** Training mode turns dropout on; its seeds come from the run's generator. */
export interface ForwardOptions {
  readonly training: boolean;
  readonly rng?: Rng;
  /** The step's seeds drawn on the device (webgpu: DropoutSeeds.forStep(rng, model.dropoutCalls())); rng draws one seed per call otherwise. */
  readonly seeds?: DropoutSeeds;
}

/** float32's lowest value, added to masked attention scores (as HF does). Finite, so a fully masked row stays NaN-free. */
export const MASK_VALUE = -3.4028234663852886e38;

export function weight(w: Weights, name: string): tf.Tensor {
  const t = w.get(name);
  if (!t) throw new Error(`Model weight "${name}" is missing; the checkpoint or init does not match this config.`);
  return t;
}

/** y = x · Wᵀ + b. x [..., in], W [out, in], b [out] -> [..., out] */
export function dense(w: Weights, prefix: string, x: tf.Tensor): tf.Tensor {
  const W = weight(w, `${prefix}.weight`) as tf.Tensor2D;
  const b = weight(w, `${prefix}.bias`) as tf.Tensor1D;
  return onRows(x, (rows) => [linear(rows, W, b), rows])[0]; // one fused matmul + bias on native and webgpu
}

/**
 * f on the rows of x, where f gives back its output and the input for the
 * residual connection around the sub-layer it starts to take in x's place
 * (fused.ts linearAndInput): x [..., in] as [N, in] -> [N, out] as
 * [..., out], and the input [N, in] as [..., in] (x itself where f gives
 * its rows back).
 */
function onRows(x: tf.Tensor, f: (rows: tf.Tensor2D) => [tf.Tensor2D, tf.Tensor2D]): [tf.Tensor, tf.Tensor] {
  const rows = x.reshape([-1, x.shape[x.shape.length - 1]]) as tf.Tensor2D;
  const [y, input] = f(rows);
  return [y.reshape([...x.shape.slice(0, -1), y.shape[1]]), input === rows ? x : input.reshape(x.shape)];
}

/**
 * LayerNorm over the last axis, of x + residual where one is given (the
 * sub-layers' "Add & Norm"); one fused kernel on the native backend.
 * x [..., H], residual [..., H] -> [..., H]
 */
export function layerNorm(w: Weights, prefix: string, x: tf.Tensor, eps: number, residual: tf.Tensor | null = null): tf.Tensor {
  return addLayerNorm(x, residual, weight(w, `${prefix}.weight`), weight(w, `${prefix}.bias`), eps);
}

/** Exact GELU: x · Φ(x) = 0.5 · x · (1 + erf(x / √2)); one fused kernel on the native backend. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return fusedGelu(x);
}

export function dropout(x: tf.Tensor, rate: number, opts: ForwardOptions): tf.Tensor {
  if (!opts.training || rate === 0) return x;
  if (opts.seeds) return opts.seeds.apply(x, rate);
  if (!opts.rng) throw new Error("Dropout in training mode needs the run's generator; pass { training: true, rng }.");
  return dropoutWithSeed(x, rate, opts.rng.seed());
}

/**
 * A dropout for the next op to apply as it reads or writes (webgpu draws
 * the mask inside its LayerNorm and softmax kernels), where the step's seeds
 * are drawn on the device; undefined where `dropout` applies it, or there
 * is none. Either way it is the forward's next dropout call.
 */
function fusedDropout(rate: number, opts: ForwardOptions): DropoutCall | undefined {
  return opts.training && rate > 0 && opts.seeds ? opts.seeds.next(rate) : undefined;
}

/**
 * A sub-layer's output (BertSelfOutput, BertOutput): LayerNorm(dropout(x) + residual).
 * x [..., H], residual [..., H] -> [..., H]
 */
function dropoutAddNorm(w: Weights, prefix: string, cfg: BertConfig, x: tf.Tensor, residual: tf.Tensor, opts: ForwardOptions): tf.Tensor {
  const call = fusedDropout(cfg.hiddenDropoutProb, opts);
  const dropped = call ? x : dropout(x, cfg.hiddenDropoutProb, opts);
  return addLayerNorm(dropped, residual, weight(w, `${prefix}.weight`), weight(w, `${prefix}.bias`), cfg.layerNormEps, call);
}

/**
 * Embedding lookup with PyTorch's padding_idx semantics: rows are gathered
 * as usual, but lookups of `paddingIdx` add nothing to that row's gradient.
 * (Other uses of the table, such as the tied MLM head, still do.)
 * table [V, H], ids [...] int32 -> [..., H]
 */
export function embeddingLookup(table: tf.Tensor, ids: tf.Tensor, paddingIdx: number): tf.Tensor {
  const idx = tf.cast(ids, "int32");
  // (the ids are saved, not an input: the table is the lookup's one differentiable input)
  const lookup = tf.customGrad((t, save) => {
    (save as tf.GradSaveFunc)([idx]);
    return {
      value: tf.gather(t as tf.Tensor, idx),
      gradFunc: (dy, saved) => {
        const [V, H] = table.shape;
        return embeddingGrad((dy as tf.Tensor).reshape([-1, H]) as tf.Tensor2D, (saved as tf.Tensor[])[0].reshape([-1]) as tf.Tensor1D, V, paddingIdx); // [V, H]
      },
    };
  });
  return lookup(table);
}

/**
 * Word + position + token-type embeddings, then LayerNorm and dropout.
 * inputIds [B, L] int32, tokenTypeIds [B, L] int32 or none (all zeros) -> [B, L, H]
 */
export function bertEmbeddings(
  w: Weights,
  cfg: BertConfig,
  inputIds: tf.Tensor2D,
  tokenTypeIds: tf.Tensor2D | null,
  opts: ForwardOptions,
  prefix = "bert.embeddings",
): tf.Tensor3D {
  const words = embeddingLookup(weight(w, `${prefix}.word_embeddings.weight`), inputIds, cfg.padTokenId); // [B, L, H]
  return embeddingsOfVectors(w, cfg, words as tf.Tensor3D, tokenTypeIds, opts, prefix);
}

/**
 * The embedding module given vectors in place of word ids (HF's
 * `inputs_embeds`): vectors + position + token-type embeddings, then
 * LayerNorm and dropout. vectors [B, L, H] -> [B, L, H]
 */
export function embeddingsOfVectors(
  w: Weights,
  cfg: BertConfig,
  vectors: tf.Tensor3D,
  tokenTypeIds: tf.Tensor2D | null,
  opts: ForwardOptions,
  prefix = "bert.embeddings",
): tf.Tensor3D {
  const L = vectors.shape[1];
  const posTable = weight(w, `${prefix}.position_embeddings.weight`);
  const typeTable = weight(w, `${prefix}.token_type_embeddings.weight`) as tf.Tensor2D;
  const call = fusedDropout(cfg.hiddenDropoutProb, opts);
  // webgpu, inputs with no token types: the sum, the LayerNorm and the dropout in one kernel, the tables read in place
  const fused = tokenTypeIds ? null : embeddingsLayerNorm(vectors, posTable as tf.Tensor2D, typeTable, weight(w, `${prefix}.LayerNorm.weight`), weight(w, `${prefix}.LayerNorm.bias`), cfg.layerNormEps, call);
  if (fused) return fused;
  // (the first L rows: each row's gradient is one row of dy summed over the batch, as a gather's was)
  const positions = tf.slice(posTable, [0, 0], [L, posTable.shape[1]!]); // [L, H]
  // Every position is type 0 without tokenTypeIds: its row, added at every position.
  const types = tokenTypeIds
    ? tf.gather(typeTable, tokenTypeIds) // [B, L, H]
    : repeatedRow(typeTable, 0, L); // [L, H] or [1, H]
  const sum = tf.add(tf.add(vectors, positions), types);
  if (call) return layerNormDropout(sum, weight(w, `${prefix}.LayerNorm.weight`), weight(w, `${prefix}.LayerNorm.bias`), cfg.layerNormEps, call) as tf.Tensor3D;
  const normed = layerNorm(w, `${prefix}.LayerNorm`, sum, cfg.layerNormEps);
  return dropout(normed, cfg.hiddenDropoutProb, opts) as tf.Tensor3D;
}

/**
 * Scaled dot-product attention per head, with dropout on the probabilities:
 * softmax(q kᵀ / √dh + mask) v. q [B, Lq, H], k and v [B, Lk, H], the heads
 * side by side, split into [B, nh, L, dh] and merged again -> [B, Lq, H]
 * (training on webgpu reads them in place instead: attendStacked)
 */
function attend(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, mask: tf.Tensor4D, nh: number, cfg: BertConfig, opts: ForwardOptions): tf.Tensor3D {
  const scores = attentionScores(q, k, nh); // [B, nh, Lq, Lk]
  const call = fusedDropout(cfg.attentionProbsDropoutProb, opts);
  const probs = scaledMaskedSoftmax(scores, mask, 1 / Math.sqrt(cfg.hiddenSize / nh), call); // softmax(scores / √dh + mask)
  const dropped = call ? probs : dropout(probs, cfg.attentionProbsDropoutProb, opts); // (dropped out in the softmax's pass where `call` is given)
  return attentionContext(dropped as tf.Tensor4D, v, nh); // [B, Lq, H]
}

/**
 * Padding mask [B, L] of 1 (keep) / 0 (pad) -> additive mask [B, 1, 1, L]
 * (0 where visible, MASK_VALUE where hidden), broadcast over heads and query rows.
 */
export function paddingMask(attentionMask: tf.Tensor2D): tf.Tensor4D {
  const [B, L] = attentionMask.shape;
  return tf.mul(tf.sub(1, tf.cast(attentionMask, "float32")), MASK_VALUE).reshape([B, 1, 1, L]) as tf.Tensor4D;
}

/**
 * The dense layers `names` under prefix as one matmul, their weights stacked:
 * x [B, L, H] -> [B, L, names.length · H], the layers' outputs side by side.
 */
function stackedDense(w: Weights, prefix: string, names: string[], x: tf.Tensor3D): tf.Tensor3D {
  return stackedDenseKeepingInput(w, prefix, names, x, false)[0];
}

/** stackedDense, and x for the residual connection around the attention: with `keep`, linearAndInput's (see onRows); else x. -> [B, L, n·H], [B, L, H] */
function stackedDenseKeepingInput(w: Weights, prefix: string, names: string[], x: tf.Tensor3D, keep = true): [tf.Tensor3D, tf.Tensor3D] {
  const [Ws, bs] = [names.map((n) => weight(w, `${prefix}.${n}.weight`)), names.map((n) => weight(w, `${prefix}.${n}.bias`))];
  const [W, b] = (names.length === 1 ? [Ws[0], bs[0]] : stackRows([Ws, bs])) as [tf.Tensor2D, tf.Tensor1D]; // [n·H, H], [n·H]
  return onRows(x, (rows) => (keep ? linearAndInput(rows, W, b) : [linear(rows, W, b), rows])) as [tf.Tensor3D, tf.Tensor3D];
}

/**
 * Training on webgpu: the projections stacked as in inference (one matmul
 * for Q, K and V, or K and V), and the attention read from them in place
 * (attentionTraining), its gradient written back side by side into the
 * stacked projections' gradient: no head split, and one matmul for the
 * gradient of the input. Null where it does not apply; the caller then
 * takes `attend`. With the context, the query for the residual connection
 * to take in its place (linearAndInput: the residual's gradient of the
 * query is added in its projection's gradient).
 * query [B, Lq, H], keyValue [B, Lk, H] -> [B, Lq, H], [B, Lq, H]
 */
function attendStacked(w: Weights, prefix: string, cfg: BertConfig, query: tf.Tensor3D, keyValue: tf.Tensor3D, mask: tf.Tensor4D, opts: ForwardOptions): { context: tf.Tensor3D; query: tf.Tensor3D } | null {
  const [nh, H] = [cfg.numAttentionHeads, cfg.hiddenSize];
  const rate = opts.training ? cfg.attentionProbsDropoutProb : 0;
  // (the dropout goes inside the softmax's kernel, from the step's seeds: decided before a call is drawn)
  if ((rate > 0 && !opts.seeds) || !attentionTrainingApplies(query.shape[0], nh, query.shape[1], keyValue.shape[1], H, mask)) return null;
  const scale = 1 / Math.sqrt(H / nh);
  const call = fusedDropout(rate, opts);
  if (query === keyValue) {
    const [qkv, input] = stackedDenseKeepingInput(w, prefix, ["query", "key", "value"], query); // [B, L, 3H], [B, L, H]
    return { context: attentionTraining(qkv, qkv, mask, nh, scale, [0, H, 2 * H], call), query: input };
  }
  const [q, input] = stackedDenseKeepingInput(w, prefix, ["query"], query); // [B, Lq, H], [B, Lq, H]
  const kv = stackedDense(w, prefix, ["key", "value"], keyValue); // [B, Lk, 2H]
  return { context: attentionTraining(q, kv, mask, nh, scale, [0, 0, H], call), query: input };
}

/**
 * Inference on native and webgpu: the same attention with Q, K and V from one matmul
 * ([B, L, 3H]; K and V alone, [B, Lk, 2H], when the query differs, as in the
 * last layer at [CLS]), read in place by one fused kernel: no head split,
 * no probabilities kept, no dropout to apply. Null when the kernel declines
 * the shapes. query [B, Lq, H], keyValue [B, Lk, H] -> [B, Lq, H]
 */
function attendInPlace(w: Weights, prefix: string, cfg: BertConfig, query: tf.Tensor3D, keyValue: tf.Tensor3D, mask: tf.Tensor4D): tf.Tensor3D | null {
  const [nh, H] = [cfg.numAttentionHeads, cfg.hiddenSize];
  const scale = 1 / Math.sqrt(H / nh);
  if (query === keyValue) {
    const qkv = stackedDense(w, prefix, ["query", "key", "value"], query); // [B, L, 3H]
    return attentionInference(qkv, qkv, qkv, mask, nh, scale, { hidden: H, columns: [0, H, 2 * H] });
  }
  const q = dense(w, `${prefix}.query`, query) as tf.Tensor3D; // [B, Lq, H]
  const kv = stackedDense(w, prefix, ["key", "value"], keyValue); // [B, Lk, 2H]
  return attentionInference(q, kv, kv, mask, nh, scale, { hidden: H, columns: [0, 0, H] });
}

/**
 * Multi-head attention with separate query and key/value inputs, then the
 * output projection, dropout and LayerNorm of (output + query). With
 * query === keyValue this is BERT's self-attention; the RetroMAE decoder
 * passes different tensors.
 *
 * query [B, Lq, H], keyValue [B, Lk, H], mask additive, broadcastable to [B, nh, Lq, Lk]
 * -> [B, Lq, H]
 */
export function attention(
  w: Weights,
  prefix: string,
  cfg: BertConfig,
  query: tf.Tensor3D,
  keyValue: tf.Tensor3D,
  mask: tf.Tensor4D,
  opts: ForwardOptions,
): tf.Tensor3D {
  const nh = cfg.numAttentionHeads;
  const stacked = opts.training ? attendStacked(w, `${prefix}.self`, cfg, query, keyValue, mask, opts) : null;
  const merged =
    (!opts.training && attentionInPlace() && attendInPlace(w, `${prefix}.self`, cfg, query, keyValue, mask)) ||
    stacked?.context ||
    attend(
      dense(w, `${prefix}.self.query`, query) as tf.Tensor3D, // [B, Lq, H]
      dense(w, `${prefix}.self.key`, keyValue) as tf.Tensor3D, // [B, Lk, H]
      dense(w, `${prefix}.self.value`, keyValue) as tf.Tensor3D, // [B, Lk, H]
      mask,
      nh,
      cfg,
      opts,
    ); // [B, Lq, H]
  const out = dense(w, `${prefix}.output.dense`, merged); // [B, Lq, H]
  return dropoutAddNorm(w, `${prefix}.output.LayerNorm`, cfg, out, stacked?.query ?? query, opts) as tf.Tensor3D;
}

/**
 * One transformer layer: attention, then the feed-forward block
 * (dense -> GELU -> dense -> dropout -> LayerNorm with residual).
 * query [B, Lq, H], keyValue [B, Lk, H] -> [B, Lq, H]
 */
export function bertLayer(
  w: Weights,
  prefix: string,
  cfg: BertConfig,
  query: tf.Tensor3D,
  keyValue: tf.Tensor3D,
  mask: tf.Tensor4D,
  opts: ForwardOptions,
): tf.Tensor3D {
  const attended = attention(w, `${prefix}.attention`, cfg, query, keyValue, mask, opts); // [B, Lq, H]
  // dense -> GELU -> dense, and `attended` again for the residual (fused.ts feedForward: on webgpu in training, the
  // residual's gradient is added in the first dense layer's, and GELU's in the second's)
  const [W1, b1, W2, b2] = ["intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight", "output.dense.bias"].map((n) => weight(w, `${prefix}.${n}`));
  const [out, residual] = onRows(attended, (rows) => feedForward(rows, W1 as tf.Tensor2D, b1 as tf.Tensor1D, W2 as tf.Tensor2D, b2 as tf.Tensor1D)); // [B, Lq, H], [B, Lq, H]
  return dropoutAddNorm(w, `${prefix}.output.LayerNorm`, cfg, out, residual, opts) as tf.Tensor3D;
}

/**
 * The encoder stack. hidden [B, L, H], mask [B, 1, 1, L] -> [B, L, H].
 *
 * With clsOnly, for callers that keep only the [CLS] vector: the last layer
 * runs its query, attention output and feed-forward block for position 0
 * alone (keys and values still come from every position), so the [CLS] row
 * is what the full stack gives, for most of one layer's work less. -> [B, 1, H]
 */
export function bertEncoder(
  w: Weights,
  cfg: BertConfig,
  hidden: tf.Tensor3D,
  mask: tf.Tensor4D,
  opts: ForwardOptions,
  clsOnly = false,
): tf.Tensor3D {
  let h = hidden;
  const last = cfg.numHiddenLayers - 1;
  for (let i = 0; i <= last; i++) {
    // Each layer in its own tidy: its temporaries go as soon as it is done (what
    // backprop needs is kept by tfjs's tape), so long encodes fit in wasm memory.
    const input = h;
    h = tf.tidy(() => {
      const query = clsOnly && i === last ? (tf.slice(input, [0, 0, 0], [-1, 1, -1]) as tf.Tensor3D) : input; // [B, 1 or L, H]
      return bertLayer(w, `bert.encoder.layer.${i}`, cfg, query, input, mask, opts);
    });
  }
  return h;
}

/**
 * MLM head: dense -> GELU -> LayerNorm, then the decoder tied to the word
 * embeddings, plus a bias. hidden [N, H] -> logits [N, V]
 */
export function mlmLogits(w: Weights, cfg: BertConfig, hidden: tf.Tensor2D): tf.Tensor2D {
  const t = mlmTransform(w, cfg, hidden); // [N, H]
  const wordEmbeddings = weight(w, "bert.embeddings.word_embeddings.weight") as tf.Tensor2D; // [V, H]
  return tf.add(tf.matMul(t, wordEmbeddings, false, true), weight(w, "cls.predictions.bias")) as tf.Tensor2D; // [N, V]
}

/**
 * Mean softmax cross-entropy, fused as PyTorch's CrossEntropyLoss is.
 * logits [N, V], labels [N] int32 -> scalar.
 *
 * Forward: mean(logsumexp(logits) - logits[label]). Backward:
 * (softmax(logits) - onehot(label)) / N, one [N, V] tensor. Left to autodiff,
 * the label pick (a gather on the flattened logits) would scatter its
 * gradient into a second N·V buffer (2,000 × 30,522 floats for a decoder
 * batch), and logSumExp would keep its intermediates.
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const N = logits.shape[0];
  const ce = tf.customGrad((x, y, save) => {
    const z = x as tf.Tensor2D;
    // tidy: the [N, V] temporaries of logsumexp die here, not at the end of backward
    const value = tf.tidy(() => {
      const lse = logSumExpRows(z); // [N]
      const picked = pickLabels(z, y as tf.Tensor1D); // [N], not taped: the gradient is ours
      return tf.mean(tf.sub(lse, picked)) as tf.Scalar;
    });
    (save as tf.GradSaveFunc)([z, y as tf.Tensor]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [zs, ys] = saved as [tf.Tensor2D, tf.Tensor1D];
        const dz = tf.mul(softmaxMinusOneHot(zs, ys), tf.div(dy, N)); // [N, V]
        return [dz, tf.zerosLike(ys)];
      },
    };
  });
  return ce(logits, tf.cast(labels, "int32")) as tf.Scalar;
}

/**
 * The MLM decoder (tied to the word embeddings) fused with mean softmax
 * cross-entropy, so the [N, V] logits exist once and their gradient
 * temporaries are freed as soon as they are used. This is what keeps a
 * decoder batch (about 2,000 rows × 30,522) inside wasm's memory.
 *
 * t [N, H] (after the transform), wordEmbeddings [V, H], bias [V], labels [N]
 * -> loss (scalar) and accuracy (scalar, no gradient; the caller disposes it).
 *
 * Backward: dz = (softmax(z) - onehot(y)) / N; dt = dz·E; dE = (tᵀ·dz)ᵀ;
 * db = Σ_rows dz. The 1/N scale is applied to the small results.
 *
 * With `weights` [N] (1 for a labelled row, 0 for padding: static shapes),
 * the mean is over the weighted rows, w·(lse − z_y) / max(Σw, 1), and so is
 * the accuracy; dz's rows are weighted in the pass that makes them,
 * dz = w ⊙ (softmax(z) − onehot(y)), so padded rows get no gradient and
 * the same three products follow.
 *
 * With `maxRows` below N (a GPU whose largest buffer holds fewer than N
 * rows of logits), the rows go in parts of at most that many, each with
 * logits [n, V] of its own: the loss, the accuracy and dt are the same
 * rows' values, and dE and db add the parts' products in order.
 */
export function tiedSoftmaxCrossEntropy(
  t: tf.Tensor2D,
  wordEmbeddings: tf.Tensor2D,
  bias: tf.Tensor1D,
  labels: tf.Tensor1D,
  weights?: tf.Tensor1D,
  maxRows = Infinity,
): { loss: tf.Scalar; accuracy: tf.Scalar } {
  const [N, H] = t.shape;
  // balanced parts: [first row, rows] each
  const partCount = Math.max(1, Math.ceil(N / Math.max(1, Math.floor(maxRows))));
  const per = Math.ceil(N / partCount);
  const parts = Array.from({ length: partCount }, (_, i) => [i * per, Math.min(per, N - i * per)] as const).filter(([, n]) => n > 0);
  const whole = parts.length <= 1;
  /** rows [first, first + n) of x ([N] or [N, H]), or x itself when there is one part */
  const rowsOf = <T extends tf.Tensor>(x: T, [first, n]: readonly [number, number]): T =>
    whole ? x : (tf.slice(x, x.rank === 1 ? [first] : [first, 0], x.rank === 1 ? [n] : [n, H]) as T);
  let accuracy: tf.Scalar | null = null;
  const op = tf.customGrad((tIn, eIn, bIn, yIn, save) => {
    const x = tIn as tf.Tensor2D;
    const E = eIn as tf.Tensor2D;
    const y = yIn as tf.Tensor1D;
    const logits = parts.map((part) => tf.tidy(() => tiedLogits(rowsOf(x, part), E, bIn as tf.Tensor1D))); // [n, V] each
    const { loss: value, accuracy: acc, rowCount } = tf.tidy(() => {
      const perPart = logits.map((z, i) => {
        const [lse, predicted] = logSumExpArgMax(z); // [n], [n]: one read of the logits
        return { lse, predicted, picked: pickLabels(z, rowsOf(y, parts[i])) }; // [n] each
      });
      const all = (k: "lse" | "predicted" | "picked") => (whole ? perPart[0][k] : tf.concat(perPart.map((p) => p[k]))) as tf.Tensor1D; // [N]
      const { loss, accuracy, rowCount } = meanNllAndAccuracy(all("lse"), all("picked"), all("predicted"), y, weights);
      return { loss, accuracy, ...(rowCount ? { rowCount } : {}) } as { loss: tf.Scalar; accuracy: tf.Scalar; rowCount?: tf.Scalar };
    });
    accuracy = tf.keep(acc);
    (save as tf.GradSaveFunc)([x, E, y, ...(weights ? [weights, rowCount!] : []), ...logits]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [xs, es, ys] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const [ws, n] = (weights ? saved.slice(3, 5) : []) as [tf.Tensor1D?, tf.Scalar?];
        const zs = saved.slice(weights ? 5 : 3) as tf.Tensor2D[];
        const scale = tf.div(dy as tf.Tensor, n ?? N);
        const dxs: tf.Tensor[] = [];
        let dE: tf.Tensor | null = null;
        let colSum: tf.Tensor | null = null;
        // the parts' products added in order (the same bits run after run), each part's [n, V] freed as soon as it is used
        const addTo = (acc: tf.Tensor | null, x: tf.Tensor) => {
          if (!acc) return x;
          const sum = tf.add(acc, x);
          tf.dispose([acc, x]);
          return sum;
        };
        parts.forEach((part, i) => {
          const [dz, col] = softmaxMinusOneHotColSum(zs[i], rowsOf(ys, part), ws && rowsOf(ws, part)); // [n, V], [V]: Σ_rows dz from the same pass; zero rows at padding
          dxs.push(tf.mul(tf.matMul(dz, es), scale)); // [n, H]
          dE = addTo(dE, tf.matMul(dz, rowsOf(xs, part), true, false)); // [V, H] = dzᵀ·x
          colSum = addTo(colSum, col);
          tf.dispose(dz);
        });
        const dx = whole ? dxs[0] : tf.concat(dxs); // [N, H]
        const grads = [dx, tf.mul(dE!, scale), tf.mul(colSum!, scale), tf.zerosLike(ys)]; // dt, dE [V, H], db [V]
        tf.dispose([dE!, colSum!, ...(whole ? [] : dxs)]);
        return grads;
      },
    };
  });
  const loss = op(t, wordEmbeddings, bias, tf.cast(labels, "int32")) as tf.Scalar;
  // tf.keep (to leave the op's own tidy) escapes the caller's tidy too: a clone (the same data, no
  // kernel) puts the accuracy back in the caller's scope, so tf.tidy(() => model.losses(b).loss) frees it
  const kept = accuracy! as tf.Scalar;
  const acc = kept.clone();
  kept.dispose();
  return { loss, accuracy: acc };
}

/** MLM transform: dense -> GELU -> LayerNorm (on webgpu GELU inside the LayerNorm's kernel, each way: fused.ts geluLayerNorm). hidden [N, H] -> [N, H] */
export function mlmTransform(w: Weights, cfg: BertConfig, hidden: tf.Tensor2D): tf.Tensor2D {
  const pre = dense(w, "cls.predictions.transform.dense", hidden); // [N, H]
  return geluLayerNorm(pre, weight(w, "cls.predictions.transform.LayerNorm.weight"), weight(w, "cls.predictions.transform.LayerNorm.bias"), cfg.layerNormEps) as tf.Tensor2D;
}

/** Names and shapes of every encoder weight (bert.* and cls.predictions.*), HF layout. */
export function encoderWeightShapes(cfg: BertConfig): Map<string, number[]> {
  const H = cfg.hiddenSize;
  const shapes = new Map<string, number[]>();
  shapes.set("bert.embeddings.word_embeddings.weight", [cfg.vocabSize, H]);
  shapes.set("bert.embeddings.position_embeddings.weight", [cfg.maxPositionEmbeddings, H]);
  shapes.set("bert.embeddings.token_type_embeddings.weight", [cfg.typeVocabSize, H]);
  shapes.set("bert.embeddings.LayerNorm.weight", [H]);
  shapes.set("bert.embeddings.LayerNorm.bias", [H]);
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    for (const [name, shape] of layerWeightShapes(cfg)) shapes.set(`bert.encoder.layer.${i}.${name}`, shape);
  }
  shapes.set("cls.predictions.transform.dense.weight", [H, H]);
  shapes.set("cls.predictions.transform.dense.bias", [H]);
  shapes.set("cls.predictions.transform.LayerNorm.weight", [H]);
  shapes.set("cls.predictions.transform.LayerNorm.bias", [H]);
  shapes.set("cls.predictions.bias", [cfg.vocabSize]);
  return shapes;
}

/** Names (relative to the layer) and shapes of one transformer layer's weights. */
export function layerWeightShapes(cfg: BertConfig): Map<string, number[]> {
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  return new Map<string, number[]>([
    ["attention.self.query.weight", [H, H]],
    ["attention.self.query.bias", [H]],
    ["attention.self.key.weight", [H, H]],
    ["attention.self.key.bias", [H]],
    ["attention.self.value.weight", [H, H]],
    ["attention.self.value.bias", [H]],
    ["attention.output.dense.weight", [H, H]],
    ["attention.output.dense.bias", [H]],
    ["attention.output.LayerNorm.weight", [H]],
    ["attention.output.LayerNorm.bias", [H]],
    ["intermediate.dense.weight", [I, H]],
    ["intermediate.dense.bias", [I]],
    ["output.dense.weight", [H, I]],
    ["output.dense.bias", [H]],
    ["output.LayerNorm.weight", [H]],
    ["output.LayerNorm.bias", [H]],
  ]);
}

/**
 * Initial values, as HF's `_init_weights`: normal(0, initializerRange) for
 * linear and embedding weights, zero biases, LayerNorm weight 1, and the
 * [PAD] row of the word embeddings zeroed. Drawn in JS from `rng`, so the
 * same seed gives the same weights on every backend.
 */
export function initialValues(shapes: ReadonlyMap<string, number[]>, cfg: BertConfig, rng: Rng): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const size = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(size);
    if (name.endsWith("LayerNorm.weight")) v.fill(1);
    else if (name.endsWith(".weight")) rng.fillNormal(v, 0, cfg.initializerRange);
    if (name.endsWith("word_embeddings.weight")) v.fill(0, cfg.padTokenId * shape[1], (cfg.padTokenId + 1) * shape[1]);
    values.set(name, v);
  }
  return values;
}
