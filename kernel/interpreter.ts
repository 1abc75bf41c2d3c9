/**
 * The interpreter: what each request means for TypeScript cells (execute,
 * complete, inspect, is_complete, history, kernel_info), as ipykernel's
 * ipkernel.py is to kernelbase.py. It publishes through the callback it is
 * given and returns reply contents; protocol.ts sends them.
 */
import * as fs from "fs";
import * as path from "path";
import { PACKAGE_ROOT } from "../lib/util";
import { NO_RESULT, type DisplayPublisher } from "./runtime/display";
import { Bundle, isTensor, toBundle } from "./runtime/format";
import { History } from "./history";
import type { Diagnostic } from "./language/language";
import type {
  CompleteReply,
  CompleteRequest,
  ErrorContent,
  ExecuteReply,
  ExecuteRequest,
  HistoryReply,
  HistoryRequest,
  InspectReply,
  InspectRequest,
  IsCompleteReply,
  KernelInfoReply,
  PagerPayload,
  Publish,
  UserExpressionResult,
} from "./protocol/messages";
import type { Runtime } from "./runtime/runtime";
import { PROTOCOL_VERSION, type Message } from "./protocol/wire";
import type { LanguageClient } from "./workers";
import { debug } from "./log";

export const KERNEL_VERSION: string = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")).version;

export interface ExecuteOutcome {
  reply: ExecuteReply;
  /** The kernel's own timing, sent as the reply's metadata. */
  metadata: { retromae: { check_ms: number; run_ms: number; check_cached: boolean } };
  /** stop_on_error and the cell failed: the execute requests already queued are aborted. */
  abortQueued: boolean;
}

type Outcome = { ok: true; value: unknown; hasResult: boolean } | ({ ok: false } & ErrorContent);

export class Interpreter {
  private executionCount = 0;
  readonly history = new History();

  constructor(
    private readonly publish: Publish,
    private readonly language: LanguageClient,
    private readonly runtime: Runtime,
    private readonly display: DisplayPublisher,
  ) {}

  get count(): number {
    return this.executionCount;
  }

  kernelInfo(): KernelInfoReply {
    const tsVersion = (require("typescript/package.json") as { version: string }).version;
    return {
      status: "ok",
      protocol_version: PROTOCOL_VERSION,
      implementation: "retromae",
      implementation_version: KERNEL_VERSION,
      language_info: {
        name: "typescript",
        version: tsVersion,
        mimetype: "text/typescript",
        file_extension: ".ts",
        codemirror_mode: "typescript",
        pygments_lexer: "typescript",
      },
      banner: `RetroMAE kernel ${KERNEL_VERSION}: TypeScript ${tsVersion} on Node.js ${process.version}. import { RetroMAE, Trainer } from "retromae" to begin.`,
      help_links: [
        { text: "RetroMAE (Xiao et al., EMNLP 2022)", url: "https://aclanthology.org/2022.emnlp-main.35/" },
        { text: "TypeScript handbook", url: "https://www.typescriptlang.org/docs/handbook/intro.html" },
        { text: "TensorFlow.js API", url: "https://js.tensorflow.org/api/latest/" },
      ],
      debugger: false,
      // JEP 92: optional protocol features this kernel implements (none yet: no debugger, no kernel subshells).
      supported_features: [],
    };
  }

  async complete(c: CompleteRequest): Promise<CompleteReply> {
    const code = String(c.code ?? "");
    const cursor = codePointsToIndex(code, Number(c.cursor_pos ?? code.length));
    const r = await this.language.call("complete", { code, cursor });
    const start = indexToCodePoints(code, r.start);
    const end = indexToCodePoints(code, r.end);
    return {
      status: "ok",
      matches: r.matches,
      cursor_start: start,
      cursor_end: end,
      metadata: { _jupyter_types_experimental: r.types.map((t) => ({ ...t, start, end })) },
    };
  }

  async inspect(c: InspectRequest): Promise<InspectReply> {
    const code = String(c.code ?? "");
    const cursor = codePointsToIndex(code, Number(c.cursor_pos ?? code.length));
    const text = await this.language.call("inspect", { code, cursor, detail: Number(c.detail_level ?? 0) });
    return { status: "ok", found: text !== null, data: text === null ? {} : { "text/plain": text, "text/markdown": "```typescript\n" + text + "\n```" }, metadata: {} };
  }

  isComplete(code: string): Promise<IsCompleteReply> {
    return this.language.call("isComplete", { code });
  }

  historyReply(c: HistoryRequest): HistoryReply {
    return { status: "ok", history: this.history.query(c) };
  }

