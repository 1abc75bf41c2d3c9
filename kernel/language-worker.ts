/**
 * The language thread: TypeScript checking, compiling, completion and
 * inspection for cells, off the interpreter thread, warmed up at start.
 */
import { parentPort, workerData } from "worker_threads";
import { CellLanguage } from "./language";

export type LanguageRequest =
  | { id: number; op: "check"; code: string }
  | { id: number; op: "complete"; code: string; cursor: number }
  | { id: number; op: "inspect"; code: string; cursor: number; detail: number }
  | { id: number; op: "isComplete"; code: string }
  | { id: number; op: "transpileExpression"; code: string };

export type LanguageReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

if (parentPort && workerData?.language) {
  const port = parentPort;
  const lang = new CellLanguage(workerData.cwd as string);
  port.on("message", (r: LanguageRequest) => {
    try {
      let value: unknown;
      switch (r.op) {
        case "check":
          value = lang.check(r.code);
          break;
        case "complete":
          value = lang.complete(r.code, r.cursor);
          break;
        case "inspect":
          value = lang.inspect(r.code, r.cursor, r.detail);
          break;
        case "isComplete":
          value = lang.isComplete(r.code);
          break;
        case "transpileExpression":
          value = lang.transpileExpression(r.code);
          break;
      }
      port.postMessage({ id: r.id, ok: true, value } satisfies LanguageReply);
    } catch (err) {
      port.postMessage({ id: r.id, ok: false, error: (err as Error).stack ?? String(err) } satisfies LanguageReply);
    }
  });
  // Warm up once listening; requests that arrive meanwhile wait for it.
  setImmediate(() => {
    try {
      lang.warmUp();
    } catch (err) {
      process.stderr.write(`[retromae kernel] type-checker warm-up failed: ${(err as Error).message}\n`);
    }
  });
}
