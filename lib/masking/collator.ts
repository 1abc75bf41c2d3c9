/**
 * The RetroMAE collator, following the official `RetroMAECollator`
 * (staoxiao/RetroMAE src/pretrain/data.py):
 *
 * Encoder: whole-word masking at `encoderMaskRatio` (default 0.3), special
 * tokens never masked, then 80% [MASK] / 10% random id in [0, V) / 10% kept.
 *
 * Decoder: a pool of min(len, 256) whole-word masks at `decoderMaskRatio`
 * (default 0.5). Row i of the attention mask takes a random mask from the
 * pool and also hides position i itself. [CLS] and [SEP] are never hidden,
 * padding is never visible. Labels: every original token except [CLS], the
 * last [SEP] and padding.
 *
 * Both ratios are plain fields, so a notebook cell can change them between
 * batches. Every draw comes from the run's generator.
 */
import type { Rng } from "../engine/rng";
import type { BertTokenizer } from "../text/tokenizer";
import { MaskPreview } from "./preview";
import { IGNORE, MaskKind, RetroMAEBatch } from "./batch";
import { maskCount, WholeWords } from "./whole-word";

export interface CollatorOptions {
  tokenizer: BertTokenizer;
  rng: Rng;
  /** Longest sequence, special tokens included. Default 512. */
  maxLength?: number;
  encoderMaskRatio?: number;
  decoderMaskRatio?: number;
  /** Size of the vocabulary random replacements are drawn from. Default: the tokenizer's. */
  vocabSize?: number;
  /**
   * Every batch the same shapes: padded to maxLength, and `labelSlots` set to
   * the most positions this collator can label (see RetroMAEBatch). What a
   * recorded training step needs; off by default.
   */
  staticShapes?: boolean;
}

/** A text, or token ids without special tokens (as the official pre-tokenized datasets hold). */
export type Example = string | readonly number[] | Int32Array;

/**
 * Every random draw one collate made, per example, for replaying it through
 * the official collator's logic (test/fixtures/official): the shuffled word
 * orders of each whole-word mask (encoder first, then the decoder pool), the
 * encoder's 80/10/10 choice and random id per position, and the pool index
 * each decoder row took.
 */
export interface CollateTrace {
  examples: {
    ids: number[];
    encoderWords: number[][];
    /** Per position: 1 [MASK], 2 random id, 3 kept, 0 not masked. */
    encoderKinds: number[];
    /** Per position: the random id drawn, or -1. */
    randomIds: number[];
    poolWords: number[][][];
    rowChoices: number[];
  }[];
}

function checkRatio(name: string, r: number): void {
  if (typeof r !== "number" || !(r > 0 && r <= 1)) {
    throw new Error(`${name} must be a number in (0, 1], got ${String(r)}; the paper uses 0.15–0.3 for the encoder and 0.5–0.7 for the decoder.`);
  }
}

export class RetroMAECollator {
  readonly tokenizer: BertTokenizer;
  readonly maxLength: number;
  readonly vocabSize: number;
  rng: Rng;
  /** See CollatorOptions.staticShapes. */
  staticShapes: boolean;
  private encRatio = 0.3;
  private decRatio = 0.5;

  constructor(options: CollatorOptions) {
    this.tokenizer = options.tokenizer;
    this.rng = options.rng;
    this.maxLength = options.maxLength ?? 512;
    if (!Number.isInteger(this.maxLength) || this.maxLength < 3) {
      throw new Error(`maxLength must be a whole number of at least 3, got ${this.maxLength}.`);
    }
    this.vocabSize = options.vocabSize ?? this.tokenizer.vocab.size;
    this.staticShapes = options.staticShapes ?? false;
    this.encoderMaskRatio = options.encoderMaskRatio ?? 0.3;
    this.decoderMaskRatio = options.decoderMaskRatio ?? 0.5;
  }

  get encoderMaskRatio(): number {
    return this.encRatio;
  }
  set encoderMaskRatio(r: number) {
    checkRatio("encoderMaskRatio", r);
    this.encRatio = r;
  }
  get decoderMaskRatio(): number {
    return this.decRatio;
  }
  set decoderMaskRatio(r: number) {
    checkRatio("decoderMaskRatio", r);
    this.decRatio = r;
  }

