/// <reference types="@webgpu/types" />
/**
 * The `webgpu` backend: @tensorflow/tfjs-backend-webgpu on a device that
 * Dawn opens (./dawn.ts), with this project's kernels (./kernels.ts).
 *
 * tfjs-webgpu registers itself only where `navigator.gpu` exists (a
 * browser); here the backend is registered by hand on the device opened with
 * the adapter's limits. Its constructor checks `navigator.gpu`, so that is
 * shown to it for the call and taken away again: other code reads a defined
 * `navigator` as "a browser".
 *
 * Device errors (validation, out of memory, a lost device) arrive
 * asynchronously. They are kept here; `takeDeviceError()` hands the first to
 * whoever checks next (the trainer, after each step's read).
 */
import * as tf from "../tf";
import type { TensorInfo } from "@tensorflow/tfjs-core";
import { adapterInfo, installGlobals, loadDawn, LimitsChoice, openDevice, OpenedDevice, robustnessWanted, WebGPUUnavailable } from "./dawn";
import { dawnPolling, pollChoice, pollFor, PollMode, setDawnPolling } from "./poll";
import { boundReadsOfB } from "./dense";
import { registerWebGPUKernels } from "./kernels";
import { PoolTrimmer } from "./pool";
import { releaseReplays } from "./replay";
import type { StepRecorder } from "./replay";

export interface WebGPUState extends Omit<OpenedDevice, "gpu" | "device" | "adapter"> {
  /** tfjs-backend-webgpu's version. */
  version: string;
  /** How Node waits for the GPU (./poll.ts): Dawn's busy loop, or a timer between its ticks on a software adapter. */
  poll: PollMode;
}

let opened: OpenedDevice | null = null;
/** What the open device was asked for: a different request opens a new one. */
let openedFor = "";
let deviceError: string | null = null;
let pool: PoolTrimmer | null = null;

/** The open device's description, or null before the webgpu backend starts. */
export function webgpuState(): WebGPUState | null {
  if (!opened) return null;
  const { summary, limits, robustness } = opened;
  return { summary, limits, robustness, poll: dawnPolling().mode, version: (require("@tensorflow/tfjs-backend-webgpu/package.json") as { version: string }).version };
}

/** The first device error since the last call (out of memory, validation, device lost), or null. */
export function takeDeviceError(): string | null {
  const e = deviceError;
  deviceError = null;
  return e;
}

/** How a recorded device error that was an out-of-memory begins (takeDeviceError), before the device's own words. */
export const GPU_OUT_OF_MEMORY = "the GPU reported out of memory: ";

/** An error Dawn reports about an object made invalid by an earlier error: it says nothing the first did not. */
const CONSEQUENCE = /is invalid due to a previous error/;

function watch(device: GPUDevice): void {
  const record = (what: string) => {
    deviceError ??= what.split("\n")[0].trim();
  };
  let toldOutOfMemory = false;
  device.addEventListener("uncapturederror", (ev: Event) => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    const message = err?.message ?? String(err);
    const outOfMemory = !!err && !!err.constructor && err.constructor.name === "GPUOutOfMemoryError";
    // (an object made invalid by an earlier error is not recorded: the earlier error was, when it happened, and a
    // consequence that arrives after a run was stopped for it would stop the next run)
    if (!CONSEQUENCE.test(message)) record(`${outOfMemory ? GPU_OUT_OF_MEMORY : "the GPU reported error: "}${message}`);
    // Dawn prints every uncaught error in full unless the event is cancelled. The trainer, the
    // encoder and fine-tuning check for the recorded error after each step or batch and stop with
    // one sentence that says what to change; what remains of Dawn's output is one line for the first
    // out-of-memory (so code of the user's own that never checks is not left silent) and, for a
    // validation error of this project's making (a bug), Dawn's full report.
    if (CONSEQUENCE.test(message)) {
      ev.preventDefault();
    } else if (outOfMemory) {
      ev.preventDefault();
      if (!toldOutOfMemory) process.stderr.write(`webgpu: the GPU is out of memory (${message.split("\n")[0].trim()}); what needed the memory has no result.\n`);
      toldOutOfMemory = true;
    }
  });
  void device.lost.then((info) => {
    if (info.reason !== "destroyed") record(`the GPU device was lost: ${info.message || info.reason}`);
  });
}


/**
 * Whether an error (or a device's recorded one) is running out of memory, as
 * tfjs's backends, Dawn, WebAssembly and V8 word it: the GPU's, wasm's heap or
 * the host's.
 */
export function isOutOfMemory(err: unknown): boolean {
  return /out of memory|\bOOM\b|Cannot allocate|failed to allocate|memory access out of bounds|Array buffer allocation failed|Invalid typed array length|WebAssembly.Memory/i.test(err instanceof Error ? err.message : String(err));
}

