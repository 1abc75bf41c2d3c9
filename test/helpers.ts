/** Shared test fixtures: a small BERT and its loss, built the same way on any backend. */
import * as tf from "../lib/engine/tf";
import * as path from "path";
import { Rng } from "../lib/engine/rng";
import { variablesFrom } from "../lib/model/retromae";
import { bertConfig, BertConfig } from "../lib/model/config";
import {
  bertEmbeddings,
  bertEncoder,
  crossEntropy,
  encoderWeightShapes,
  initialValues,
  mlmLogits,
  paddingMask,
  ForwardOptions,
} from "../lib/model/bert";

export const SHARED = path.resolve(__dirname, "..", "..", "shared");
export const SHARED_DATA = process.env.RETROMAE_SHARED_DATA ?? path.join(SHARED, "data");

export function smallConfig(): BertConfig {
  return bertConfig("tiny", {
    vocabSize: 97,
    hiddenSize: 32,
    numAttentionHeads: 4,
    intermediateSize: 64,
    numHiddenLayers: 2,
    maxPositionEmbeddings: 16,
  });
}

/** Fixed batch: ids, padding mask, masked positions and their labels. */
export function smallBatch(cfg: BertConfig, seed = 7) {
  const rng = new Rng(seed);
  const B = 3;
  const L = 12;
  const lengths = [12, 9, 5];
  const ids = new Int32Array(B * L);
  const attn = new Int32Array(B * L);
  const positions: number[] = [];
  const labels: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < lengths[b]; i++) {
      ids[b * L + i] = 1 + rng.int(cfg.vocabSize - 1);
      attn[b * L + i] = 1;
      if (i > 0 && i % 3 === 1) {
        positions.push(b * L + i);
        labels.push(rng.int(cfg.vocabSize));
      }
    }
  }
  return { B, L, ids, attn, positions: Int32Array.from(positions), labels: Int32Array.from(labels) };
}

/** Variables on the active backend from JS values (same numbers on every backend). */
export function makeVariables(values: Map<string, Float32Array>, shapes: Map<string, number[]>): Map<string, tf.Variable> {
  return variablesFrom(values, shapes);
}

export function smallModel(cfg: BertConfig, seed = 3) {
  const shapes = encoderWeightShapes(cfg);
  return { shapes, values: initialValues(shapes, cfg, new Rng(seed)) };
}

/** MLM loss of the small BERT at its masked positions. */
export function mlmLoss(
  w: Map<string, tf.Tensor>,
  cfg: BertConfig,
  batch: ReturnType<typeof smallBatch>,
  opts: ForwardOptions = { training: false },
): tf.Scalar {
  const ids = tf.tensor2d(batch.ids, [batch.B, batch.L], "int32");
  const attn = tf.tensor2d(batch.attn, [batch.B, batch.L], "int32");
  const hidden = bertEncoder(w, cfg, bertEmbeddings(w, cfg, ids, null, opts), paddingMask(attn), opts); // [B, L, H]
  const flat = hidden.reshape([batch.B * batch.L, cfg.hiddenSize]);
  const picked = tf.gather(flat, tf.tensor1d(batch.positions, "int32")) as tf.Tensor2D; // [M, H]
  return crossEntropy(mlmLogits(w, cfg, picked), tf.tensor1d(batch.labels, "int32"));
}
