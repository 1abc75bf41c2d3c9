/**
 * Tracebacks that point at cells: stack frames in generated code are mapped
 * back to `Cell In[N], line L, column C`, and kernel, Node-internal and
 * ts-node frames are left out.
 */
import * as path from "path";
import { inspect } from "./format";
import type { ErrorContent } from "../protocol/messages";

interface CellMap {
  label: string;
  /** Per generated line: flat [genCol, cellLine, cellCol, ...] (all 1-based). */
  map: number[][];
  /** The generated line that invokes the cell's async body: not a user frame. */
  invocationLine: number;
}

export class Tracebacks {
  private readonly cells = new Map<string, CellMap>();

  /** Remember how a cell's generated file maps to its lines. */
  register(filename: string, label: string, map: number[][], js: string): void {
    this.cells.set(filename, { label, map, invocationLine: js.trimEnd().split("\n").length });
  }

  /** ename, evalue and a traceback with frames mapped to cell lines. */
  describe(err: unknown): ErrorContent {
    if (!(err instanceof Error) && !(err && typeof err === "object" && "stack" in err)) {
      return { ename: "Error", evalue: `Uncaught ${inspect(err)}`, traceback: [`\x1b[31mUncaught\x1b[0m ${inspect(err)}`] };
    }
    const e = err as Error;
    const ename = e.name || "Error";
    const evalue = e.message ?? "";
    const frames: string[] = [];
    for (const line of String(e.stack ?? "").split("\n")) {
      const m = /^\s+at (?:(.*?) \()?(.+?):(\d+):(\d+)\)?$/.exec(line);
      if (!m) continue;
      const [, fn, file, l, col] = m;
      const cell = this.cells.get(file);
      if (cell) {
        if (Number(l) >= cell.invocationLine) continue;
        const pos = mapPosition(cell.map, Number(l), Number(col));
        if (!pos) continue;
        const where = `${cell.label}, line ${pos[0]}, column ${pos[1]}`;
        const name = fn && fn !== "<anonymous>" && !fn.includes("__rm") ? ` in ${fn.replace(/^async /, "")}` : "";
        frames.push(`    at \x1b[32m${where}\x1b[0m${name}`);
        continue;
      }
      if (file.startsWith("node:") || file.includes(`${path.sep}kernel${path.sep}`) || file === "user_expression" || file.includes("ts-node")) continue;
      frames.push(`    at ${fn ? `${fn} (${file}:${l}:${col})` : `${file}:${l}:${col}`}`);
    }
    const head = `\x1b[31m${ename}\x1b[0m: ${evalue}`;
    return { ename, evalue, traceback: [head, ...frames.slice(0, 30)] };
  }
}

/** Generated (line, column) -> cell (line, column), from the per-line segment table. */
export function mapPosition(map: number[][], line: number, col: number): [number, number] | null {
  const segs = map[line - 1];
  if (!segs || segs.length === 0) return null;
  let best = 0;
  for (let i = 0; i < segs.length; i += 3) if (segs[i] <= col) best = i;
  return [segs[best + 1], segs[best + 2]];
}
