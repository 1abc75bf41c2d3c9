/**
 * Backend choice for TensorFlow.js.
 *
 * Preference order: tensorflow (tfjs-node-gpu, then tfjs-node) > webgpu
 * (tfjs-backend-webgpu on Dawn: Vulkan, Metal or D3D12; a hardware adapter
 * only) > native (this package's C++ kernels, built at npm install) > wasm >
 * cpu. `use("auto")` tries each in turn and records, for every backend it
 * skipped, one line saying why. Asking for a backend by name tries only that
 * one and fails with a clear sentence if it cannot load; `use("webgpu")` by
 * name accepts a software adapter (SwiftShader), which auto skips.
 */
import * as tf from "./tf";
import { registerCpuKernels, registerWasmKernels } from "./kernels";
import { loadAddon, nativeUnavailableReason, registerNativeBackend } from "./native";
import { NATIVE_KERNELS } from "./native-kernels";
import { startWebGPU, webgpuState } from "./webgpu/backend";
import type { AdapterSummary } from "./webgpu/dawn";

// Registered on import, not only in use(): code that never calls use() gets
// the backend tfjs picks by itself (wasm), and must be able to train on it.
registerWasmKernels();
registerCpuKernels();
registerNativeBackend(() => NATIVE_KERNELS);

export const BACKEND_NAMES = ["auto", "tensorflow", "webgpu", "native", "wasm", "cpu"] as const;
const AUTO_ORDER: ConcreteBackend[] = ["tensorflow", "webgpu", "native", "wasm", "cpu"];
export type BackendName = (typeof BACKEND_NAMES)[number];
export type ConcreteBackend = Exclude<BackendName, "auto">;

export interface SkippedBackend {
  readonly backend: ConcreteBackend;
  readonly reason: string;
}

export interface BackendChoice {
  /** The tfjs backend now active. */
  readonly backend: ConcreteBackend;
  /** Where the math runs. */
  readonly device: "gpu" | "cpu";
  /** The npm package that provides the backend. */
  readonly package: string;
  /** Preferred backends that were tried and skipped, with the reason for each. */
  readonly skipped: readonly SkippedBackend[];
  /** Set when RETROMAE_BACKEND made this choice in place of auto's: "RETROMAE_BACKEND=webgpu". */
  readonly forcedBy?: string;
}

export interface BackendInfo extends BackendChoice {
  readonly versions: Readonly<Record<string, string>>;
  /** Threads the backend computes with, where known. */
  readonly threads: number | null;
  /** Whether WebAssembly SIMD is in use (wasm only), where known. */
  readonly simd: boolean | null;
  /** On webgpu: the adapter (vendor, architecture, description, Dawn's backend, hardware or software) and the limits in force. */
  readonly webgpu?: AdapterSummary & { limits: Record<string, number>; robustness: boolean; poll: "spin" | "timer" };
}

class BackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackendError";
  }
}

let current: BackendChoice | null = null;
let tensorflowPackage: string | null = null;

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0].trim();
}

function isMissingPackage(err: unknown, pkg: string): boolean {
  const e = err as NodeJS.ErrnoException;
  return e?.code === "MODULE_NOT_FOUND" && typeof e.message === "string" && e.message.includes(`'${pkg}'`);
}

/** Run `fn` while capturing tfjs's console warnings, so failures become reasons, not noise. */
async function quietly<T>(fn: () => Promise<T>): Promise<{ value: T; warnings: string[] }> {
  const warnings: string[] = [];
  const warn = console.warn;
  const log = console.log;
  console.warn = (...args: unknown[]) => warnings.push(args.map((a) => firstLine(a)).join(" "));
  console.log = (...args: unknown[]) => warnings.push(args.map((a) => firstLine(a)).join(" "));
  try {
    return { value: await fn(), warnings };
  } finally {
    console.warn = warn;
    console.log = log;
  }
}

async function activate(name: string): Promise<string | null> {
  const { value: ok, warnings } = await quietly(async () => {
    try {
      const set = await tf.setBackend(name);
      await tf.ready();
      return set;
    } catch (err) {
      return firstLine(err);
    }
  });
  if (ok === true) return null;
  if (typeof ok === "string") return ok;
  return warnings.find((w) => w.length > 0) ?? `tf.setBackend("${name}") returned false`;
}

