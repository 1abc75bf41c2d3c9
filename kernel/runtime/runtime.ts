/**
 * What cells run in: the globals they see (display, clearOutput, input,
 * interruptSignal, require, and the `__rm` hooks the compiled code calls),
 * the running cell with its abort signal, interrupts, stdin, and running a
 * compiled cell in this realm (vm.Script#runInThisContext), so its values
 * are ordinary objects to the library and to tfjs.
 */
import * as vm from "vm";
import { emptyCache, loadLibrary, releaseFreeMemory } from "./bridge";
import { toBytes, type CommManager } from "./comms";
import type { DisplayPublisher } from "./display";
import type { Compiled } from "../language/language";
import type { Publish } from "../protocol/messages";
import { Flag, FLAG_SLOTS } from "../protocol/flags";
import { CellModules } from "./modules";
import { Tracebacks } from "./traceback";
import { KernelWidgetHost } from "./widgets";
import type { Message } from "../protocol/wire";

/** The error a cell sees when it is interrupted. */
export class KeyboardInterrupt extends Error {
  constructor() {
    super("The cell was interrupted.");
    this.name = "KeyboardInterrupt";
  }
}

/** Thrown out of a cell that called process.exit(), to stop it while the kernel shuts down. */
class KernelExit extends Error {}

interface Running {
  request: Message;
  abort: AbortController;
  aborted: Promise<never>;
}

export interface RuntimeHooks {
  publish: Publish;
  display: DisplayPublisher;
  comms: CommManager;
  /** Send an input_request on stdin for the running request. */
  requestInput(request: Message, prompt: string, password: boolean): void;
  /** process.exit() in a cell: shut the kernel down cleanly with this code. */
  exit(code: number): void;
}

/**
 * What an idle kernel gives back, and when (ms after a cell ends, unless another begins first): free C-heap memory
 * soon (off the path of cells run back to back); the native backend's buffer pool after a pause a user takes, then
 * that memory too once the collector has freed it. The next cell's first step pays for fresh pages instead.
 */
export interface IdleRelease {
  releaseMs: number;
  emptyCacheMs: number;
}
const IDLE_RELEASE: IdleRelease = { releaseMs: 250, emptyCacheMs: 30_000 };
/** The collector frees array buffers' memory in the background, just after a collection. */
const AFTER_COLLECTION_MS = 500;

export class Runtime {
  /** Shared with the transport thread; the slots are flags.ts's `Flag`. */
  readonly flag = new SharedArrayBuffer(4 * FLAG_SLOTS);
  private readonly flags = new Int32Array(this.flag);
  private running: Running | null = null;
  private cells = 0;
  /** The idle kernel's memory releases (IdleRelease), due after a cell ends. */
  private idleTimers: NodeJS.Timeout[] = [];
  private stdinWaiter: { resolve: (v: string) => void; reject: (e: Error) => void } | null = null;
  readonly tracebacks = new Tracebacks();
  readonly modules: CellModules;
  /** Widgets (lib/widgets) on comms, under the widget protocol 2.1.0. */
  readonly widgets: KernelWidgetHost;

  constructor(
    private readonly hooks: RuntimeHooks,
    cwd: string,
    private readonly idle: IdleRelease = IDLE_RELEASE,
  ) {
    this.widgets = new KernelWidgetHost(hooks.comms);
    this.modules = new CellModules(cwd, () => loadLibrary({ display: hooks.display.forLibrary(), signal: () => this.running?.abort.signal, widgets: this.widgets }));
  }

  /** Put the cell globals on globalThis. */
  install(): void {
    const g = globalThis as Record<string, unknown>;
    const flags = this.flags;
    const current = () => this.running;
    g.__rmf = flags;
    g.__rm = {
      stop(): never {
        throw new KeyboardInterrupt();
      },
      w<T>(value: T): T | Promise<T> {
        const r = current();
        if (Atomics.load(flags, Flag.Requested)) throw new KeyboardInterrupt();
        if (!r || !value || typeof (value as { then?: unknown }).then !== "function") return value;
        return Promise.race([value, r.aborted]);
      },
      load: (spec: string) => this.modules.load(spec),
      imp: (spec: unknown) => this.modules.importNamespace(spec),
      require: (spec: string) => this.modules.requireModule(spec),
      def(m: Record<string, unknown>): unknown {
        if (m && ((m as Record<symbol, unknown>)[Symbol.toStringTag] === "Module" || m.__esModule)) return m.default;
        return m;
      },
    };
    g.display = this.hooks.display.cellApi();
    g.clearOutput = (wait = false) => this.hooks.publish("clear_output", { wait });
    // Raw iopub messages (display, update and clear messages display() does not cover), as Deno.jupyter.broadcast.
    g.jupyter = {
      broadcast: (msgType: string, content: Record<string, unknown>, options: { metadata?: Record<string, unknown>; buffers?: Parameters<CommManager["open"]>[3] } = {}) => {
        if (typeof msgType !== "string" || !msgType) throw new TypeError('jupyter.broadcast needs a message type, e.g. jupyter.broadcast("display_data", { data: { "text/plain": "hi" }, metadata: {} }).');
        if (!content || typeof content !== "object" || Array.isArray(content)) throw new TypeError(`jupyter.broadcast("${msgType}", content) needs the content as an object.`);
        const parent = this.running?.request.header;
        (this.hooks.publish as (t: string, c: unknown, p?: unknown, m?: unknown, b?: Buffer[]) => void)(msgType, content, parent, options.metadata ?? {}, toBytes(options.buffers));
      },
    };
    const comms = this.hooks.comms;
    g.comm = {
      register: (target: string, handler: Parameters<CommManager["register"]>[1]) => comms.register(target, handler),
      unregister: (target: string) => comms.unregister(target),
      open: (target: string, data?: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: Parameters<CommManager["open"]>[3]) => comms.open(target, data, metadata, buffers),
    };
    g.input = (prompt = "", options: { password?: boolean } = {}) => this.input(prompt, !!options.password);
    // The browser's (and Deno's) dialogs, over stdin. A front end that refuses stdin is a cancelled dialog.
    g.prompt = async (message = "", defaultValue?: string): Promise<string | null> => {
      if (!this.stdinAllowed()) return null;
      const value = await this.input(`${message} `, false);
      return value === "" && defaultValue !== undefined ? String(defaultValue) : value;
    };
    g.confirm = async (message = ""): Promise<boolean> => {
      if (!this.stdinAllowed()) return false;
      return /^\s*y(es)?\s*$/i.test(await this.input(`${message} [y/N] `, false));
    };
    g.alert = async (message = ""): Promise<void> => {
      if (!this.stdinAllowed()) {
        process.stdout.write(`${message}\n`);
        return;
      }
      await this.input(`${message} [Enter] `, false);
    };
    g.require = this.modules.require;
    // process.exit() in a cell ends the kernel cleanly: the threads that own native sockets stop first.
    process.exit = ((code?: number) => {
      this.hooks.exit(code ?? 0);
      throw new KernelExit(`The kernel is exiting (process.exit(${code ?? ""})).`);
    }) as typeof process.exit;
    Object.defineProperty(g, "interruptSignal", { configurable: true, get: () => this.running?.abort.signal ?? new AbortController().signal });
  }

