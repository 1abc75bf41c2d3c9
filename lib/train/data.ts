/**
 * Pre-training data: tokenize a corpus and pack sentences into blocks, as
 * the official preprocessing does (examples/pretrain/preprocess.py):
 *
 * - documents (Wikipedia, passages; jsonl and BEIR corpora): per document,
 *   sentences are appended to the current block until it holds at least
 *   maxLength - 2 ids (the collator truncates);
 * - lines (BookCorpus style, one sentence per line; plain text files):
 *   consecutive lines are packed the same way across line breaks, within
 *   runs of 1,000 lines (datasets' batched map, which preprocess.py uses).
 *
 * With `shortSeqProb` p, each block's target is drawn as preprocess.py
 * draws it: the full length with probability 1 - p, else a whole number in
 * [3, target]. Off (0) by default, as in preprocess.py.
 *
 * Blocks are token ids in one flat Int32Array, never tensors. Batches come
 * in a seeded order per epoch, from a position (epoch, index) that a
 * checkpoint records.
 */
import { Rng } from "../engine/rng";
import type { BertTokenizer } from "../text/tokenizer";
import { CorpusOptions, guessFormat, readCorpus, splitSentences } from "../text/corpus";

/** How texts become blocks: each text a document of sentences, or each text one line of a running stream. */
export type Packing = "documents" | "lines";

export interface PackOptions {
  /** Default "lines" for plain text files, "documents" otherwise (and for fromTexts). */
  packing?: Packing;
  /** Probability of a shorter block target, as preprocess.py's --short_seq_prob. Default 0. */
  shortSeqProb?: number;
  /** Seeds the short-target draws. Default 0. */
  seed?: number;
}

/** datasets' Dataset.map(batched=True) batch size, within which preprocess.py packs book lines. */
export const LINES_PER_MAP_BATCH = 1000;

/** Accumulates sentences into blocks of at least a target length, drawing targets as preprocess.py does. */
class BlockPacker {
  private block: number[] = [];
  private target: number;
  private readonly rng: Rng;

  constructor(private readonly corpus: PackedCorpus, private readonly fullTarget: number, private readonly shortSeqProb: number, seed: number) {
    if (!(shortSeqProb >= 0 && shortSeqProb <= 1)) throw new Error(`shortSeqProb must be in [0, 1], got ${shortSeqProb}; preprocess.py's default is 0.`);
    this.rng = new Rng(seed);
    this.target = this.drawTarget();
  }

  /** curr_tgt_len = target_length if random.random() > short_seq_prob else random.randint(3, target_length) */
  private drawTarget(): number {
    if (this.shortSeqProb === 0 || this.rng.float() > this.shortSeqProb) return this.fullTarget;
    return 3 + this.rng.int(Math.max(1, this.fullTarget - 2));
  }

  add(ids: readonly number[]): void {
    if (this.block.length >= this.target) {
      this.corpus.push(this.block);
      this.block = [];
      this.target = this.drawTarget();
    }
    for (const id of ids) this.block.push(id);
  }

  /** End of a document (or of a map batch of lines): the rest becomes a block, and a new target is drawn. */
  end(): void {
    if (this.block.length > 0) this.corpus.push(this.block);
    this.block = [];
    this.target = this.drawTarget();
  }
}

export class PackedCorpus {
  private ids: Int32Array;
  private offsets: number[] = [0];
  private used = 0;
  private largest = -1;

  constructor() {
    this.ids = new Int32Array(1 << 16);
  }

  /** The largest token id in the corpus (-1 when empty): a model must have a row for it (RetroMAE.checkTokenIds). */
  get maxId(): number {
    return this.largest;
  }

  get size(): number {
    return this.offsets.length - 1;
  }

  get tokens(): number {
    return this.used;
  }

  /** Ids of block i (a view; do not modify). */
  block(i: number): Int32Array {
    return this.ids.subarray(this.offsets[i], this.offsets[i + 1]);
  }

