/**
 * The interpreter thread: handles Jupyter requests and runs cells.
 *
 * Three threads (transport/interpreter/language, as ipykernel and xeus split them):
 * - transport (transport.ts): all ZeroMQ sockets, signing, heartbeat, interrupts;
 * - language (language-worker.ts): TypeScript checking, compiling and completion;
 * - this one: the request loop, cell execution, output capture and display.
 * Cells run in this realm (vm.Script#runInThisContext), so their values are
 * ordinary objects to the library and to tfjs.
 */
import * as fs from "fs";
import { createRequire } from "module";
import * as path from "path";
import { pathToFileURL } from "url";
import * as vm from "vm";
import { Worker } from "worker_threads";
import type { Compiled, CheckResult } from "./language";
import type { LanguageReply, LanguageRequest } from "./language-worker";
import { Bundle, inspect, toBundle } from "./format";
import { History } from "./history";
import { PACKAGE_ROOT } from "../lib/util";
import { PLOTLY_MIME, plotlyFigureHtml, plotlyLoaderHtml } from "./plotly";
import type { Channel, Inbound, Outbound, TransportData } from "./transport";
import { ConnectionInfo, Header, makeHeader, Message, Outgoing } from "./wire";

export const KERNEL_VERSION: string = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")).version;

/** The real process.exit (cells get one that shuts the kernel down first). */
const exitProcess = process.exit.bind(process);

/** Thrown out of a cell that called process.exit(), to stop it while the kernel shuts down. */
class KernelExit extends Error {}

/** The error a cell sees when it is interrupted. */
export class KeyboardInterrupt extends Error {
  constructor() {
    super("The cell was interrupted.");
    this.name = "KeyboardInterrupt";
  }
}

function log(line: string): void {
  fs.writeSync(2, `[retromae kernel] ${line}\n`);
}

const DEBUG = !!process.env.RETROMAE_KERNEL_DEBUG;
function debug(line: string): void {
  if (DEBUG) log(line);
}

/** Start a worker from this directory's sibling module, from source (ts-node) or from the build. */
function startWorker(name: string, workerData: unknown): Worker {
  const fromSource = __filename.endsWith(".ts");
  const file = path.join(__dirname, `${name}${fromSource ? ".ts" : ".js"}`);
  const worker = new Worker(file, {
    workerData,
    stderr: true,
    stdout: true,
    execArgv: fromSource ? ["-r", require.resolve("ts-node/register/transpile-only")] : [],
    // From source, ts-node must compile with this package's tsconfig, wherever the notebook (the cwd) is.
    env: fromSource ? { ...process.env, TS_NODE_PROJECT: path.join(PACKAGE_ROOT, "tsconfig.json") } : process.env,
  });
  // Worker output goes straight to the kernel's stderr, never into a cell's output.
  worker.stderr.on("data", (d: Buffer) => fs.writeSync(2, d));
  worker.stdout.on("data", (d: Buffer) => fs.writeSync(2, d));
  return worker;
}

interface CellMap {
  label: string;
  map: number[][];
  /** The generated line that invokes the cell's async body: not a user frame. */
  invocationLine: number;
}

interface Running {
  request: Message;
  abort: AbortController;
  aborted: Promise<never>;
}

/** Display handles are not shown as a cell's result (display() already showed the value). */
const NO_RESULT = Symbol("retromae.noResult");

const STREAM_FLUSH_BYTES = 64 * 1024;
const STREAM_FLUSH_MS = 5;

export class Kernel {
  private readonly session = `${process.pid}-${Date.now().toString(36)}`;
  private readonly flag = new SharedArrayBuffer(8);
  private readonly flags = new Int32Array(this.flag);
  private transport!: Worker;
  private language!: Worker;
  private languageCalls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private languageSeq = 0;
  private languageDead = false;
  private executionCount = 0;
  private readonly history = new History();
  private readonly queue: Message[] = [];
  private busy = false;
  /** Set by a failed execute with stop_on_error: the queued executes are answered "aborted" after its idle. */
  private abortAfterThis = false;
  private running: Running | null = null;
  /** The request that output currently belongs to (the last execute, for late async output). */
  private outputParent: Header | Record<string, never> = {};
  private readonly cellMaps = new Map<string, CellMap>();
  private streams: { name: "stdout" | "stderr"; text: string } | null = null;
  private streamTimer: NodeJS.Timeout | null = null;
  private plotlyLoader: { displayId: string | null; data: Bundle; metadata: Record<string, unknown>; dirty: boolean } | null = null;
  private stdinWaiter: { resolve: (v: string) => void; reject: (e: Error) => void } | null = null;
  private displayCounter = 0;
  private libraryHooked = false;
  private readonly cwd = process.cwd();
  private readonly cellRequire = createRequire(path.join(process.cwd(), "__cell__.js"));
  private closing = false;
  private exitCode = 0;