  /** Start a cell: clear the interrupt flag and make a fresh abort signal. */
  begin(request: Message): Promise<never> {
    this.cancelIdleRelease();
    Atomics.store(this.flags, Flag.Requested, 0);
    Atomics.store(this.flags, Flag.Cell, ++this.cells);
    const abort = new AbortController();
    const aborted = new Promise<never>((_, reject) => abort.signal.addEventListener("abort", () => reject(new KeyboardInterrupt()), { once: true }));
    aborted.catch(() => undefined);
    this.running = { request, abort, aborted };
    return aborted;
  }

  end(): void {
    this.running = null;
    Atomics.store(this.flags, Flag.Cell, 0);
    this.cancelIdleRelease();
    const later = (ms: number, f: () => void) => this.idleTimers.push(setTimeout(f, ms).unref());
    later(this.idle.releaseMs, releaseFreeMemory);
    later(this.idle.emptyCacheMs, () => {
      emptyCache();
      later(AFTER_COLLECTION_MS, releaseFreeMemory);
    });
  }

  private cancelIdleRelease(): void {
    for (const t of this.idleTimers) clearTimeout(t);
    this.idleTimers = [];
  }

  /** Run a compiled cell; resolves with its last expression's value, or rejects with KeyboardInterrupt. */
  async run(compiled: Compiled, label: string): Promise<unknown> {
    const filename = `__cell_${compiled.id}.ts`;
    this.tracebacks.register(filename, label, compiled.map, compiled.js);
    const script = new vm.Script(compiled.js, { filename });
    let promise: Promise<unknown>;
    try {
      promise = script.runInThisContext({ breakOnSigint: true }) as Promise<unknown>;
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_SCRIPT_EXECUTION_INTERRUPTED") {
        // The script's SIGINT watchdog took the signal, so no listener call will follow for it.
        Atomics.store(this.flags, Flag.SignalFor, 0);
        throw new KeyboardInterrupt();
      }
      throw err;
    }
    return this.running ? Promise.race([promise, this.running.aborted]) : promise;
  }

  /** Evaluate a transpiled expression (user_expressions) in the cells' realm. */
  evaluate(js: string): unknown {
    return vm.runInThisContext(js, { filename: "user_expression" });
  }

  /** The transport's interrupt_request, for the cell that ran when it came: a later cell is not interrupted. */
  interruptCell(cell: number): void {
    if (cell === Atomics.load(this.flags, Flag.Cell)) this.interrupt();
  }

  /**
   * process.on("SIGINT"). A signal the transport raised for a message
   * interrupt is tagged with its cell and dropped when it arrives after that
   * cell ended; untagged signals (kill -INT, a front end in signal mode)
   * interrupt whatever runs.
   */
  signal(): void {
    const tag = Atomics.exchange(this.flags, Flag.SignalFor, 0);
    if (tag !== 0 && tag - 1 !== Atomics.load(this.flags, Flag.Cell)) return;
    this.interrupt();
  }

  interrupt(): void {
    Atomics.store(this.flags, Flag.Requested, 1);
    const r = this.running;
    if (r && !r.abort.signal.aborted) r.abort.abort(new KeyboardInterrupt());
    if (this.stdinWaiter) {
      this.stdinWaiter.reject(new KeyboardInterrupt());
      this.stdinWaiter = null;
    }
  }

  /** An input_reply arrived on stdin. */
  inputReply(value: string): void {
    if (!this.stdinWaiter) return;
    this.stdinWaiter.resolve(value);
    this.stdinWaiter = null;
  }

  /** Whether the running request lets the kernel ask through stdin. */
  private stdinAllowed(): boolean {
    return !!this.running?.request.content.allow_stdin;
  }

  private input(prompt: string, password: boolean): Promise<string> {
    const r = this.running;
    if (!r) return Promise.reject(new Error("input() works only while a cell runs."));
    if (!r.request.content.allow_stdin) return Promise.reject(new Error("This front end does not accept input (allow_stdin is false); pass the value in the cell instead."));
    this.hooks.requestInput(r.request, prompt, password);
    const p = new Promise<string>((resolve, reject) => (this.stdinWaiter = { resolve, reject }));
    return Promise.race([p, r.aborted]);
  }
}
