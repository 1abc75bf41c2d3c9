/**
 * Whole-word masking as Hugging Face's DataCollatorForWholeWordMask
 * `_whole_word_mask`, which the official RetroMAE collator calls for both the
 * encoder mask and every decoder attention mask.
 */
import type { Rng } from "../engine/rng";

/** Python's round(): halves go to the even neighbour (round(2.5) == 2). */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** How many tokens a ratio masks: max(1, round(len × ratio)), capped at maxPredictions. */
export function maskCount(length: number, ratio: number, maxPredictions = 512): number {
  return Math.min(maxPredictions, Math.max(1, pyRound(length * ratio)));
}

/**
 * The whole words of one sequence of WordPieces, found once: `tokens` are
 * one sequence with its [CLS] and [SEP]; a "##" piece joins the word before
 * it; [CLS] and [SEP] are never candidates. `mask` then picks words to mask
 * as often as a caller needs (the collator's decoder pool takes up to 256
 * masks of one sequence), each draw the same as `wholeWordMask`'s.
 */
export class WholeWords {
  /** Word w's positions are positions[starts[w] .. starts[w + 1]). */
  private readonly positions: Int32Array;
  private readonly starts: Int32Array;
  /** The words in the order of the last shuffle. */
  private readonly order: Int32Array;
  readonly count: number;
  /** The sequence's length, special tokens included (the budget's base). */
  readonly length: number;

  constructor(tokens: readonly string[]) {
    const positions = new Int32Array(tokens.length);
    const starts = new Int32Array(tokens.length + 1);
    let words = 0;
    let k = 0;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === "[CLS]" || t === "[SEP]") continue;
      // only the last word ever grows, so its positions stay together in `positions`
      if (!(words > 0 && t.startsWith("##"))) starts[words++] = k;
      positions[k++] = i;
    }
    starts[words] = k;
    this.positions = positions.subarray(0, k);
    this.starts = starts.subarray(0, words + 1);
    this.order = new Int32Array(words);
    this.count = words;
    this.length = tokens.length;
  }

  /**
   * Shuffle the words with `rng` (Rng.shuffle), then take
   * them while they fit in max(1, round(len × ratio)) positions, skipping any
   * that would exceed it. Writes `value` at each masked position of `out`
   * (the rest are left as they are) and returns `out`. `order`, when given,
   * receives the shuffled words.
   */
  mask(ratio: number, rng: Rng, out: Uint8Array, value = 1, maxPredictions = 512, order?: number[][][]): Uint8Array {
    const { positions, starts } = this;
    const words = this.order;
    for (let w = 0; w < words.length; w++) words[w] = w;
    rng.shuffle(words);
    order?.push(Array.from(words, (w) => Array.from(positions.subarray(starts[w], starts[w + 1]))));
    const budget = maskCount(this.length, ratio, maxPredictions);
    let taken = 0;
    for (let k = 0; k < words.length && taken < budget; k++) {
      const w = words[k];
      const size = starts[w + 1] - starts[w];
      if (taken + size > budget) continue;
      for (let p = starts[w]; p < starts[w + 1]; p++) out[positions[p]] = value;
      taken += size;
    }
    return out;
  }
}

/**
 * Pick whole words to mask. `tokens` are WordPiece strings of one sequence
 * with its [CLS] and [SEP]; a "##" piece joins the word before it. [CLS] and
 * [SEP] are never candidates. Candidates are shuffled with `rng`; words are
 * taken while they fit in the budget, skipping any that would exceed it.
 * Returns 1 where masked, 0 elsewhere, length = tokens.length. `order`, when
 * given, receives the shuffled words (for checks against the official code).
 * For many masks of one sequence, WholeWords finds its words once.
 */
export function wholeWordMask(tokens: readonly string[], ratio: number, rng: Rng, maxPredictions = 512, order?: number[][][]): Uint8Array {
  return new WholeWords(tokens).mask(ratio, rng, new Uint8Array(tokens.length), 1, maxPredictions, order);
}
