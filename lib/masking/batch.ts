/**
 * What a RetroMAE batch is: the padded arrays the collator makes and the
 * model reads. Its own module, so that masking and model share it without
 * importing each other.
 */

/** Label value for positions that carry no loss (PyTorch's ignore_index). */
export const IGNORE = -100;

/** What the encoder masking did at a position; for previews. */
export enum MaskKind {
  None = 0,
  Masked = 1,
  Random = 2,
  Kept = 3,
}

/** One padded RetroMAE batch. Row-major; B = batchSize, L = seqLength. */
export interface RetroMAEBatch {
  readonly batchSize: number;
  readonly seqLength: number;
  /** [B, L] encoder input, after masking. */
  readonly encoderInputIds: Int32Array;
  /** [B, L] 1 for tokens, 0 for padding. */
  readonly attentionMask: Int32Array;
  /** [B, L] original id at masked positions, IGNORE elsewhere. */
  readonly encoderLabels: Int32Array;
  /** [B, L] the original (unmasked) ids, which the decoder embeds. */
  readonly decoderInputIds: Int32Array;
  /** [B, L, L] 1 where query row i may attend to key j. */
  readonly decoderAttentionMask: Uint8Array;
  /** [B, L] original ids, IGNORE at [CLS], the last [SEP] and padding. */
  readonly decoderLabels: Int32Array;
  /** [B, L] MaskKind per position (encoder side). */
  readonly encoderMaskKinds: Uint8Array;
  /** Unpadded length of each row. */
  readonly lengths: Int32Array;
  /**
   * With the collator's staticShapes: how many labelled positions the model
   * computes logits at, on each side (the most this collator can label in a
   * batch of this size). The model pads the labelled positions to these
   * counts with rows of weight zero, so every batch has the same shapes.
   */
  readonly labelSlots?: { readonly encoder: number; readonly decoder: number };
}