/** Try to load tfjs-node-gpu, then tfjs-node. Returns the reason on failure. */
async function tryTensorflow(): Promise<{ device: "gpu" | "cpu"; pkg: string } | { reason: string }> {
  const reasons: string[] = [];
  for (const [pkg, device] of [
    ["@tensorflow/tfjs-node-gpu", "gpu"],
    ["@tensorflow/tfjs-node", "cpu"],
  ] as const) {
    try {
      await quietly(async () => require(pkg));
    } catch (err) {
      if (isMissingPackage(err, pkg)) {
        reasons.push(`${pkg} is not installed`);
      } else {
        reasons.push(`${pkg} is installed but failed to load (${firstLine(err)})`);
      }
      continue;
    }
    if (!tf.findBackend("tensorflow")) {
      reasons.push(`${pkg} loaded but registered no "tensorflow" backend (is it the same @tensorflow/tfjs-core 4.22?)`);
      continue;
    }
    const failure = await activate("tensorflow");
    if (failure) {
      reasons.push(`${pkg} failed to start: ${failure}`);
      continue;
    }
    tensorflowPackage = pkg;
    return { device, pkg };
  }
  return {
    reason:
      reasons.join("; ") +
      " — for a GPU install @tensorflow/tfjs-node-gpu 4.22 with CUDA 11.2 and cuDNN 8.1 (see README, GPU set-up)",
  };
}

async function tryWasm(): Promise<string | null> {
  registerWasmKernels();
  return activate("wasm");
}

async function tryOne(name: ConcreteBackend, auto: boolean): Promise<Omit<BackendChoice, "skipped"> | { reason: string }> {
  switch (name) {
    case "tensorflow": {
      const r = await tryTensorflow();
      return "reason" in r ? r : { backend: "tensorflow", device: r.device, package: r.pkg };
    }
    case "webgpu": {
      try {
        const st = await startWebGPU({ allowSoftware: !auto });
        const s = st.summary;
        return { backend: "webgpu", device: "gpu", package: `@tensorflow/tfjs-backend-webgpu on ${s.description || s.device} (${s.backend}${s.software ? ", software" : ""})` };
      } catch (err) {
        return { reason: firstLine(err) };
      }
    }
    case "native": {
      const reason = nativeUnavailableReason() ?? (await activate("native"));
      return reason ? { reason } : { backend: "native", device: "cpu", package: `retromae (native/, GEMM: ${loadAddon()?.gemm()})` };
    }
    case "wasm": {
      const reason = await tryWasm();
      return reason ? { reason } : { backend: "wasm", device: "cpu", package: "@tensorflow/tfjs-backend-wasm" };
    }
    case "cpu": {
      registerCpuKernels();
      const reason = await activate("cpu");
      return reason ? { reason } : { backend: "cpu", device: "cpu", package: "@tensorflow/tfjs-backend-cpu" };
    }
  }
}

/**
 * Choose the tfjs backend. "auto" picks the first that works of tensorflow,
 * webgpu (hardware), native, wasm, cpu, or the backend RETROMAE_BACKEND names;
 * a named backend must load or this throws one clear sentence.
 */
export async function use(name: BackendName | string = "auto"): Promise<BackendChoice> {
  if (!(BACKEND_NAMES as readonly string[]).includes(name)) {
    throw new BackendError(
      `Unknown backend "${name}"; use one of ${BACKEND_NAMES.map((n) => `"${n}"`).join(", ")}.`,
    );
  }
  // RETROMAE_BACKEND points every use("auto") (a notebook's, a script's) at one backend, from the shell,
  // as CUDA_VISIBLE_DEVICES does for PyTorch: that backend by name, or this one sentence
  const forced = process.env.RETROMAE_BACKEND;
  if (name === "auto" && forced && forced !== "auto") {
    if (!(BACKEND_NAMES as readonly string[]).includes(forced)) {
      throw new BackendError(`RETROMAE_BACKEND is "${forced}", not a backend; set it to one of ${BACKEND_NAMES.map((n) => `"${n}"`).join(", ")}, or unset it.`);
    }
    const r = await tryOne(forced as ConcreteBackend, false);
    if ("reason" in r) throw new BackendError(`RETROMAE_BACKEND=${forced} asks for the ${forced} backend, which failed to load: ${r.reason}; unset RETROMAE_BACKEND to let auto choose.`);
    current = { ...r, skipped: [], forcedBy: `RETROMAE_BACKEND=${forced}` };
    return current;
  }
  const order: ConcreteBackend[] = name === "auto" ? AUTO_ORDER : [name as ConcreteBackend];
  const skipped: SkippedBackend[] = [];
  for (const candidate of order) {
    const r = await tryOne(candidate, name === "auto");
    if ("reason" in r) {
      skipped.push({ backend: candidate, reason: r.reason });
      continue;
    }
    current = { ...r, skipped };
    return current;
  }
  const last = skipped[skipped.length - 1];
  throw new BackendError(
    name === "auto"
      ? `No TensorFlow.js backend could start (${skipped.map((s) => `${s.backend}: ${s.reason}`).join("; ")}); reinstall with npm ci.`
      : `Backend "${name}" failed to load: ${last.reason}; pick another with backend.use("auto").`,
  );
}

