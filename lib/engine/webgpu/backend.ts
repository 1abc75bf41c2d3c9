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
import { adapterInfo, installGlobals, loadDawn, LimitsChoice, openDevice, OpenedDevice, WebGPUUnavailable } from "./dawn";
import { registerWebGPUKernels } from "./kernels";
import { PoolTrimmer } from "./pool";

export interface WebGPUState extends Omit<OpenedDevice, "gpu" | "device" | "adapter"> {
  /** tfjs-backend-webgpu's version. */
  version: string;
}

let opened: OpenedDevice | null = null;
/** What the open device was asked for: a different request opens a new one. */
let openedFor = "";
let deviceError: string | null = null;
let pool: PoolTrimmer | null = null;

/** The open device's description, or null before the webgpu backend starts. */
export function webgpuState(): WebGPUState | null {
  if (!opened) return null;
  const { summary, limits } = opened;
  return { summary, limits, version: (require("@tensorflow/tfjs-backend-webgpu/package.json") as { version: string }).version };
}

/** The first device error since the last call (out of memory, validation, device lost), or null. */
export function takeDeviceError(): string | null {
  const e = deviceError;
  deviceError = null;
  return e;
}

function watch(device: GPUDevice): void {
  const record = (what: string) => {
    deviceError ??= what.split("\n")[0].trim();
  };
  device.addEventListener("uncapturederror", (ev: Event) => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    const kind = err && err.constructor && err.constructor.name === "GPUOutOfMemoryError" ? "out of memory" : "error";
    record(`the GPU reported ${kind}: ${err?.message ?? String(err)}`);
  });
  void device.lost.then((info) => {
    if (info.reason !== "destroyed") record(`the GPU device was lost: ${info.message || info.reason}`);
  });
}

/**
 * Start tfjs's webgpu backend on a Dawn device and make it current.
 * `allowSoftware` false refuses SwiftShader and other software adapters (auto
 * does that: the native CPU backend is faster than a CPU emulating a GPU).
 * Throws WebGPUUnavailable with one sentence.
 */
export async function startWebGPU(options: { allowSoftware: boolean; limits?: LimitsChoice; adapterName?: string }): Promise<WebGPUState> {
  const request = JSON.stringify([options.limits ?? "adapter", options.adapterName ?? process.env.RETROMAE_WEBGPU_ADAPTER ?? ""]);
  if (opened && openedFor === request && tf.findBackend("webgpu") && (options.allowSoftware || !opened.summary.software)) {
    await tf.setBackend("webgpu");
    return webgpuState()!;
  }
  const dawn = await loadDawn();
  installGlobals(dawn);
  const dev = await openDevice({ adapterName: options.adapterName, limits: options.limits });
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
  registerWebGPUKernels(dev.limits.maxStorageBuffersPerShaderStage);
  const ok = await tf.setBackend("webgpu");
  if (!ok) throw new WebGPUUnavailable(`tfjs's webgpu backend did not start on ${dev.summary.device || dev.summary.description}`);
  pool = PoolTrimmer.attach(tf.findBackend("webgpu"));
  return webgpuState()!;
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
 * one before used (./pool.ts). Returns the bytes released; 0 off webgpu.
 */
export function trimGpuPool(): number {
  return pool && tf.getBackend() === "webgpu" ? pool.trim() : 0;
}

/**
 * The largest buffer the device takes, in float32 elements: a tensor larger
 * than this cannot exist on this device. Null off webgpu.
 */
export function maxTensorElements(): number | null {
  if (!opened || tf.getBackend() !== "webgpu") return null;
  return Math.floor(Math.min(opened.limits.maxBufferSize, opened.limits.maxStorageBufferBindingSize) / 4);
}
