/**
 * Collating the next step's batches on a second thread, while the main
 * thread issues the current step (as PyTorch's DataLoader workers do).
 *
 * On a GPU the main thread's work per step is the collator's (RetroMAE's
 * masking: 2–3 ms for 16 × 128, 30–45 ms for 32 × 512 on this project's
 * 2-core machines) plus issuing the step (2–5 ms replayed); for tiny and
 * mini that host time, not the GPU, bounds the step. Here the masking
 * moves to one process-wide thread.
 *
 * A job is the collator's whole input: the examples, the generator's state
 * and every setting the draws depend on, named by a key that the caller
 * makes from them. The caller takes the result only under the same key, so
 * a ratio changed from a notebook cell, a hook that drew from the generator
 * or a new data position make the main thread collate instead: the batches,
 * the generator's state after them and the dropout seeds are the same bits
 * either way. `RETROMAE_COLLATE_AHEAD=0` turns the thread off.
 */
import * as path from "path";
import type { Worker } from "worker_threads";
import type { RngState } from "../engine/rng";
import type { BertTokenizer } from "../text/tokenizer";
import { startModuleWorker } from "../util/worker";
import type { RetroMAEBatch } from "./batch";

/** The collator's settings that a job carries (RetroMAECollator's options, less tokenizer and generator). */
export interface AheadOptions {
  maxLength: number;
  vocabSize: number;
  staticShapes: boolean;
  encoderMaskRatio: number;
  decoderMaskRatio: number;
}

/** One step's batches to make. */
export interface CollateJob {
  tokenizer: BertTokenizer;
  /** Each micro-batch's examples: token ids without special tokens, as the training corpus holds them. */
  examples: readonly (readonly Int32Array[])[];
  /** The generator's state before the first batch. */
  rng: RngState;
  options: AheadOptions;
  /** After each micro-batch, this many `rng.seeds` (the step's dropout seeds), or -1 for none. */
  seedCalls: number;
}

/** What a job made: the batches, each one's dropout seed (or null), and the generator's state after them. */
export interface Collated {
  batches: RetroMAEBatch[];
  seeds: number[] | null;
  rng: RngState;
}

export type AheadRequest =
  | { type: "tokenizer"; id: number; tokens: readonly string[]; specials: Record<"unkToken" | "sepToken" | "padToken" | "clsToken" | "maskToken", string> }
  | { type: "collate"; id: number; tokenizer: number; ids: Int32Array; sizes: number[][]; rng: RngState; options: AheadOptions; seedCalls: number };

export type AheadReply = { type: "ready" } | ({ type: "made"; id: number } & Collated) | { type: "failed"; id: number; error: string };

interface Pending {
  owner: object;
  key: string;
  result: Promise<Collated | null>;
}

export class CollateAhead {
  private worker: Worker | null = null;
  private ready = false;
  /** Why the thread is not used (it could not start, or it stopped), or null. */
  private broken: string | null = null;
  private pending: Pending | null = null;
  private readonly waiting = new Map<number, (c: Collated | null) => void>();
  /**
   * The tokenizers sent to the running thread, by vocabulary (its token
   * list) and special tokens: tokenizers made again over the same vocabulary
   * (`BertTokenizer.bertBaseUncased()` in each run of a loop) share one copy.
   */
  private tokenizerIds = new WeakMap<readonly string[], Map<string, number>>();
  private seq = 0;
  /** Resolves true when the running thread takes jobs, false if it stops first. */
  private readiness: Promise<boolean> | null = null;
  private signalReady: ((ok: boolean) => void) | null = null;

  /** Whether jobs go to the thread (false once it failed, or with RETROMAE_COLLATE_AHEAD=0). */
  get enabled(): boolean {
    return this.disabledReason === null;
  }

  /** Why jobs are not sent to the thread, or null while they are. */
  get disabledReason(): string | null {
    return process.env.RETROMAE_COLLATE_AHEAD === "0" ? "RETROMAE_COLLATE_AHEAD=0" : this.broken;
  }