/** What to do after a device error that is not out of memory (a lost device, a validation error): no smaller batch helps. */
export const DEVICE_ERROR_FIX = "the GPU may be unusable now, so restart the kernel (or the script) and run it again; if it fails the same way, RETROMAE_WEBGPU_ROBUSTNESS=1 turns Dawn's bounds checks on, and RETROMAE_BACKEND=native uses the CPU";

/**
 * Throw one sentence when the device reported an error since the last check
 * (out of memory, a lost device, a validation error): `what` names the work
 * that ran ("Encoding a batch of 64 × 512 tokens"), `fix` what to change when
 * it ran out of memory (DEVICE_ERROR_FIX for the others). Nothing happens off
 * webgpu or when there was no error.
 */
export function throwIfDeviceError(what: string, fix: string): void {
  const e = takeDeviceError();
  if (e) throw new DeviceFailure(`${what} failed: ${e.replace(/[.\s]+$/, "")}; ${isOutOfMemory(e) ? fix : DEVICE_ERROR_FIX}.`);
}

/**
 * What to throw for an error caught around GPU work: out of memory as thrown
 * by tfjs (a buffer it could not allocate) becomes the same one sentence as
 * throwIfDeviceError's, the device's record of it taken; anything else is
 * passed on as it is.
 */
export function asDeviceFailure(err: unknown, what: string, fix: string): unknown {
  if (err instanceof DeviceFailure || !isOutOfMemory(err)) return err;
  takeDeviceError();
  const first = String(err instanceof Error ? err.message : err).split("\n")[0].trim();
  return new DeviceFailure(`${what} failed: the ${tf.getBackend()} backend ran out of memory (${first}); ${fix}.`);
}

/** What throwIfDeviceError throws: the sentence is final, callers pass it on unchanged. */
export class DeviceFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeviceFailure";
  }
}

/**
 * Start tfjs's webgpu backend on a Dawn device and make it current.
 * `allowSoftware` false refuses SwiftShader and other software adapters (auto
 * does that: the native CPU backend is faster than a CPU emulating a GPU).
 * Throws WebGPUUnavailable with one sentence.
 */
export async function startWebGPU(options: { allowSoftware: boolean; limits?: LimitsChoice; adapterName?: string }): Promise<WebGPUState> {
  const robustness = robustnessWanted();
  const poll = pollChoice();
  const request = JSON.stringify([options.limits ?? "adapter", options.adapterName ?? process.env.RETROMAE_WEBGPU_ADAPTER ?? "", robustness]);
  if (opened && openedFor === request && tf.findBackend("webgpu") && (options.allowSoftware || !opened.summary.software)) {
    await tf.setBackend("webgpu");
    setDawnPolling(pollFor(opened.summary, poll));
    return webgpuState()!;
  }
  const dawn = await loadDawn();
  installGlobals(dawn);
  const dev = await openDevice({ adapterName: options.adapterName, limits: options.limits, robustness });
  if (dev.summary.software && !options.allowSoftware) {
    dev.device.destroy();
    throw new WebGPUUnavailable(
      `the only WebGPU adapter is software (${dev.summary.description || dev.summary.device}), slower than the native CPU backend; use backend.use("webgpu") to run on it anyway`,
    );
  }
  let webgpu: { WebGPUBackend: new (device: GPUDevice, info?: GPUAdapterInfo) => tf.KernelBackend };
  try {
    webgpu = require("@tensorflow/tfjs-backend-webgpu");
  } catch (err) {
    dev.device.destroy();
    throw new WebGPUUnavailable(`@tensorflow/tfjs-backend-webgpu failed to load (${String((err as Error).message).split("\n")[0]}); reinstall with npm ci`);
  }
  if (tf.findBackend("webgpu")) tf.removeBackend("webgpu");
  if (opened) opened.device.destroy();
  opened = dev;
  openedFor = request;
  watch(dev.device);
  tf.registerBackend("webgpu", () => {
    const g = globalThis as { navigator?: unknown };
    const had = Object.getOwnPropertyDescriptor(g, "navigator");
    Object.defineProperty(g, "navigator", { value: { gpu: { requestAdapter: () => Promise.resolve(dev.adapter) } }, configurable: true, writable: true });
    try {
      return new webgpu.WebGPUBackend(dev.device, adapterInfo(dev.adapter));
    } finally {
      if (had) Object.defineProperty(g, "navigator", had);
      else delete g.navigator;
    }
  });
  setDawnPolling(pollFor(dev.summary, poll));
  registerWebGPUKernels(dev.limits.maxStorageBuffersPerShaderStage);
  const ok = await tf.setBackend("webgpu");
  if (!ok) throw new WebGPUUnavailable(`tfjs's webgpu backend did not start on ${dev.summary.device || dev.summary.description}`);
  pool = PoolTrimmer.attach(tf.findBackend("webgpu"));
  beforeEveryProgram(tf.findBackend("webgpu"), refuseEmptyInputs, boundReadsOfB);
  return webgpuState()!;
}

/** A tfjs program as the backend's runWebGPUProgram gets it, with the fields read here. */
type Program = { shaderKey: string; outputShape?: number[]; getUserCode(): string };