  /** [CLS] ids[:maxLength-2] [SEP] for one example. */
  sequence(example: Example): number[] {
    const ids = typeof example === "string" ? this.tokenizer.textToIds(example) : Array.from(example);
    if (typeof example !== "string") {
      if (!Array.isArray(example) && !ArrayBuffer.isView(example)) {
        throw new Error(`A batch example must be a string or an array of token ids, got ${typeof example}.`);
      }
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
          throw new Error(`Token id ${id} is outside the vocabulary [0, ${this.vocabSize}); pass ids from the same tokenizer.`);
        }
      }
    }
    return this.tokenizer.encodeIds(ids, { maxLength: this.maxLength }).inputIds;
  }

  /**
   * Mask one text (or ids) the way a batch would, and return a preview: the
   * encoder input with masked / random / kept tokens highlighted, and the
   * decoder attention mask as a heatmap. It draws from the run's generator.
   */
  preview(example: Example): MaskPreview {
    const batch = this.collate([example]);
    return new MaskPreview(batch, (id) => this.tokenizer.vocab.token(id), { encoder: this.encRatio, decoder: this.decRatio });
  }

  /** Mask and pad a batch. `trace`, when given, receives every draw (see CollateTrace). */
  collate(examples: readonly Example[], trace?: CollateTrace): RetroMAEBatch {
    if (examples.length === 0) throw new Error("A batch needs at least one example; the list is empty.");
    const seqs = examples.map((e) => this.sequence(e));
    const B = seqs.length;
    const L = this.staticShapes ? this.maxLength : seqs.reduce((m, s) => Math.max(m, s.length), 0);
    const tok = this.tokenizer;
    const pad = tok.padTokenId;
    const encoderInputIds = new Int32Array(B * L).fill(pad);
    const decoderInputIds = new Int32Array(B * L).fill(pad);
    const attentionMask = new Int32Array(B * L);
    const encoderLabels = new Int32Array(B * L).fill(IGNORE);
    const decoderLabels = new Int32Array(B * L).fill(IGNORE);
    const encoderMaskKinds = new Uint8Array(B * L);
    const decoderAttentionMask = new Uint8Array(B * L * L);
    const lengths = new Int32Array(B);

    seqs.forEach((ids, b) => {
      const n = ids.length;
      const row = b * L;
      lengths[b] = n;
      const words = new WholeWords(ids.map((id) => tok.vocab.token(id)));
      decoderInputIds.set(ids, row);
      attentionMask.fill(1, row, row + n);
      for (let i = 1; i < n - 1; i++) decoderLabels[row + i] = ids[i];

      const orders: number[][][] | undefined = trace ? [] : undefined;
      const randomIds = trace ? new Array<number>(n).fill(-1) : null;
      // Encoder: whole words at the encoder ratio, never a special token.
      const encMask = words.mask(this.encRatio, this.rng, new Uint8Array(n), 1, 512, orders);
      for (let i = 0; i < n; i++) {
        const id = ids[i];
        encoderInputIds[row + i] = id;
        if (!encMask[i] || tok.specialIds.has(id)) continue;
        encoderLabels[row + i] = id;
        if (this.rng.float() < 0.8) {
          encoderInputIds[row + i] = tok.maskTokenId;
          encoderMaskKinds[row + i] = MaskKind.Masked;
        } else if (this.rng.float() < 0.5) {
          encoderInputIds[row + i] = this.rng.int(this.vocabSize);
          encoderMaskKinds[row + i] = MaskKind.Random;
          if (randomIds) randomIds[i] = encoderInputIds[row + i];
        } else {
          encoderMaskKinds[row + i] = MaskKind.Kept;
        }
      }

      // Decoder: a pool of whole-word masks; row i takes one and hides itself.
      // The pool holds what each mask leaves visible (1), the row's n positions as they are copied.
      const poolSize = Math.min(n, 256);
      const visible = new Uint8Array(poolSize * n).fill(1);
      for (let p = 0; p < poolSize; p++) words.mask(this.decRatio, this.rng, visible.subarray(p * n, (p + 1) * n), 0, 512, orders);
      const rowChoices: number[] = [];
      for (let i = 0; i < n; i++) {
        const choice = this.rng.int(poolSize);
        rowChoices.push(choice);
        const base = (b * L + i) * L;
        decoderAttentionMask.set(visible.subarray(choice * n, (choice + 1) * n), base);
        decoderAttentionMask[base + i] = 0;
      }
      if (trace && orders && randomIds) {
        trace.examples.push({ ids: ids.slice(), encoderWords: orders[0], encoderKinds: Array.from(encoderMaskKinds.subarray(row, row + n)), randomIds, poolWords: orders.slice(1), rowChoices });
      }
    });

    return {
      batchSize: B,
      seqLength: L,
      encoderInputIds,
      attentionMask,
      encoderLabels,
      decoderInputIds,
      decoderAttentionMask,
      decoderLabels,
      encoderMaskKinds,
      lengths,
      // a row of n tokens has at most maskCount(n) encoder labels and n − 2 decoder labels
      ...(this.staticShapes ? { labelSlots: { encoder: B * maskCount(L, this.encRatio), decoder: B * (L - 2) } } : {}),
    };
  }
}