  /** Start making `job` on the thread, under `owner` and `key`; it replaces any job not taken. */
  start(owner: object, key: string, job: CollateJob): void {
    if (!this.enabled) return;
    const worker = this.thread();
    if (!worker) return;
    this.pending = null;
    const id = ++this.seq;
    const sizes = job.examples.map((batch) => batch.map((e) => e.length));
    const ids = new Int32Array(sizes.flat().reduce((a, b) => a + b, 0));
    let at = 0;
    for (const e of job.examples.flat()) {
      ids.set(e, at);
      at += e.length;
    }
    const request: AheadRequest = { type: "collate", id, tokenizer: this.tokenizerId(worker, job.tokenizer), ids, sizes, rng: job.rng, options: job.options, seedCalls: job.seedCalls };
    const result = new Promise<Collated | null>((resolve) => this.waiting.set(id, resolve));
    worker.ref(); // while a job is out, the thread keeps the process alive: its caller awaits the result
    worker.postMessage(request, [ids.buffer]);
    this.pending = { owner, key, result };
  }

  /**
   * The batches of the job started under `owner` and `key`, or null: no such
   * job, the thread was not running yet, or the job failed (the caller then
   * collates, and meets the same error with its own message).
   */
  async take(owner: object, key: string | null): Promise<Collated | null> {
    const p = this.pending;
    this.pending = null;
    if (!p || p.owner !== owner || p.key !== key || !this.ready) return null;
    return p.result;
  }

  /**
   * Start the thread if it is not running, and resolve when it takes jobs:
   * true, or false where it is off or could not start. Jobs started before
   * then are made by the main thread (their `take` gives null), so a caller
   * that wants the first steps made ahead (a benchmark, a test) awaits this.
   */
  async whenReady(): Promise<boolean> {
    if (!this.enabled) return false;
    if (this.ready) return true;
    const w = this.thread();
    if (!w) return false;
    w.ref();
    try {
      return await this.readiness!;
    } finally {
      if (this.waiting.size === 0) w.unref();
    }
  }

  /** Drop `owner`'s job not taken (a trainer disposed of: the job no longer holds it). */
  forget(owner: object): void {
    if (this.pending?.owner === owner) this.pending = null;
  }

  /** Stop the thread (a new job starts another). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.ready = false;
    this.pending = null;
    this.settleAll();
    if (w) await w.terminate();
  }

  private thread(): Worker | null {
    if (this.worker) return this.worker;
    try {
      const w = startModuleWorker(path.join(__dirname, "collate-worker"), __filename.endsWith(".ts"));
      w.unref();
      this.tokenizerIds = new WeakMap();
      this.readiness = new Promise<boolean>((resolve) => (this.signalReady = resolve));
      w.on("message", (r: AheadReply) => {
        if (r.type === "ready") {
          this.ready = true;
          this.signalReady?.(true);
          return;
        }
        const resolve = this.waiting.get(r.id);
        this.waiting.delete(r.id);
        if (this.waiting.size === 0) w.unref();
        resolve?.(r.type === "made" ? { batches: r.batches, seeds: r.seeds, rng: r.rng } : null);
      });
      w.on("error", (e) => this.stopped(w, `the collating thread failed: ${e?.message ?? e}`));
      w.on("exit", (code) => this.stopped(w, `the collating thread exited (${code})`));
      this.worker = w;
      return w;
    } catch (err) {
      this.broken = `the collating thread could not start: ${(err as Error).message}`;
      return null;
    }
  }

  private stopped(w: Worker, why: string): void {
    if (this.worker !== w) return; // closed on purpose
    this.worker = null;
    this.ready = false;
    this.broken = why;
    this.settleAll();
  }

  /** Every waiting caller gets null (and whenReady false): the thread is gone. */
  private settleAll(): void {
    this.signalReady?.(false);
    this.signalReady = null;
    for (const resolve of this.waiting.values()) resolve(null);
    this.waiting.clear();
  }

  private tokenizerId(worker: Worker, tok: BertTokenizer): number {
    const { unkToken, sepToken, padToken, clsToken, maskToken } = tok;
    const specials = { unkToken, sepToken, padToken, clsToken, maskToken };
    const key = JSON.stringify(specials);
    let sent = this.tokenizerIds.get(tok.vocab.tokens);
    if (!sent) this.tokenizerIds.set(tok.vocab.tokens, (sent = new Map()));
    let id = sent.get(key);
    if (id === undefined) {
      id = ++this.seq;
      sent.set(key, id);
      worker.postMessage({ type: "tokenizer", id, tokens: tok.vocab.tokens, specials } satisfies AheadRequest);
    }
    return id;
  }
}

let shared: CollateAhead | null = null;

/** The process's collating thread (started with its first job; it does not keep the process alive while idle). */
export function collateAhead(): CollateAhead {
  return (shared ??= new CollateAhead());
}