  constructor(private readonly info: ConnectionInfo) {}

  async start(): Promise<void> {
    this.transport = startWorker("transport", { info: this.info, session: this.session, flag: this.flag } satisfies TransportData);
    this.language = startWorker("language-worker", { language: true, cwd: this.cwd });
    this.language.on("message", (r: LanguageReply) => {
      const call = this.languageCalls.get(r.id);
      if (!call) return;
      this.languageCalls.delete(r.id);
      if (r.ok) call.resolve(r.value);
      else call.reject(new Error(r.error));
    });
    this.language.on("error", (e) => log(`language thread failed: ${e?.stack ?? e}`));
    this.language.on("exit", (code) => {
      if (this.closing) return;
      log(`language thread exited (${code})`);
      const calls = [...this.languageCalls.values()];
      this.languageCalls.clear();
      for (const c of calls) c.reject(new Error("The TypeScript checker stopped; restart the kernel (its log on stderr says why)."));
      this.languageDead = true;
    });
    this.transport.on("error", (e) => {
      log(`transport thread failed: ${e?.stack ?? e}`);
      exitProcess(1);
    });
    await new Promise<void>((resolve) => {
      this.transport.on("message", (m: Inbound) => {
        if (m.t === "ready") resolve();
        else if (m.t === "msg") this.receive(m.channel, reviveMessage(m.msg));
        else if (m.t === "closed") exitProcess(this.exitCode);
      });
    });
    this.installRuntime();
    this.captureOutput();
    process.on("SIGINT", () => this.interrupt());
    this.publish("status", { execution_state: "starting" }, {});
    this.publish("status", { execution_state: "idle" }, {});
  }

  // ---- sending ----

  private post(channel: Channel, msg: Outgoing): void {
    this.transport.postMessage({ t: "send", channel, msg } satisfies Outbound);
  }

  private reply(channel: Channel, request: Message, type: string, content: Record<string, unknown>, metadata: Record<string, unknown> = {}): void {
    this.post(channel, { identities: request.identities, header: makeHeader(type, this.session), parent_header: request.header, metadata, content });
  }

  publish(type: string, content: Record<string, unknown>, parent: Header | Record<string, never> = this.outputParent, metadata: Record<string, unknown> = {}): void {
    if (type !== "stream") this.flushStreams();
    this.post("iopub", { header: makeHeader(type, this.session), parent_header: parent, metadata, content });
  }

  // ---- output capture: stdout/stderr writes become batched stream messages ----