function packageVersion(pkg: string): string | null {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return null;
  }
}

/** The active backend, the versions, and threads/SIMD where known. Runs record this. */
export function info(): BackendInfo {
  const choice = current ?? {
    backend: tf.getBackend() as ConcreteBackend,
    device: "cpu" as const,
    package: `@tensorflow/tfjs-backend-${tf.getBackend()}`,
    skipped: [],
  };
  const versions: Record<string, string> = { node: process.versions.node, "tfjs-core": tf.version_core };
  for (const pkg of ["@tensorflow/tfjs-backend-cpu", "@tensorflow/tfjs-backend-wasm", ...(choice.backend === "webgpu" ? ["@tensorflow/tfjs-backend-webgpu", "webgpu"] : [])]) {
    const v = packageVersion(pkg);
    if (v) versions[pkg.replace("@tensorflow/", "")] = v;
  }
  if (tensorflowPackage) {
    const v = packageVersion(tensorflowPackage);
    if (v) versions[tensorflowPackage.replace("@tensorflow/", "")] = v;
  }
  let threads: number | null = null;
  let simd: boolean | null = null;
  if (choice.backend === "wasm") {
    simd = tf.env().getBool("WASM_HAS_SIMD_SUPPORT");
    // The threaded wasm build does not start under Node; the single-threaded one runs.
    threads = 1;
  } else if (choice.backend === "cpu") {
    threads = 1;
  } else if (choice.backend === "native") {
    threads = loadAddon()?.threads() ?? null;
  }
  const wg = choice.backend === "webgpu" ? webgpuState() : null;
  return { ...choice, versions, threads, simd, ...(wg ? { webgpu: { ...wg.summary, limits: wg.limits, robustness: wg.robustness, poll: wg.poll } } : {}) };
}

/** One line per skipped backend, then the choice; for logs and notebooks. */
export function describe(choice: BackendChoice = info()): string {
  const lines = choice.skipped.map((s) => `skipped ${s.backend}: ${s.reason}`);
  lines.push(`using ${choice.backend} (${choice.device}) from ${choice.package}${choice.forcedBy ? `, as ${choice.forcedBy} asks in place of auto` : ""}`);
  const st = choice.backend === "webgpu" ? webgpuState() : null;
  if (st) {
    const wg = { ...st.summary, limits: st.limits };
    const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;
    lines.push(
      `  adapter: ${[wg.vendor, wg.architecture, wg.description || wg.device].filter(Boolean).join(" / ")}, ${wg.backend}, ${wg.software ? "software (not a GPU)" : "hardware"}`,
      `  limits: maxBufferSize ${mib(wg.limits.maxBufferSize)}, maxStorageBufferBindingSize ${mib(wg.limits.maxStorageBufferBindingSize)}, ${wg.limits.maxStorageBuffersPerShaderStage} storage buffers per shader, workgroup memory ${wg.limits.maxComputeWorkgroupStorageSize} B`,
      `  bounds checks: ${st.robustness ? "on (RETROMAE_WEBGPU_ROBUSTNESS=1)" : "off (Dawn's robustness; RETROMAE_WEBGPU_ROBUSTNESS=1 turns them on)"}`,
      `  waiting for the GPU: ${st.poll === "timer" ? "a 1 ms timer between Dawn's ticks" : "Dawn's busy loop"}${process.env.RETROMAE_WEBGPU_POLL ? ` (RETROMAE_WEBGPU_POLL=${process.env.RETROMAE_WEBGPU_POLL})` : st.poll === "timer" ? " (a software adapter computes on this CPU)" : ""}`,
    );
  }
  return lines.join("\n");
}

export const backend = { use, info, describe };