  async execute(msg: Message): Promise<ExecuteOutcome> {
    const c = msg.content as unknown as ExecuteRequest;
    const code = String(c.code ?? "");
    const silent = !!c.silent;
    const storeHistory = c.store_history === undefined ? !silent : !!c.store_history && !silent;
    const stopOnError = c.stop_on_error === undefined ? true : !!c.stop_on_error;
    if (storeHistory) this.executionCount++;
    const count = this.executionCount;
    if (!silent) this.publish("execute_input", { code, execution_count: count }, msg.header);
    if (storeHistory) this.history.add(count, code);

    const aborted = this.runtime.begin(msg);
    const t0 = performance.now();
    let checkMs = 0;
    let checkCached = false;
    let outcome: Outcome;
    const payload: PagerPayload[] = [];
    // IPython's `?name` / `name?`: the signature and docs in the pager.
    const help = /^\s*\?\s*([\w$.]+)\s*$/.exec(code) ?? /^\s*([\w$.]+)\s*\?\s*$/.exec(code);
    try {
      if (code.trim() === "") outcome = { ok: true, value: undefined, hasResult: false };
      else if (help) {
        const text = await this.language.call("inspect", { code: help[1], cursor: help[1].length, detail: 1 });
        payload.push({ source: "page", data: { "text/plain": text ?? `No information about ${help[1]}.` }, start: 0 });
        outcome = { ok: true, value: undefined, hasResult: false };
      } else {
        const checked = await Promise.race([this.language.call("check", { code }), aborted]);
        debug(`checked in ${checked.checkMs.toFixed(1)} ms: ${checked.ok}`);
        checkMs = checked.checkMs;
        checkCached = checked.ok && checked.cached;
        if (!checked.ok) outcome = { ok: false, ...typeError(checked.diagnostics, count) };
        else outcome = { ok: true, value: await this.runtime.run(checked.compiled, `Cell In[${count}]`), hasResult: checked.compiled.hasResult };
      }
    } catch (err) {
      outcome = { ok: false, ...this.runtime.tracebacks.describe(err) };
    }
    const runMs = performance.now() - t0 - checkMs;
    const metadata = { retromae: { check_ms: round(checkMs), run_ms: round(runMs), check_cached: checkCached } };

    if (outcome.ok && outcome.hasResult && !silent && !isHandle(outcome.value)) {
      let bundle: Bundle | null = null;
      try {
        // A GPU tensor's values are read with an awaited transfer first (webgpu has no synchronous read in Node).
        const value = outcome.value;
        if (isTensor(value) && !value.isDisposed && value.dtype !== "string") await value.data();
        bundle = toBundle(outcome.value);
      } catch (err) {
        outcome = { ok: false, ...this.runtime.tracebacks.describe(err) };
      }
      if (bundle) {
        if (this.display.isPlotly(bundle)) this.display.send(bundle, this.display.nextId());
        else this.publish("execute_result", { execution_count: count, data: bundle, metadata: {} });
        if (storeHistory) this.history.setOutput(count, String(bundle["text/plain"] ?? ""));
      }
    }
    this.display.restoreLoader();
    let reply: ExecuteReply;
    if (outcome.ok) {
      reply = { status: "ok", execution_count: count, user_expressions: await this.userExpressions(c.user_expressions), payload };
    } else {
      const { ename, evalue, traceback } = outcome;
      if (!silent) this.publish("error", { ename, evalue, traceback });
      reply = { status: "error", execution_count: count, ename, evalue, traceback };
    }
    this.runtime.end();
    return { reply, metadata, abortQueued: !outcome.ok && stopOnError };
  }

  private async userExpressions(exprs: unknown): Promise<Record<string, UserExpressionResult>> {
    const out: Record<string, UserExpressionResult> = {};
    if (!exprs || typeof exprs !== "object") return out;
    for (const [name, expr] of Object.entries(exprs as Record<string, string>)) {
      try {
        const value = this.runtime.evaluate(await this.language.call("transpileExpression", { code: String(expr) }));
        out[name] = { status: "ok", data: toBundle(value) ?? { "text/plain": "undefined" }, metadata: {} };
      } catch (err) {
        out[name] = { status: "error", ...this.runtime.tracebacks.describe(err) };
      }
    }
    return out;
  }
}

/** A display handle is not shown as a cell's result (display() already showed the value). */
function isHandle(v: unknown): boolean {
  return !!v && typeof v === "object" && !!(v as Record<symbol, unknown>)[NO_RESULT];
}

/** Type errors as an error message: cell line and column, the source line and a caret. */
function typeError(d: Diagnostic[], count: number): ErrorContent {
  return {
    ename: "TypeError",
    evalue: d.map((x) => `line ${x.line}, column ${x.column}: ${x.message}`).join("; "),
    traceback: d.flatMap((x) => [
      `\x1b[31mCell In[${count}], line ${x.line}, column ${x.column}\x1b[0m: \x1b[1mTS${x.code}\x1b[0m ${x.message}`,
      `    ${x.source}`,
      `    ${" ".repeat(Math.max(0, x.column - 1))}\x1b[31m^\x1b[0m`,
    ]),
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Jupyter counts cursor positions in Unicode code points; JS strings index UTF-16 units. */
export function codePointsToIndex(text: string, cp: number): number {
  let i = 0;
  for (let n = 0; n < cp && i < text.length; n++) i += text.codePointAt(i)! > 0xffff ? 2 : 1;
  return i;
}

export function indexToCodePoints(text: string, index: number): number {
  return [...text.slice(0, index)].length;
}
