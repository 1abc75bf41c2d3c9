/**
 * How Node waits for the GPU.
 *
 * While a buffer map or any other Dawn promise is pending, dawn.node's
 * AsyncRunner processes Dawn's events and queues itself again with the
 * global `setImmediate`, tick after tick, until the promise settles: a busy
 * loop that holds one core at 100% for as long as the GPU works.
 *
 * - On a hardware adapter that core is not the GPU, and the loop sees the
 *   answer within microseconds: Dawn's own loop stays ("spin").
 * - On a software adapter (SwiftShader, lavapipe, llvmpipe) the GPU is this
 *   CPU: the loop takes a core from the threads that run the shaders. There
 *   ("timer") Dawn's next tick is queued on a 1 ms timer instead. Measured on
 *   this project's 2-core machines, the SwiftShader run of
 *   test/engine/webgpu.test.ts took 337–363 s spinning and 237–241 s with
 *   the timer, the same tests passing (lavapipe: 78.4 and 79.9 s, no gain).
 * - Dawn's Null backend executes nothing and answers at once: it spins, so
 *   `bench host` times the host's work, not a timer's.
 *
 * RETROMAE_WEBGPU_POLL=spin or timer overrides the choice (auto, the default,
 * makes it by adapter). Only Dawn's tick is delayed: the binding queues a
 * native function of no name and no parameters, which no other caller of
 * setImmediate passes (a promise's resolver, also native, takes one).
 */
import { WebGPUUnavailable } from "./dawn";

export type PollMode = "spin" | "timer";

let mode: PollMode = "spin";
let installed = false;
let timerTicks = 0;

/** RETROMAE_WEBGPU_POLL, checked: "auto" (unset) or the mode it names. Throws one sentence on anything else. */
export function pollChoice(env: NodeJS.ProcessEnv = process.env): PollMode | "auto" {
  const v = env.RETROMAE_WEBGPU_POLL;
  if (v === undefined || v === "" || v === "auto") return "auto";
  if (v === "spin" || v === "timer") return v;
  throw new WebGPUUnavailable(`RETROMAE_WEBGPU_POLL is "${v}"; set it to spin (Dawn's own loop), timer (a 1 ms timer between Dawn's ticks) or auto (timer on a software adapter, the default), or unset it`);
}

/** The mode for an adapter: a timer on a software adapter that computes (not Dawn's Null backend), Dawn's loop elsewhere. */
export function pollFor(adapter: { software: boolean; backend: string }, choice: PollMode | "auto" = pollChoice()): PollMode {
  if (choice !== "auto") return choice;
  return adapter.software && adapter.backend !== "null" ? "timer" : "spin";
}

/** Whether `fn` is dawn.node's tick: native, no name, no parameters. */
function isDawnTick(fn: unknown): boolean {
  return typeof fn === "function" && fn.name === "" && fn.length === 0 && Function.prototype.toString.call(fn).endsWith("{ [native code] }");
}

/** Put a setImmediate on globalThis that, in timer mode, queues Dawn's tick on a timer (once per process; other callers unchanged). */
function install(): void {
  if (installed) return;
  installed = true;
  const immediate = globalThis.setImmediate as unknown as (this: unknown, fn: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
  const wrapped = function (this: unknown, fn: (...args: unknown[]) => void, ...args: unknown[]) {
    if (mode === "timer" && isDawnTick(fn)) {
      timerTicks++;
      return setTimeout(fn, 1, ...args);
    }
    return immediate.call(this, fn, ...args);
  };
  // util.promisify's custom form and the rest of setImmediate's own properties stay as they were
  Object.defineProperties(wrapped, Object.getOwnPropertyDescriptors(immediate));
  globalThis.setImmediate = wrapped as unknown as typeof setImmediate;
}

/** Set how Node waits for the GPU from now on; returns the mode before. */
export function setDawnPolling(next: PollMode): PollMode {
  const before = mode;
  if (next === "timer") install();
  mode = next;
  return before;
}

/** The mode in force, and how many of Dawn's ticks went on a timer so far. */
export function dawnPolling(): { mode: PollMode; timerTicks: number } {
  return { mode, timerTicks };
}

/** Run `fn` with Dawn's ticks in `m`, then put the mode back (bench gpu times steps both ways). */
export async function withDawnPolling<T>(m: PollMode, fn: () => Promise<T>): Promise<T> {
  const before = setDawnPolling(m);
  try {
    return await fn();
  } finally {
    setDawnPolling(before);
  }
}
