/**
 * Corpus readers that stream a file line by line: JSON lines with a text
 * field, a BEIR corpus (title + " " + text), or plain text lines.
 */
import * as fs from "fs";
import * as readline from "readline";

export type CorpusFormat = "jsonl" | "beir" | "text";

export interface CorpusOptions {
  /** Default: "beir" for a file named corpus.jsonl, "jsonl" for *.jsonl/*.json, else "text". */
  format?: CorpusFormat;
  /** jsonl: the field holding the text. Default "text". */
  field?: string;
  /** beir: how title and text are joined. Default title + " " + text, as BEIR does. */
  joinTitle?: (title: string, text: string) => string;
}

export function guessFormat(file: string): CorpusFormat {
  if (/(^|\/)corpus\.jsonl$/.test(file)) return "beir";
  if (/\.jsonl?$/.test(file)) return "jsonl";
  return "text";
}

/** Stream the texts of a corpus file. Blank lines are skipped. */
export async function* readCorpus(file: string, options: CorpusOptions = {}): AsyncGenerator<string> {
  if (!fs.existsSync(file)) throw new Error(`Corpus file "${file}" does not exist; pass a .jsonl, a BEIR corpus.jsonl or a text file.`);
  const format = options.format ?? guessFormat(file);
  const field = options.field ?? "text";
  const join = options.joinTitle ?? ((title: string, text: string) => (title ? `${title} ${text}` : text));
  const lines = readline.createInterface({ input: fs.createReadStream(file, "utf8"), crlfDelay: Infinity });
  let n = 0;
  for await (const raw of lines) {
    n++;
    const line = raw.trim();
    if (!line) continue;
    if (format === "text") {
      yield line;
      continue;
    }
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new Error(`${file} line ${n} is not valid JSON; a ${format} corpus has one JSON object per line.`);
    }
    if (format === "beir") {
      const text = obj.text;
      if (typeof text !== "string") throw new Error(`${file} line ${n} has no "text" string; a BEIR corpus line is {"_id", "title", "text"}.`);
      yield join(typeof obj.title === "string" ? obj.title : "", text);
    } else {
      const text = obj[field];
      if (typeof text !== "string") throw new Error(`${file} line ${n} has no "${field}" string field; pass { field: "..." } naming the text field.`);
      yield text;
    }
  }
}

/**
 * Split text into sentences: after . ! or ? (and closing quotes/brackets)
 * followed by whitespace and an upper-case letter, digit or opening quote.
 * A rule-based stand-in for nltk's punkt, which the official preprocessing
 * uses; common abbreviations (e.g., i.e., et al., Fig.) do not end a sentence.
 */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  const re = /([.!?]["')\]]*)\s+(?=["'(\[]?[A-Z0-9])/g;
  let start = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    const end = m.index + m[1].length;
    const before = text.slice(Math.max(start, end - 8), end);
    if (/(\b(e\.g|i\.e|et al|Fig|Figs|Eq|vs|Dr|Mr|Mrs|Ms|No|approx|ca|cf)\.|\b[A-Z]\.)$/.test(before)) continue;
    out.push(text.slice(start, end).trim());
    start = m.index + m[0].length;
  }
  const rest = text.slice(start).trim();
  if (rest) out.push(rest);
  return out.filter((s) => s.length > 0);
}