  private captureOutput(): void {
    const capture = (name: "stdout" | "stderr") =>
      ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((e?: Error) => void), cb?: (e?: Error) => void): boolean => {
        const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString(typeof encoding === "string" ? encoding : "utf8");
        this.writeStream(name, text);
        const done = typeof encoding === "function" ? encoding : cb;
        if (done) process.nextTick(done);
        return true;
      }) as typeof process.stdout.write;
    process.stdout.write = capture("stdout");
    process.stderr.write = capture("stderr");
  }

  private writeStream(name: "stdout" | "stderr", text: string): void {
    if (!text) return;
    if (this.streams && this.streams.name !== name) this.flushStreams();
    if (!this.streams) this.streams = { name, text: "" };
    this.streams.text += text;
    if (this.streams.text.length >= STREAM_FLUSH_BYTES) this.flushStreams();
    else if (!this.streamTimer) this.streamTimer = setTimeout(() => this.flushStreams(), STREAM_FLUSH_MS);
  }

  private flushStreams(): void {
    if (this.streamTimer) {
      clearTimeout(this.streamTimer);
      this.streamTimer = null;
    }
    const s = this.streams;
    this.streams = null;
    if (s && s.text) this.post("iopub", { header: makeHeader("stream", this.session), parent_header: this.outputParent, content: { name: s.name, text: s.text } });
  }

  // ---- display ----

  private nextDisplayId(): string {
    return `${this.session}-d${++this.displayCounter}`;
  }

  /**
   * Send a bundle as display_data (or update_display_data for an existing id).
   * A Plotly bundle gets a text/html fallback. The first one of the session
   * also carries plotly.js (the loader), so a saved notebook or its HTML export
   * draws offline. Updates of that output leave the loader out while a cell
   * runs (the page already has plotly.js), and the loader is put back when the
   * cell ends, so the saved output keeps it.
   */
  sendBundle(bundle: Bundle, displayId: string | null, update = false, metadata: Record<string, unknown> = {}): void {
    const data = { ...bundle };
    const fig = data[PLOTLY_MIME] as { data?: unknown; layout?: unknown } | undefined;
    let withLoader = false;
    if (fig && !("text/html" in data)) {
      data["text/html"] = plotlyFigureHtml(fig);
      if (!this.plotlyLoader) {
        this.plotlyLoader = { displayId, data, metadata, dirty: false };
        withLoader = true;
      } else if (displayId !== null && this.plotlyLoader.displayId === displayId) {
        this.plotlyLoader = { displayId, data, metadata, dirty: true };
      }
    }
    const sent = withLoader ? { ...data, "text/html": plotlyLoaderHtml() + data["text/html"] } : data;
    this.publish(update ? "update_display_data" : "display_data", { data: sent, metadata, transient: displayId ? { display_id: displayId } : {} });
  }

  /** At the end of a cell: put plotly.js back into its output if an update left it out. */
  private restorePlotlyLoader(): void {
    const l = this.plotlyLoader;
    if (!l || !l.dirty || l.displayId === null) return;
    l.dirty = false;
    const data = { ...l.data, "text/html": plotlyLoaderHtml() + String(l.data["text/html"]) };
    this.publish("update_display_data", { data, metadata: l.metadata, transient: { display_id: l.displayId } });
  }

  private makeDisplay() {
    const show = (bundle: Bundle | null, id?: string, metadata: Record<string, unknown> = {}) => {
      const displayId = id ?? this.nextDisplayId();
      if (bundle) this.sendBundle(bundle, displayId, false, metadata);
      return {
        [NO_RESULT]: true,
        id: displayId,
        update: (value: unknown) => {
          const b = toBundle(value);
          if (b) this.sendBundle(b, displayId, true);
        },
      };
    };
    const display = (value: unknown, options: { id?: string } = {}) => show(toBundle(value), options.id);
    const kind = (mime: string, toText: (v: string) => string) => (value: string) => {
      const h = show({ [mime]: value, "text/plain": toText(value) });
      return { [NO_RESULT]: true, id: h.id, update: (v: string) => this.sendBundle({ [mime]: v, "text/plain": toText(v) }, h.id, true) };
    };
    return Object.assign(display, {
      html: kind("text/html", () => "<HTML>"),
      markdown: kind("text/markdown", (v) => v),
      svg: kind("image/svg+xml", () => "<SVG image>"),
      json: (value: unknown) => show({ "application/json": value, "text/plain": inspect(value) }),
      png: (data: Uint8Array | string, options: { width?: number; height?: number } = {}) => {
        const b64 = typeof data === "string" ? data : Buffer.from(data).toString("base64");
        const size = Object.fromEntries(Object.entries(options).filter(([k, v]) => (k === "width" || k === "height") && typeof v === "number"));
        return show({ "image/png": b64, "text/plain": "<PNG image>" }, undefined, Object.keys(size).length ? { "image/png": size } : {});
      },
      plotly: (figure: { data?: unknown[]; layout?: unknown; toJSON?: () => unknown }) => {
        const spec = (typeof figure.toJSON === "function" ? figure.toJSON() : figure) as { data?: unknown[]; layout?: unknown };
        if (!spec || !Array.isArray(spec.data)) throw new TypeError("display.plotly needs a figure with a data array, e.g. { data: [{ y: [1, 2, 3] }], layout: {} }.");
        const bundle = { [PLOTLY_MIME]: spec, "text/plain": `Plotly figure (${spec.data.length} trace${spec.data.length === 1 ? "" : "s"})` };
        const h = show(bundle);
        return { [NO_RESULT]: true, id: h.id, update: (f: typeof figure) => this.sendBundle({ ...bundle, [PLOTLY_MIME]: typeof f.toJSON === "function" ? f.toJSON() : f }, h.id, true) };
      },
      bundle: (b: Bundle) => show(b),
    });
  }

  // ---- what cells see ----

  private installRuntime(): void {
    const g = globalThis as Record<string, unknown>;
    const kernel = this;
    g.__rmf = this.flags;
    g.__rm = {
      stop(): never {
        throw new KeyboardInterrupt();
      },
      w<T>(value: T): T | Promise<T> {
        const r = kernel.running;
        if (Atomics.load(kernel.flags, 0)) throw new KeyboardInterrupt();
        if (!r || !value || typeof (value as { then?: unknown }).then !== "function") return value;
        return Promise.race([value, r.aborted]);
      },
      load: (spec: string) => this.load(spec),
      require: (spec: string) => this.requireModule(spec),
      def(m: Record<string, unknown>): unknown {
        if (m && ((m as Record<symbol, unknown>)[Symbol.toStringTag] === "Module" || m.__esModule)) return m.default;
        return m;
      },
    };
    g.display = this.makeDisplay();
    g.clearOutput = (wait = false) => this.publish("clear_output", { wait });
    g.input = (prompt = "", options: { password?: boolean } = {}) => this.input(prompt, !!options.password);
    g.require = this.cellRequire;
    // process.exit() in a cell ends the kernel cleanly: the threads that own native sockets stop first.
    process.exit = ((code?: number) => {
      this.closing = true;
      this.flushStreams();
      this.exitCode = code ?? 0;
      void this.language.terminate();
      // The transport closes its sockets and then says "closed" (see start); a worker terminated with open sockets aborts.
      this.transport.postMessage({ t: "close" } satisfies Outbound);
      setTimeout(() => exitProcess(this.exitCode), 3000).unref();
      throw new KernelExit(`The kernel is exiting (process.exit(${code ?? ""})).`);
    }) as typeof process.exit;
    Object.defineProperty(g, "interruptSignal", { configurable: true, get: () => this.running?.abort.signal ?? new AbortController().signal });
  }

  private retromaeLib(): Record<string, unknown> {
    // The kernel's own copy of the library, so cells, live charts and the kernel share one display.
    const lib = require(path.join(__dirname, "..", "lib")) as Record<string, unknown> & {
      setDisplay?: (d: unknown) => void;
      setAmbientSignal?: (f: () => AbortSignal | undefined) => void;
    };
    if (!this.libraryHooked) {
      this.libraryHooked = true;
      lib.setDisplay?.({
        show: (value: { toMimeBundle?: () => Bundle } | Bundle) => {
          const bundle = typeof value.toMimeBundle === "function" ? (value as { toMimeBundle: () => Bundle }).toMimeBundle() : (value as Bundle);
          const id = this.nextDisplayId();
          this.sendBundle(bundle, id);
          return {
            update: (v: { toMimeBundle?: () => Bundle } | Bundle) =>
              this.sendBundle(typeof v.toMimeBundle === "function" ? (v as { toMimeBundle: () => Bundle }).toMimeBundle() : (v as Bundle), id, true),
          };
        },
      });
      lib.setAmbientSignal?.(() => this.running?.abort.signal);
    }
    return lib;
  }

  private requireModule(spec: string): unknown {
    if (spec === "retromae") return this.retromaeLib();
    if (/\.(c|m)?tsx?$/.test(spec) || (spec.startsWith(".") && !path.extname(spec))) registerTs();
    try {
      return this.cellRequire(spec);
    } catch (err) {
      // Packages the kernel itself has (tfjs, plotly.js-dist, ...) work from any notebook directory.
      const bare = !spec.startsWith(".") && !path.isAbsolute(spec);
      if (bare && (err as { code?: string }).code === "MODULE_NOT_FOUND") return require(spec);
      throw err;
    }
  }

  /** import for cells: CommonJS through require, ESM through import(); relative .ts files through ts-node. */
  private async load(spec: string): Promise<unknown> {
    const m = await this.loadModule(spec);
    // TensorFlow.js picks its backend asynchronously; wait, so the next line can make tensors.
    if (spec === "retromae" || spec === "@tensorflow/tfjs" || spec === "@tensorflow/tfjs-core") {
      const lib = m as { tf?: { ready?: () => Promise<unknown> }; ready?: () => Promise<unknown> };
      await (lib.ready ?? lib.tf?.ready)?.();
    }
    return m;
  }

  private async loadModule(spec: string): Promise<unknown> {
    try {
      return this.requireModule(spec);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "ERR_REQUIRE_ESM" && code !== "ERR_PACKAGE_PATH_NOT_EXPORTED" && code !== "ERR_REQUIRE_ASYNC_MODULE") {
        if (code === "MODULE_NOT_FOUND" && (err as Error).message.includes(`'${spec}'`))
          throw new Error(`Cannot find module "${spec}" from ${this.cwd}; install it with npm (npm install ${spec}) or fix the path.`);
        throw err;
      }
    }
    const url = spec.startsWith(".") || path.isAbsolute(spec) ? pathToFileURL(path.resolve(this.cwd, spec)).href : resolveEsm(spec, this.cwd);
    return dynamicImport(url);
  }

  private input(prompt: string, password: boolean): Promise<string> {
    const r = this.running;
    if (!r) return Promise.reject(new Error("input() works only while a cell runs."));
    if (!r.request.content.allow_stdin) return Promise.reject(new Error("This front end does not accept input (allow_stdin is false); pass the value in the cell instead."));
    this.flushStreams();
    this.post("stdin", { identities: r.request.identities, header: makeHeader("input_request", this.session), parent_header: r.request.header, content: { prompt, password } });
    const p = new Promise<string>((resolve, reject) => (this.stdinWaiter = { resolve, reject }));
    return Promise.race([p, r.aborted]);
  }

  // ---- interrupts ----

  interrupt(): void {
    Atomics.store(this.flags, 0, 1);
    const r = this.running;
    if (r && !r.abort.signal.aborted) r.abort.abort(new KeyboardInterrupt());
    if (this.stdinWaiter) {
      this.stdinWaiter.reject(new KeyboardInterrupt());
      this.stdinWaiter = null;
    }
  }

  // ---- requests ----

  private receive(channel: Channel, msg: Message): void {
    if (this.closing) return;
    if (channel === "stdin") {
      if (msg.header.msg_type === "input_reply" && this.stdinWaiter) {
        this.stdinWaiter.resolve(String(msg.content.value ?? ""));
        this.stdinWaiter = null;
      }
      return;
    }
    if (channel === "control") {
      void this.handle(channel, msg);
      return;
    }
    this.queue.push(msg);
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length) {
        await this.handle("shell", this.queue.shift()!);
        if (this.abortAfterThis) {
          this.abortAfterThis = false;
          this.abortQueued();
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private async handle(channel: Channel, msg: Message): Promise<void> {
    const type = msg.header.msg_type;
    debug(`${channel} ${type} ${msg.header.msg_id}`);
    const parent = msg.header;
    this.publish("status", { execution_state: "busy" }, parent);
    try {
      switch (type) {
        case "kernel_info_request":
          this.reply(channel, msg, "kernel_info_reply", this.kernelInfo());
          break;
        case "execute_request":
          await this.execute(msg);
          break;
        case "complete_request":
          this.reply(channel, msg, "complete_reply", await this.complete(msg));
          break;
        case "inspect_request":
          this.reply(channel, msg, "inspect_reply", await this.inspect(msg));
          break;
        case "is_complete_request":
          this.reply(channel, msg, "is_complete_reply", (await this.lang({ op: "isComplete", code: String(msg.content.code ?? "") })) as Record<string, unknown>);
          break;
        case "history_request":
          this.reply(channel, msg, "history_reply", { status: "ok", history: this.history.query(msg.content) });
          break;
        case "comm_info_request":
          this.reply(channel, msg, "comm_info_reply", { status: "ok", comms: {} });
          break;
        case "comm_open":
          // No comm targets are registered: close it, as the protocol asks.
          this.publish("comm_close", { comm_id: msg.content.comm_id, data: {} }, parent);
          break;
        case "comm_msg":
        case "comm_close":
          break;
        case "shutdown_request":
          await this.shutdown(channel, msg);
          return;
        default:
          if (type.endsWith("_request")) {
            log(`unsupported request ${type}`);
            this.reply(channel, msg, type.replace(/_request$/, "_reply"), { status: "error", ename: "NotImplemented", evalue: `${type} is not supported by this kernel.`, traceback: [] });
          } else log(`ignored ${type} on ${channel}`);
      }
    } catch (err) {
      log(`error handling ${type}: ${(err as Error).stack}`);
    }
    this.publish("status", { execution_state: "idle" }, parent);
  }

  private kernelInfo(): Record<string, unknown> {
    const tsVersion = (require("typescript/package.json") as { version: string }).version;
    return {
      status: "ok",
      protocol_version: "5.3",
      implementation: "retromae",
      implementation_version: KERNEL_VERSION,
      language_info: {
        name: "typescript",
        version: tsVersion,
        mimetype: "text/typescript",
        file_extension: ".ts",
        codemirror_mode: { name: "javascript", typescript: true },
        pygments_lexer: "typescript",
      },
      banner: `RetroMAE kernel ${KERNEL_VERSION}: TypeScript ${tsVersion} on Node.js ${process.version}. import { RetroMAE, Trainer } from "retromae" to begin.`,
      help_links: [
        { text: "RetroMAE (Xiao et al., EMNLP 2022)", url: "https://aclanthology.org/2022.emnlp-main.35/" },
        { text: "TypeScript handbook", url: "https://www.typescriptlang.org/docs/handbook/intro.html" },
        { text: "TensorFlow.js API", url: "https://js.tensorflow.org/api/latest/" },
      ],
      debugger: false,
    };
  }

  private lang(req: Omit<LanguageRequest, "id"> & Record<string, unknown>): Promise<unknown> {
    if (this.languageDead) return Promise.reject(new Error("The TypeScript checker stopped; restart the kernel (its log on stderr says why)."));
    const id = ++this.languageSeq;
    return new Promise((resolve, reject) => {
      this.languageCalls.set(id, { resolve, reject });
      this.language.postMessage({ ...req, id });
    });
  }

  private async complete(msg: Message): Promise<Record<string, unknown>> {
    const code = String(msg.content.code ?? "");
    const cursor = codePointsToIndex(code, Number(msg.content.cursor_pos ?? code.length));
    const r = (await this.lang({ op: "complete", code, cursor })) as { matches: string[]; start: number; end: number; types: { text: string; type: string; start: number; end: number }[] };
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

  private async inspect(msg: Message): Promise<Record<string, unknown>> {
    const code = String(msg.content.code ?? "");
    const cursor = codePointsToIndex(code, Number(msg.content.cursor_pos ?? code.length));
    const text = (await this.lang({ op: "inspect", code, cursor, detail: Number(msg.content.detail_level ?? 0) })) as string | null;
    return { status: "ok", found: text !== null, data: text === null ? {} : { "text/plain": text, "text/markdown": "```typescript\n" + text + "\n```" }, metadata: {} };
  }

  private async shutdown(channel: Channel, msg: Message): Promise<void> {
    const restart = !!msg.content.restart;
    this.reply(channel, msg, "shutdown_reply", { status: "ok", restart });
    this.publish("status", { execution_state: "idle" }, msg.header);
    this.closing = true;
    this.flushStreams();
    void this.language.terminate();
    this.transport.postMessage({ t: "close" } satisfies Outbound);
    setTimeout(() => exitProcess(0), 2000).unref();
  }

  // ---- execute ----

  private async execute(msg: Message): Promise<void> {
    const c = msg.content;
    const code = String(c.code ?? "");
    const silent = !!c.silent;
    const storeHistory = c.store_history === undefined ? !silent : !!c.store_history && !silent;
    const stopOnError = c.stop_on_error === undefined ? true : !!c.stop_on_error;
    if (storeHistory) this.executionCount++;
    const count = this.executionCount;
    this.outputParent = msg.header;
    if (!silent) this.publish("execute_input", { code, execution_count: count }, msg.header);
    if (storeHistory) this.history.add(count, code);

    Atomics.store(this.flags, 0, 0);
    const abort = new AbortController();
    const aborted = new Promise<never>((_, reject) => abort.signal.addEventListener("abort", () => reject(new KeyboardInterrupt()), { once: true }));
    aborted.catch(() => undefined);
    this.running = { request: msg, abort, aborted };
    const t0 = performance.now();
    let checkMs = 0;
    let checkCached = false;
    let outcome: { ok: true; value: unknown; hasResult: boolean } | { ok: false; ename: string; evalue: string; traceback: string[] };
    const payload: Record<string, unknown>[] = [];
    // IPython's `?name` / `name?`: the signature and docs in the pager.
    const help = /^\s*\?\s*([\w$.]+)\s*$/.exec(code) ?? /^\s*([\w$.]+)\s*\?\s*$/.exec(code);
    try {
      if (code.trim() === "") outcome = { ok: true, value: undefined, hasResult: false };
      else if (help) {
        const text = (await this.lang({ op: "inspect", code: help[1], cursor: help[1].length, detail: 1 })) as string | null;
        payload.push({ source: "page", data: { "text/plain": text ?? `No information about ${help[1]}.` }, start: 0 });
        outcome = { ok: true, value: undefined, hasResult: false };
      }
      else {
        const checked = (await Promise.race([this.lang({ op: "check", code }), aborted])) as CheckResult;
        debug(`checked in ${checked.checkMs.toFixed(1)} ms: ${checked.ok}`);
        checkMs = checked.checkMs;
        checkCached = checked.ok && checked.cached;
        if (!checked.ok) {
          const d = checked.diagnostics;
          outcome = {
            ok: false,
            ename: "TypeError",
            evalue: d.map((x) => `line ${x.line}, column ${x.column}: ${x.message}`).join("; "),
            traceback: d.flatMap((x) => [
              `\x1b[31mCell In[${count}], line ${x.line}, column ${x.column}\x1b[0m: \x1b[1mTS${x.code}\x1b[0m ${x.message}`,
              `    ${x.source}`,
              `    ${" ".repeat(Math.max(0, x.column - 1))}\x1b[31m^\x1b[0m`,
            ]),
          };
        } else {
          const value = await this.run(checked.compiled, count, aborted);
          outcome = { ok: true, value, hasResult: checked.compiled.hasResult };
        }
      }
    } catch (err) {
      outcome = { ok: false, ...this.describeError(err) };
    }
    const runMs = performance.now() - t0 - checkMs;
    const timing = { check_ms: round(checkMs), run_ms: round(runMs), check_cached: checkCached };

    if (outcome.ok) {
      const v = outcome.value as Record<symbol, unknown> | null | undefined;
      if (outcome.hasResult && !silent && !(v && typeof v === "object" && v[NO_RESULT])) {
        let bundle: Bundle | null = null;
        try {
          bundle = toBundle(outcome.value);
        } catch (err) {
          outcome = { ok: false, ...this.describeError(err) };
        }
        if (bundle) {
          const fig = bundle[PLOTLY_MIME] as { data?: unknown } | undefined;
          if (fig && !("text/html" in bundle)) this.sendBundle(bundle, this.nextDisplayId());
          else this.publish("execute_result", { execution_count: count, data: bundle, metadata: {} });
          if (storeHistory) this.history.setOutput(count, String(bundle["text/plain"] ?? ""));
        }
      }
    }
    this.restorePlotlyLoader();
    if (outcome.ok) {
      const userExpressions = await this.userExpressions(c.user_expressions);
      this.flushStreams();
      this.reply("shell", msg, "execute_reply", { status: "ok", execution_count: count, user_expressions: userExpressions, payload }, { retromae: timing });
    } else {
      if (!silent) this.publish("error", { ename: outcome.ename, evalue: outcome.evalue, traceback: outcome.traceback });
      this.flushStreams();
      this.reply("shell", msg, "execute_reply", { status: "error", execution_count: count, ename: outcome.ename, evalue: outcome.evalue, traceback: outcome.traceback }, { retromae: timing });
      if (stopOnError) this.abortAfterThis = true;
    }
    this.running = null;
  }

  /** After an error with stop_on_error, the execute requests already queued are answered "aborted". */
  private abortQueued(): void {
    const keep: Message[] = [];
    for (const m of this.queue.splice(0)) {
      if (m.header.msg_type !== "execute_request") {
        keep.push(m);
        continue;
      }
      this.publish("status", { execution_state: "busy" }, m.header);
      this.reply("shell", m, "execute_reply", { status: "aborted", execution_count: this.executionCount });
      this.publish("status", { execution_state: "idle" }, m.header);
    }
    this.queue.push(...keep);
  }

  private async run(compiled: Compiled, count: number, aborted: Promise<never>): Promise<unknown> {
    const filename = `__cell_${compiled.id}.ts`;
    this.cellMaps.set(filename, { label: `Cell In[${count}]`, map: compiled.map, invocationLine: compiled.js.trimEnd().split("\n").length });
    const script = new vm.Script(compiled.js, { filename });
    let promise: Promise<unknown>;
    try {
      promise = script.runInThisContext({ breakOnSigint: true }) as Promise<unknown>;
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_SCRIPT_EXECUTION_INTERRUPTED") throw new KeyboardInterrupt();
      throw err;
    }
    return Promise.race([promise, aborted]);
  }

  private async userExpressions(exprs: unknown): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    if (!exprs || typeof exprs !== "object") return out;
    for (const [name, expr] of Object.entries(exprs as Record<string, string>)) {
      try {
        const js = (await this.lang({ op: "transpileExpression", code: String(expr) })) as string;
        const value = vm.runInThisContext(js, { filename: "user_expression" });
        out[name] = { status: "ok", data: toBundle(value) ?? { "text/plain": "undefined" }, metadata: {} };
      } catch (err) {
        out[name] = { status: "error", ...this.describeError(err) };
      }
    }
    return out;
  }

  /** ename/evalue/traceback, with stack frames mapped to cell lines and kernel frames left out. */
  describeError(err: unknown): { ename: string; evalue: string; traceback: string[] } {
    if (!(err instanceof Error) && !(err && typeof err === "object" && "stack" in err)) {
      return { ename: "Error", evalue: `Uncaught ${inspect(err)}`, traceback: [`\x1b[31mUncaught\x1b[0m ${inspect(err)}`] };
    }
    const e = err as Error;
    const ename = e.name || "Error";
    const evalue = e.message ?? "";
    const frames: string[] = [];
    const lines = String(e.stack ?? "").split("\n");
    for (const line of lines) {
      const m = /^\s+at (?:(.*?) \()?(.+?):(\d+):(\d+)\)?$/.exec(line);
      if (!m) continue;
      const [, fn, file, l, col] = m;
      const cell = this.cellMaps.get(file);
      if (cell) {
        if (Number(l) >= cell.invocationLine) continue;
        const pos = mapPosition(cell.map, Number(l), Number(col));
        if (!pos) continue;
        const where = `${cell.label}, line ${pos[0]}, column ${pos[1]}`;
        const name = fn && !fn.startsWith("__rm") && fn !== "<anonymous>" && !fn.includes("__rm") ? ` in ${fn.replace(/^async /, "")}` : "";
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

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Generated (line, column) -> cell (line, column), from the per-line segment table. */
export function mapPosition(map: number[][], line: number, col: number): [number, number] | null {
  const segs = map[line - 1];
  if (!segs || segs.length === 0) return null;
  let best = 0;
  for (let i = 0; i < segs.length; i += 3) if (segs[i] <= col) best = i;
  return [segs[best + 1], segs[best + 2]];
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

/** Messages crossing threads arrive with Uint8Array identities; make them Buffers again. */
function reviveMessage(m: Message): Message {
  return { ...m, identities: m.identities.map((b) => Buffer.from(b)), buffers: (m.buffers ?? []).map((b) => Buffer.from(b)) };
}

let tsRegistered = false;
function registerTs(): void {
  if (tsRegistered || require.extensions[".ts"]) return;
  tsRegistered = true;
  require("ts-node").register({ transpileOnly: true, compilerOptions: { module: "commonjs", target: "es2022", esModuleInterop: true } });
}

/** Find an ESM package's entry from a directory (exports "import" condition, then module/main). */
function resolveEsm(spec: string, from: string): string {
  const parts = spec.startsWith("@") ? spec.split("/").slice(0, 2) : spec.split("/").slice(0, 1);
  const name = parts.join("/");
  const sub = spec.slice(name.length);
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkgDir = path.join(dir, "node_modules", name);
    const pkgFile = path.join(pkgDir, "package.json");
    if (fs.existsSync(pkgFile)) {
      const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf8"));
      const key = `.${sub}`;
      const pick = (e: unknown): string | undefined => {
        if (typeof e === "string") return e;
        if (e && typeof e === "object") {
          const o = e as Record<string, unknown>;
          if (key in o || "." in o) return pick(o[key] ?? (key === "." ? o["."] : undefined));
          return pick(o.import ?? o.node ?? o.default);
        }
        return undefined;
      };
      const target = pick(pkg.exports) ?? (sub ? sub.slice(1) : (pkg.module ?? pkg.main ?? "index.js"));
      return pathToFileURL(path.join(pkgDir, target)).href;
    }
    if (path.dirname(dir) === dir) throw new Error(`Cannot find module "${spec}" from ${from}; install it with npm (npm install ${name}).`);
  }
}

// import() that TypeScript's CommonJS output leaves alone.
const dynamicImport = new Function("u", "return import(u)") as (u: string) => Promise<unknown>;