  push(block: readonly number[]): void {
    if (this.used + block.length > this.ids.length) {
      const grown = new Int32Array(Math.max(this.ids.length * 2, this.used + block.length));
      grown.set(this.ids.subarray(0, this.used));
      this.ids = grown;
    }
    this.ids.set(block, this.used);
    for (const id of block) if (id > this.largest) this.largest = id;
    this.used += block.length;
    this.offsets.push(this.used);
  }

  /** One text into the packer: a document of sentences, or one line of a running stream (the index-th). */
  private static pack(packer: BlockPacker, tokenizer: BertTokenizer, text: string, packing: Packing, index: number): void {
    if (packing === "lines") {
      packer.add(tokenizer.textToIds(text));
      if ((index + 1) % LINES_PER_MAP_BATCH === 0) packer.end();
      return;
    }
    for (const sentence of splitSentences(text)) packer.add(tokenizer.textToIds(sentence));
    packer.end();
  }

  /** Tokenize and pack a corpus file (streamed line by line). */
  static async fromFile(file: string, tokenizer: BertTokenizer, maxLength: number, options: CorpusOptions & PackOptions & { limit?: number } = {}): Promise<PackedCorpus> {
    const corpus = new PackedCorpus();
    const packing = options.packing ?? ((options.format ?? guessFormat(file)) === "text" ? "lines" : "documents");
    const packer = new BlockPacker(corpus, maxLength - 2, options.shortSeqProb ?? 0, options.seed ?? 0);
    let n = 0;
    for await (const text of readCorpus(file, options)) {
      PackedCorpus.pack(packer, tokenizer, text, packing, n++);
      if (options.limit !== undefined && n >= options.limit) break;
    }
    packer.end();
    if (corpus.size === 0) throw new Error(`Corpus file "${file}" has no text; check the file and its format.`);
    return corpus;
  }

  /** Each text a document (sentences packed per text), or with packing "lines", each text one line of a stream. */
  static fromTexts(texts: Iterable<string>, tokenizer: BertTokenizer, maxLength: number, options: PackOptions = {}): PackedCorpus {
    const corpus = new PackedCorpus();
    const packer = new BlockPacker(corpus, maxLength - 2, options.shortSeqProb ?? 0, options.seed ?? 0);
    let n = 0;
    for (const text of texts) PackedCorpus.pack(packer, tokenizer, text, options.packing ?? "documents", n++);
    packer.end();
    return corpus;
  }
}

/** Where the data stream is: which epoch, and how many blocks of it were used. */
export interface DataPosition {
  epoch: number;
  index: number;
}

/**
 * Seeded batches over a packed corpus. Epoch e visits the blocks in the
 * order of a permutation drawn from Rng(seed + e), so any position can be
 * restored exactly. The last partial batch of an epoch is dropped.
 */
export class BatchStream {
  readonly corpus: PackedCorpus;
  readonly batchSize: number;
  readonly seed: number;
  position: DataPosition = { epoch: 0, index: 0 };
  private order: number[] | null = null;
  private orderEpoch = -1;

  constructor(corpus: PackedCorpus, batchSize: number, seed: number) {
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`batchSize must be a positive whole number, got ${batchSize}.`);
    if (corpus.size < batchSize) {
      throw new Error(`The corpus has ${corpus.size} blocks, fewer than one batch of ${batchSize}; use a smaller batchSize or more text.`);
    }
    this.corpus = corpus;
    this.batchSize = batchSize;
    this.seed = seed;
  }

  get batchesPerEpoch(): number {
    return Math.floor(this.corpus.size / this.batchSize);
  }

  private permutation(epoch: number): number[] {
    if (this.orderEpoch !== epoch) {
      this.order = new Rng(this.seed + epoch).permutation(this.corpus.size);
      this.orderEpoch = epoch;
    }
    return this.order!;
  }

  /** The next batch of blocks (as id arrays), advancing the position. */
  next(): Int32Array[] {
    if (this.position.index + this.batchSize > this.corpus.size) this.position = { epoch: this.position.epoch + 1, index: 0 };
    const order = this.permutation(this.position.epoch);
    const out: Int32Array[] = [];
    for (let i = 0; i < this.batchSize; i++) out.push(this.corpus.block(order[this.position.index + i]));
    this.position = { epoch: this.position.epoch, index: this.position.index + this.batchSize };
    return out;
  }
}
