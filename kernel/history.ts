/**
 * This session's cells for history_request: tail, range and search (glob
 * patterns, unique, n), as IPython answers them. Entries are
 * [session, line, input] or [session, line, [input, output]].
 */
import type { HistoryEntry, HistoryRequest } from "./protocol/messages";

export const SESSION = 1;

interface Entry {
  line: number;
  input: string;
  output: string | null;
}

export class History {
  private readonly entries: Entry[] = [];

  add(line: number, input: string): void {
    this.entries.push({ line, input, output: null });
  }

  setOutput(line: number, output: string): void {
    const e = this.entries.find((x) => x.line === line);
    if (e) e.output = output;
  }

  query(content: HistoryRequest): HistoryEntry[] {
    const output = !!content.output;
    const n = content.n === undefined || content.n === null ? undefined : Number(content.n);
    let list = this.entries;
    switch (content.hist_access_type) {
      case "tail":
        list = n === undefined ? list : list.slice(Math.max(0, list.length - n));
        break;
      case "range": {
        const session = Number(content.session ?? 0);
        if (session !== 0 && session !== SESSION) return [];
        const start = Number(content.start ?? 0);
        const stop = content.stop === undefined || content.stop === null ? Infinity : Number(content.stop);
        list = list.filter((e) => e.line >= start && e.line < stop);
        break;
      }
      case "search": {
        const re = globToRegExp(String(content.pattern ?? "*"));
        list = list.filter((e) => re.test(e.input));
        if (content.unique) {
          const seen = new Set<string>();
          list = [...list].reverse().filter((e) => (seen.has(e.input) ? false : (seen.add(e.input), true))).reverse();
        }
        if (n !== undefined) list = list.slice(Math.max(0, list.length - n));
        break;
      }
      default:
        return [];
    }
    return list.map((e): HistoryEntry => (output ? [SESSION, e.line, [e.input, e.output]] : [SESSION, e.line, e.input]));
  }
}

/** IPython's glob: * any run, ? one character, the whole input must match. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[\\s\\S]*").replace(/\?/g, "[\\s\\S]");
  return new RegExp(`^${body}$`);
}
