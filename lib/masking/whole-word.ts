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
 * Pick whole words to mask. `tokens` are WordPiece strings of one sequence
 * with its [CLS] and [SEP]; a "##" piece joins the word before it. [CLS] and
 * [SEP] are never candidates. Candidates are shuffled with `rng`; words are
 * taken while they fit in the budget, skipping any that would exceed it.
 * Returns 1 where masked, 0 elsewhere, length = tokens.length. `order`, when
 * given, receives the shuffled words (for checks against the official code).
 */
export function wholeWordMask(tokens: readonly string[], ratio: number, rng: Rng, maxPredictions = 512, order?: number[][][]): Uint8Array {
  const words: number[][] = [];
  tokens.forEach((t, i) => {
    if (t === "[CLS]" || t === "[SEP]") return;
    if (words.length > 0 && t.startsWith("##")) words[words.length - 1].push(i);
    else words.push([i]);
  });
  rng.shuffle(words);
  order?.push(words.map((w) => w.slice()));
  const budget = maskCount(tokens.length, ratio, maxPredictions);
  const mask = new Uint8Array(tokens.length);
  let taken = 0;
  for (const word of words) {
    if (taken >= budget) break;
    if (taken + word.length > budget) continue;
    for (const i of word) mask[i] = 1;
    taken += word.length;
  }
  return mask;
}