/** Pass every program the backend runs, with its inputs, through each check or edit first (before tfjs builds its shader). */
function beforeEveryProgram(backend: unknown, ...steps: ((program: Program, inputs: TensorInfo[]) => void)[]): void {
  const b = backend as { runWebGPUProgram?: (program: object, inputs: TensorInfo[], ...rest: unknown[]) => TensorInfo } | undefined;
  const run = b?.runWebGPUProgram;
  if (!b || !run) return;
  b.runWebGPUProgram = function (this: unknown, program: object, inputs: TensorInfo[], ...rest: unknown[]) {
    for (const step of steps) step(program as Program, inputs);
    return run.call(this, program, inputs, ...rest);
  };
}

/**
 * WebGPU rejects a dispatch that binds an empty buffer (a validation error,
 * reported later and elsewhere), and the output then keeps whatever its
 * pooled buffer held: a wrong value, silently. Every program binds its
 * inputs, so a program with an empty input and a non-empty output (an op
 * tfjs-webgpu has no case for, such as a max over no elements) stops here
 * with one sentence instead. This project's kernels and the sums and matmuls
 * it takes over handle empty inputs before they get here.
 */
function refuseEmptyInputs(program: Program, inputs: TensorInfo[]): void {
  const size = tf.util.sizeFromShape;
  const empty = inputs.find((t) => !(size(t.shape) > 0));
  const { outputShape, shaderKey } = program;
  if (empty && outputShape && size(outputShape) !== 0) {
    const name = program.constructor.name !== "Object" ? program.constructor.name : String(shaderKey ?? "a program");
    throw new Error(
      `${name} on webgpu got an empty input [${empty.shape.join(", ")}] for an output of [${outputShape.join(", ")}]: WebGPU cannot bind an empty buffer, so skip this op where its input is empty, or run it on the native backend (RETROMAE_BACKEND=native).`,
    );
  }
}

/**
 * Release the device so the process can exit (Dawn keeps Node's event loop
 * alive while a device lives). Later use of the backend starts a new one.
 */
export function stopWebGPU(): void {
  if (!opened) return;
  if (tf.findBackend("webgpu")) tf.removeBackend("webgpu");
  opened.device.destroy();
  opened = null;
  pool = null;
}

/**
 * End a round of work (a training step, an encoded batch) on webgpu: give the
 * device back the pooled buffers of shapes that neither this round nor the
 * one before used (./pool.ts); with `all`, every free buffer (the next round
 * has shapes of its own). Returns the bytes released; 0 off webgpu.
 */
export function trimGpuPool(all = false): number {
  return pool && tf.getBackend() === "webgpu" ? pool.trim(all) : 0;
}

/**
 * Before work with a working set of its own (encoding, fine-tuning, a fit):
 * give the GPU back every free pooled buffer, and the buffers that recorded
 * steps hold, but `keep`'s (a trainer's own). What ran before (a probe's
 * top-k, another trainer's recorded step) otherwise holds memory that this
 * work cannot use, and a batch that fits runs out of memory. Returns the
 * bytes released; 0 off webgpu.
 */
export function freeGpuMemory(keep: StepRecorder | null = null): number {
  return tf.getBackend() === "webgpu" ? releaseReplays(keep) + trimGpuPool(true) : 0;
}

/**
 * Whether the current backend is webgpu on Dawn's Null device, which
 * validates every command and runs none: what it reads back was never
 * computed (for timing the host's side of a step, and rehearsing code paths).
 */
export function computesNothing(): boolean {
  return !!opened && opened.summary.backend === "null" && tf.getBackend() === "webgpu";
}

/**
 * The largest buffer the device takes, in float32 elements: a tensor larger
 * than this cannot exist on this device. Null off webgpu.
 */
export function maxTensorElements(): number | null {
  if (!opened || tf.getBackend() !== "webgpu") return null;
  return Math.floor(Math.min(opened.limits.maxBufferSize, opened.limits.maxStorageBufferBindingSize) / 4);
}

/**
 * The largest of a pass's tensors ([description, float32 elements]) when it
 * exceeds the device's largest buffer, with that limit in elements and
 * `fits(n)`: how much of a size n that the tensor grows with (a batch, a
 * length) fits; null when all fit, and off webgpu. Callers check before
 * queuing anything: the device would otherwise answer with a validation
 * error, asynchronously.
 */
export function overBufferLimit(tensors: readonly (readonly [string, number])[]): { what: string; need: number; limit: number; fits: (n: number) => number } | null {
  const limit = maxTensorElements();
  if (limit === null || tensors.length === 0) return null;
  const [what, need] = tensors.reduce((a, b) => (b[1] > a[1] ? b : a));
  return need > limit ? { what, need, limit, fits: (n) => Math.floor((n * limit) / need) } : null;
}

/** float32 elements as MiB, rounded up, for sentences about memory. */
export const mibOf = (elements: number) => `${Math.ceil((elements * 4) / 2 ** 20)} MiB`;
