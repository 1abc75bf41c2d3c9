/**
 * The language thread: TypeScript checking, compiling, completion and
 * inspection for cells, off the interpreter thread, warmed up at start.
 */
import * as path from "path";
import { parentPort, workerData } from "worker_threads";
import { collectGarbage, PACKAGE_ROOT } from "../../lib/util";
import { requireWithCodeCache } from "./code-cache";
import type { CellLanguage, CheckResult, Completion, IsComplete } from "./language";
import { debug, log } from "../log";

/** Each operation of the language thread: its arguments and its result. */
export interface LanguageOps {
  check: { args: { code: string }; result: CheckResult };
  complete: { args: { code: string; cursor: number }; result: Completion };
  inspect: { args: { code: string; cursor: number; detail: number }; result: string | null };
  isComplete: { args: { code: string }; result: IsComplete };
  transpileExpression: { args: { code: string }; result: string };
  /** The thread's heap in bytes (diagnostics), after a full collection if asked. */
  heap: { args: { collect: boolean }; result: { used: number; total: number } };
}

export type LanguageOp = keyof LanguageOps;
export type LanguageRequest = { [K in LanguageOp]: { id: number; op: K } & LanguageOps[K]["args"] }[LanguageOp];
export type LanguageReply = { [K in LanguageOp]: { id: number; op: K; ok: true; value: LanguageOps[K]["result"] } }[LanguageOp] | { id: number; ok: false; error: string };

/**
 * How long the thread waits without a request before it collects its garbage. Each check makes a new program and
 * checker, and V8 let the old ones pile up: in a kernel, the thread's heap grew from 134 to 250 MB over 600 trivial
 * cells with ~93 MB live. Cells run back to back come sooner than this and never wait for a collection.
 */
const IDLE_COLLECT_MS = 200;

function perform(lang: CellLanguage, r: LanguageRequest): LanguageReply {
  switch (r.op) {
    case "check":
      return { id: r.id, op: r.op, ok: true, value: lang.check(r.code) };
    case "complete":
      return { id: r.id, op: r.op, ok: true, value: lang.complete(r.code, r.cursor) };
    case "inspect":
      return { id: r.id, op: r.op, ok: true, value: lang.inspect(r.code, r.cursor, r.detail) };
    case "isComplete":
      return { id: r.id, op: r.op, ok: true, value: lang.isComplete(r.code) };
    case "transpileExpression":
      return { id: r.id, op: r.op, ok: true, value: lang.transpileExpression(r.code) };
    case "heap": {
      if (r.collect) collectGarbage();
      const m = process.memoryUsage();
      return { id: r.id, op: r.op, ok: true, value: { used: m.heapUsed, total: m.heapTotal } };
    }
  }
}

if (parentPort && workerData?.language) {
  const port = parentPort;
  // TypeScript's bytecode from the last start (kernel/code-cache.ts), before ./language imports it.
  const typescript = requireWithCodeCache("typescript", PACKAGE_ROOT, path.join(PACKAGE_ROOT, "node_modules", ".cache", "retromae"));
  // A require, not an import: ./language must load after the line above.
  const { CellLanguage: Language } = require("./language") as typeof import("./language");
  const lang = new Language(workerData.cwd as string);
  const since = (what: string) => debug(`language thread: ${what} at ${(process.uptime() * 1000).toFixed(0)} ms`);
  since(`TypeScript loaded (code cache ${typescript.hit ? "used" : "written after warm-up"}) and the checker made`);
  let idle: NodeJS.Timeout | null = null;
  const collectWhenIdle = () => {
    if (idle) clearTimeout(idle);
    idle = setTimeout(collectGarbage, IDLE_COLLECT_MS).unref();
  };
  port.on("message", (r: LanguageRequest) => {
    let reply: LanguageReply;
    try {
      reply = perform(lang, r);
    } catch (err) {
      reply = { id: r.id, ok: false, error: (err as Error).stack ?? String(err) };
    }
    port.postMessage(reply);
    collectWhenIdle();
  });
  // Warm up once listening, one step per turn of the event loop: requests that arrive meanwhile are served between steps.
  const steps = [...lang.warmUpSteps.map((step, i) => () => (step(), since(`warm-up step ${i + 1} of ${lang.warmUpSteps.length} done`))), () => {
    const problem = typescript.save();
    if (problem) log(problem);
    collectWhenIdle();
  }];
  const next = (): void => {
    const step = steps.shift();
    if (!step) return;
    try {
      step();
    } catch (err) {
      log(`type-checker warm-up failed: ${(err as Error).message}`);
      return;
    }
    setImmediate(next);
  };
  setImmediate(next);
}
