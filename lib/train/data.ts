/**
 * Pre-training data: tokenize a corpus and pack consecutive sentences into
 * blocks, as the official preprocessing does (examples/pretrain/preprocess.py:
 * per document, sentences are appended to the current block until it holds at
 * least maxLength - 2 ids; the collator truncates). Blocks are token ids in
 * one flat Int32Array, never tensors. Batches come in a seeded order per
 * epoch, from a position (epoch, index) that a checkpoint records.
 */
import { Rng } from "../engine/rng";
import type { BertTokenizer } from "../text/tokenizer";
import { CorpusOptions, readCorpus, splitSentences } from "../text/corpus";

export class PackedCorpus {
  private ids: Int32Array;
  private offsets: number[] = [0];
  private used = 0;

  constructor() {
    this.ids = new Int32Array(1 << 16);
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
    this.used += block.length;
    this.offsets.push(this.used);
  }

  /** Append one document: its sentences packed into blocks of at least `target` ids. */
  addDocument(tokenizer: BertTokenizer, text: string, target: number): void {
    let block: number[] = [];
    for (const sentence of splitSentences(text)) {
      if (block.length >= target) {
        this.push(block);
        block = [];
      }
      for (const id of tokenizer.textToIds(sentence)) block.push(id);
    }
    if (block.length > 0) this.push(block);
  }

  /** Tokenize and pack a corpus file (streamed line by line). */
  static async fromFile(file: string, tokenizer: BertTokenizer, maxLength: number, options: CorpusOptions & { limit?: number } = {}): Promise<PackedCorpus> {
    const corpus = new PackedCorpus();
    let docs = 0;
    for await (const text of readCorpus(file, options)) {
      corpus.addDocument(tokenizer, text, maxLength - 2);
      if (options.limit !== undefined && ++docs >= options.limit) break;
    }
    if (corpus.size === 0) throw new Error(`Corpus file "${file}" has no text; check the file and its format.`);
    return corpus;
  }

  static fromTexts(texts: Iterable<string>, tokenizer: BertTokenizer, maxLength: number): PackedCorpus {
    const corpus = new PackedCorpus();
    for (const t of texts) corpus.addDocument(tokenizer, t, maxLength - 2);
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
