/// <reference types="@webgpu/types" />
/**
 * WebGPU in Node through Dawn (the npm package `webgpu`: Dawn's Node binding,
 * with a prebuilt `dawn.node` per platform). Vulkan on Linux, Metal on macOS,
 * D3D12 on Windows.
 *
 * This module finds what a WebGPU device needs (the Vulkan loader, its ICD
 * files, an adapter), names what is missing in one sentence, and opens a
 * device with the adapter's own limits: WebGPU's defaults (a 256 MiB buffer,
 * a 128 MiB storage binding, 8 storage buffers per shader) are what a device
 * gets unless it asks, and a base model's logits exceed them.
 */
import * as fs from "fs";
import * as path from "path";

/** The part of Dawn's module this project uses. */
export interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn's backend: vulkan, metal, d3d12 (what it runs on). */
  backend: string;
  /** SwiftShader, llvmpipe, lavapipe, WARP or a fallback adapter: software, not a GPU. */
  software: boolean;
}

export interface OpenedDevice {
  /**
   * Dawn's instance. Held for as long as the device is used: once it is
   * collected, Dawn stops delivering the device's events, and reads never resolve.
   */
  gpu: GPU;
  device: GPUDevice;
  adapter: GPUAdapter;
  summary: AdapterSummary;
  /** The limits in force on the device (what was asked for), by name. */
  limits: Record<string, number>;
  /** Whether Dawn's bounds checks are on in the device's shaders (robustnessWanted). */
  robustness: boolean;
}

/** Limits the device asks for at the adapter's own values ("adapter"), or WebGPU's defaults ("default"). */
export type LimitsChoice = "adapter" | "default";

export class WebGPUUnavailable extends Error {
  /** What failed, as the system said it (the dynamic loader's message), where the sentence adds a cause or a fix to it. */
  readonly detail?: string;
  constructor(message: string, detail?: string) {
    super(message);
    this.detail = detail;
    this.name = "WebGPUUnavailable";
  }
}

/** The limits this project reads; every WebGPU adapter reports them. */
export const LIMIT_NAMES = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxUniformBufferBindingSize",
  "minStorageBufferOffsetAlignment",
] as const;

/** The smallest values the WebGPU spec lets an adapter report (its defaults). */
export const WEBGPU_DEFAULT_LIMITS: Readonly<Record<(typeof LIMIT_NAMES)[number], number>> = {
  maxBufferSize: 268435456,
  maxStorageBufferBindingSize: 134217728,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxUniformBufferBindingSize: 65536,
  minStorageBufferOffsetAlignment: 256,
};

/** The adapter's info. (`adapter.info`: newer than the @webgpu/types that tfjs-webgpu pins.) */
export function adapterInfo(adapter: GPUAdapter): GPUAdapterInfo & { isFallbackAdapter?: boolean } {
  return (adapter as GPUAdapter & { info: GPUAdapterInfo }).info;
}

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|\bwarp\b|null-backend/i;

export function isSoftwareAdapter(info: { vendor?: string; architecture?: string; device?: string; description?: string }, fallback = false): boolean {
  return fallback || SOFTWARE.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" "));
}

// TypeScript compiles import() to require() for CommonJS output; `webgpu` is an ES module, so import it for real.
const importModule = new Function("specifier", "return import(specifier)") as (specifier: string) => Promise<unknown>;

let dawn: Promise<DawnModule> | null = null;

/** What useMountedDriverIcd added when Dawn was loaded, or null. */
export let mountedDriverIcd: string[] | null = null;

/**
 * Load Dawn's Node binding once. Rejects with one sentence when the package
 * or its binary is missing. A mounted driver's ICD file outside the loader's
 * search is pointed to first (useMountedDriverIcd).
 */
export function loadDawn(): Promise<DawnModule> {
  if (!dawn && process.platform === "linux") mountedDriverIcd = useMountedDriverIcd();
  dawn ??= importModule("webgpu").then(
    (m) => m as DawnModule,
    (err: NodeJS.ErrnoException) => {
      dawn = null;
      const msg = String(err?.message ?? err).split("\n")[0];
      if (err?.code === "ERR_MODULE_NOT_FOUND" && msg.includes("'webgpu'")) {
        throw new WebGPUUnavailable("the npm package webgpu is not installed (reinstall with npm ci)");
      }
      throw new WebGPUUnavailable(`Dawn's Node binding (the npm package webgpu) failed to load on ${process.platform}-${process.arch}: ${msg}; ${dawnLoadFix(msg)}`, msg);
    },
  );
  return dawn;
}

/** Dawn's GPU objects (each a dawn::native::Instance), one per set of flags, kept for the process's life. */
const instances = new Map<string, GPU>();

/**
 * Dawn's GPU object for these flags, made once and kept. Garbage-collecting
 * one tears down its instance, and on SwiftShader a device opened after that
 * (by another instance: other limits, bounds checks on) aborted
 * ("std::system_error: Invalid argument") or hung at its first read. The
 * flags differ only in the adapter's name, Dawn's backend and its toggles,
 * so there are a few at most; an idle one does not keep Node's event loop
 * alive.
 */
export function dawnInstance(d: DawnModule, flags: string[]): GPU {
  const key = JSON.stringify(flags);
  let gpu = instances.get(key);
  if (!gpu) instances.set(key, (gpu = d.create(flags)));
  return gpu;
}

/** libstdc++'s symbol versions and the GCC release that first shipped each (GCC's libstdc++ ABI policy). */
const GLIBCXX_GCC: Record<string, string> = { "3.4.28": "10", "3.4.29": "11", "3.4.30": "12", "3.4.31": "13", "3.4.32": "13.2", "3.4.33": "14", "3.4.34": "15" };

/** The C library this process runs on (glibc's version), or null (musl, or not Linux). */
export function runtimeGlibc(): string | null {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ?? null;
}

/**
 * The fix for dawn.node failing to load, from the dynamic loader's message,
 * with the cause where the message gives it. The prebuilt binary in the npm
 * package webgpu 0.6.2 needs glibc 2.34 and GCC 12's libstdc++
 * (GLIBCXX_3.4.30): Ubuntu 22.04, Debian 12 and RHEL 10 have both; RHEL 9
 * has that glibc but GCC 11's libstdc++, which clusters replace with a newer
 * one on LD_LIBRARY_PATH (a gcc module, or conda's libstdcxx-ng).
 */
export function dawnLoadFix(message: string, glibc: string | null = runtimeGlibc()): string {
  const need = /version .(GLIBC(XX)?)_([\d.]+). not found/.exec(message);
  const cpu = "or use the CPU (RETROMAE_BACKEND=native)";
  if (need?.[2]) {
    const gcc = GLIBCXX_GCC[need[3]];
    return `Dawn's binary needs ${gcc ? `GCC ${gcc}'s libstdc++ (GLIBCXX_${need[3]})` : `a libstdc++ with GLIBCXX_${need[3]}`} or later, and this system's is older: put a newer libstdc++.so.6 first on LD_LIBRARY_PATH (on a cluster, a gcc module${gcc ? ` of GCC ${gcc} or later` : ""}, or conda's libstdcxx-ng), ${cpu}`;
  }
  if (need) return `Dawn's binary needs glibc ${need[3]} or later and this system has ${glibc ? `glibc ${glibc}` : "an older one"}: run on a system with glibc ${need[3]} or later (Ubuntu 22.04, Debian 12, RHEL 9, or a container image based on one), ${cpu}`;
  const missing = /(lib[\w.+-]+\.so[\d.]*): cannot open shared object file/.exec(message);
  if (missing) return `${missing[1]}, which Dawn's binary loads, is missing: install the system package that provides it, ${cpu}`;
  return "reinstall with npm ci";
}

/** Where the Vulkan loader looks for ICD files (Linux), NVIDIA's container runtime's places included. */
export function icdSearchDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dataDirs = (env.XDG_DATA_DIRS || "/usr/local/share:/usr/share").split(":").filter(Boolean);
  const configDirs = (env.XDG_CONFIG_DIRS || "/etc/xdg").split(":").filter(Boolean);
  const dirs = [
    ...configDirs.map((d) => path.join(d, "vulkan", "icd.d")),
    "/etc/vulkan/icd.d",
    ...dataDirs.map((d) => path.join(d, "vulkan", "icd.d")),
    "/usr/share/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
  ];
  return [...new Set(dirs)];
}

export interface IcdFile {
  file: string;
  /** The driver library it names, when the file parses. */
  library: string | null;
  /** From VK_ICD_FILENAMES / VK_DRIVER_FILES, which replace the search. */
  fromEnv: boolean;
  /** Whether the driver library it names is there (icdLibraryFound); absent where not looked for. */
  libraryFound?: boolean;
}

/** Where the dynamic loader finds libraries besides its cache and LD_LIBRARY_PATH (Debian's, Red Hat's, and a driver mounted at /usr/local/nvidia). */
const LIBRARY_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"];

/**
 * Whether the driver library an ICD file names is there: a path (relative to
 * the json's folder, as the Vulkan loader reads it) that exists, or a bare
 * name that ldconfig's cache (`ldconfig -p`'s output), LD_LIBRARY_PATH or the
 * usual folders hold. An ICD file without its library is what a container
 * image with nvidia_icd.json baked in gets when it is started without the
 * graphics capability: the loader finds no driver, and no adapter.
 */
export function icdLibraryFound(icd: IcdFile, ldconfig: string | null, env: NodeJS.ProcessEnv = process.env): boolean {
  const lib = icd.library;
  if (!lib) return false;
  if (lib.includes("/")) return fs.existsSync(path.resolve(path.dirname(icd.file), lib));
  if (ldconfig?.split("\n").some((l) => l.trim().startsWith(`${lib} `))) return true;
  const dirs = [...(env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean), ...LIBRARY_DIRS];
  return dirs.some((d) => fs.existsSync(path.join(d, lib)));
}

/** The ICD files (icdFiles), each with its driver library looked for (icdLibraryFound; `ldconfig -p`'s output where the caller has it). */
export function icdFilesWithLibraries(ldconfig: string | null, env: NodeJS.ProcessEnv = process.env): IcdFile[] {
  return icdFiles(env).map((f) => ({ ...f, libraryFound: icdLibraryFound(f, ldconfig, env) }));
}

/** Whether an ICD file is NVIDIA's (by its file's name or its library's). */
export function isNvidiaIcd(f: IcdFile): boolean {
  return /nvidia/i.test(f.file) || /nvidia/i.test(f.library ?? "");
}

/** The ICD files the loader can use: the json parsed and names a library that is there (or was not looked for). */
export function usableIcds(icds: IcdFile[]): IcdFile[] {
  return icds.filter((f) => f.library && f.libraryFound !== false);
}

/**
 * Where a GPU driver mounted into a container keeps its Vulkan ICD file
 * outside the loader's search: NVIDIA's driver mounted at /usr/local/nvidia
 * (Google's GKE; the GPU machines this project's sessions borrow).
 */
export const MOUNTED_DRIVER_ICD_DIRS = ["/usr/local/nvidia/share/vulkan/icd.d", "/usr/local/nvidia/vulkan/icd.d"];

function readIcd(file: string, fromEnv: boolean): IcdFile {
  let library: string | null = null;
  try {
    library = (JSON.parse(fs.readFileSync(file, "utf8")) as { ICD?: { library_path?: string } }).ICD?.library_path ?? null;
  } catch {
    library = null;
  }
  return { file, library, fromEnv };
}

/** The ICD json files in `dirs`, in order, each folder sorted. */
function icdFilesIn(dirs: string[]): IcdFile[] {
  const out: IcdFile[] = [];
  for (const dir of dirs) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
    } catch {
      continue;
    }
    for (const n of names) out.push(readIcd(path.join(dir, n), false));
  }
  return out;
}

/**
 * When neither VK_ICD_FILENAMES nor VK_DRIVER_FILES is set and a mounted
 * driver (MOUNTED_DRIVER_ICD_DIRS) has an ICD file whose driver the
 * loader's own search does not find, point VK_ICD_FILENAMES at the files
 * the search finds plus the mounted ones, for this process (the loader reads
 * it when Dawn creates its instance). Returns the mounted files added, or
 * null where nothing was changed.
 */
export function useMountedDriverIcd(env: NodeJS.ProcessEnv = process.env, mountedDirs: string[] = MOUNTED_DRIVER_ICD_DIRS, searched: IcdFile[] = icdFiles(env)): string[] | null {
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES) return null;
  const known = new Set(searched.filter((f) => f.library).map((f) => path.basename(f.library!)));
  const mounted = icdFilesIn(mountedDirs).filter((f) => f.library && !known.has(path.basename(f.library)));
  if (mounted.length === 0) return null;
  env.VK_ICD_FILENAMES = [...searched.filter((f) => f.library), ...mounted].map((f) => f.file).join(":");
  return mounted.map((f) => f.file);
}

/** The ICD files the Vulkan loader would read: the env list when set, else the standard folders. */
export function icdFiles(env: NodeJS.ProcessEnv = process.env): IcdFile[] {
  const fromEnv = env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES;
  if (fromEnv) return fromEnv.split(":").filter(Boolean).map((f) => readIcd(f, true));
  return icdFilesIn(icdSearchDirs(env));
}

/**
 * Whether the Vulkan loader (libvulkan.so.1) can be loaded, as Dawn loads it.
 * Null off Linux (Metal and D3D12 need no loader). The probe asks the dynamic
 * linker itself: a library that is not a Node addon loads, then fails to
 * "self-register"; a missing one fails to open.
 */
export function vulkanLoader(): { found: boolean; detail: string } | null {
  if (process.platform !== "linux") return null;
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, "libvulkan.so.1");
    return { found: true, detail: "libvulkan.so.1" };
  } catch (err) {
    const msg = String((err as Error).message);
    if (/cannot open shared object file|not found/i.test(msg)) return { found: false, detail: msg.split("\n")[0] };
    return { found: true, detail: "libvulkan.so.1" };
  }
}

function summarize(adapter: GPUAdapter, backend: string): AdapterSummary {
  const i = adapterInfo(adapter);
  const fallback = !!(i.isFallbackAdapter ?? adapter.isFallbackAdapter);
  return {
    vendor: i.vendor ?? "",
    architecture: i.architecture ?? "",
    device: i.device ?? "",
    description: i.description ?? "",
    backend,
    software: isSoftwareAdapter(i, fallback),
  };
}

export function defaultBackendName(): string {
  return process.platform === "darwin" ? "metal" : process.platform === "win32" ? "d3d12" : "vulkan";
}

/**
 * Every adapter Dawn sees, as "backend: name" pairs. Dawn's binding has no
 * list call; asking for an adapter by a name no adapter has makes it answer
 * with the list, which is read here.
 */
export async function listAdapterNames(d: DawnModule): Promise<{ backend: string; name: string }[]> {
  const gpu = dawnInstance(d, ["adapter=\u0001no-such-adapter"]);
  try {
    const a = await gpu.requestAdapter();
    return a ? [{ backend: defaultBackendName(), name: adapterInfo(a).device }] : [];
  } catch (err) {
    const out: { backend: string; name: string }[] = [];
    for (const m of String((err as Error)?.message ?? err).matchAll(/\* backend: '([^']*)', name: '([^']*)'/g)) out.push({ backend: m[1], name: m[2] });
    return out;
  }
}

/**
 * Why Dawn found no adapter, in one sentence with the fix: no Vulkan loader,
 * no usable ICD file, or drivers that do not work with Dawn.
 */
export function explainNoAdapter(facts: { platform: string; loader: { found: boolean } | null; icds: IcdFile[] } = { platform: process.platform, loader: vulkanLoader(), icds: icdFilesWithLibraries(null) }): string {
  if (facts.platform !== "linux") return `Dawn found no ${facts.platform === "darwin" ? "Metal" : "D3D12"} adapter on this machine`;
  if (facts.loader && !facts.loader.found) return "the Vulkan loader libvulkan.so.1 is not installed (apt-get install libvulkan1)";
  const usable = usableIcds(facts.icds);
  const withoutDriver = facts.icds.find((f) => f.library && f.libraryFound === false);
  if (usable.length === 0 && withoutDriver) {
    return `${withoutDriver.file} names ${withoutDriver.library}, which is not installed${isNvidiaIcd(withoutDriver) ? " (a container started without NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics has NVIDIA's ICD file but not its driver)" : ""}; install the driver, or run retromae doctor`;
  }
  if (usable.length === 0) {
    const named = facts.icds.filter((f) => f.fromEnv).map((f) => f.file);
    return named.length
      ? `VK_ICD_FILENAMES names ${named.join(", ")}, which ${named.length === 1 ? "is" : "are"} missing or not an ICD file; point it at the driver's ICD json or unset it`
      : "no Vulkan driver (ICD file) was found in /etc/vulkan/icd.d or /usr/share/vulkan/icd.d; install the GPU's Vulkan driver, and in a container started by NVIDIA's runtime set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics";
  }
  return `Dawn found no Vulkan adapter through ${usable.map((f) => path.basename(f.file)).join(", ")} (a driver that does not work with Dawn, such as Debian 12's lavapipe, Mesa 22.3; run retromae doctor)`;
}

/** The adapter's value of each limit this project reads. */
export function limitsOf(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of LIMIT_NAMES) out[k] = Number((adapter.limits as unknown as Record<string, number>)[k]);
  return out;
}

/**
 * The adapter name that opens Dawn's Null backend: a device that validates
 * and records every command and executes none (reads give zeros). It measures
 * the host's share of a step (tfjs, Dawn's validation): `npm run bench -- host`.
 */
export const NULL_ADAPTER = "null-backend";

/**
 * Whether a device keeps Dawn's robustness: every index into a buffer or an
 * array in every shader clamped (or checked) so that a shader cannot read or
 * write outside its bindings. A browser needs that against untrusted pages;
 * here every shader is tfjs-webgpu's or this project's, each keeps inside
 * its bindings (tfjs's matmul reads of B once did not: dense.ts
 * boundReadsOfB; the tests run every kernel without the checks, on
 * SwiftShader, which honours the switch, with NaN past each buffer's end,
 * against the cpu), and the checks cost arithmetic in the inner loops: an
 * index clamp on every workgroup-memory load of a tiled matmul (gpuweb#1202
 * measured a matmul 64% slower with two such clamps).
 * So they are off by default, as ONNX Runtime's WebGPU releases and
 * tfjs-webgpu's own benchmarks have them; RETROMAE_WEBGPU_ROBUSTNESS=1 turns
 * them on (to check whether a fault is an out-of-bounds access).
 */
export function robustnessWanted(): boolean {
  const v = process.env.RETROMAE_WEBGPU_ROBUSTNESS;
  if (v !== undefined && v !== "" && v !== "0" && v !== "1") throw new WebGPUUnavailable(`RETROMAE_WEBGPU_ROBUSTNESS is "${v}"; set it to 0 (the default: Dawn's bounds checks off) or 1 (on), or unset it`);
  return v === "1";
}

/**
 * Open a device. `adapterName` picks an adapter whose name contains it
 * (RETROMAE_WEBGPU_ADAPTER by default). With limits "adapter" the device
 * asks for the adapter's own limits; "default" keeps WebGPU's minimums (a test
 * of the smallest adapter).
 */
export async function openDevice(options: { adapterName?: string; limits?: LimitsChoice; robustness?: boolean } = {}): Promise<OpenedDevice> {
  const robustness = options.robustness ?? robustnessWanted();
  const d = await loadDawn();
  const name = options.adapterName ?? process.env.RETROMAE_WEBGPU_ADAPTER ?? "";
  // timestamps at full resolution (Dawn rounds them to 65.5 µs by default, a browser's guard against timing attacks)
  const flags = [...(name === NULL_ADAPTER ? ["backend=null"] : name ? [`adapter=${name}`] : []), "disable-dawn-features=timestamp_quantization"];
  if (!robustness) flags.push("enable-dawn-features=disable_robustness");
  const gpu = dawnInstance(d, flags);
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (err) {
    const names = (await listAdapterNames(d)).map((a) => `"${a.name}" (${a.backend})`);
    throw new WebGPUUnavailable(
      name
        ? `no WebGPU adapter's name contains "${name}" (RETROMAE_WEBGPU_ADAPTER); ${names.length ? `the adapters are ${names.join(", ")}` : explainNoAdapter()}`
        : `Dawn could not pick an adapter: ${String((err as Error)?.message ?? err).split("\n")[0]}`,
    );
  }
  if (!adapter) throw new WebGPUUnavailable(explainNoAdapter());
  const adapterLimits = limitsOf(adapter);
  const requiredLimits: Record<string, number> = {};
  if ((options.limits ?? "adapter") === "adapter") for (const k of LIMIT_NAMES) if (k !== "minStorageBufferOffsetAlignment") requiredLimits[k] = adapterLimits[k];
  // timestamp queries time each dispatch of a profiled step (Trainer.profile); unused otherwise
  const requiredFeatures: GPUFeatureName[] = adapter.features.has("timestamp-query") ? ["timestamp-query"] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const limits: Record<string, number> = {};
  for (const k of LIMIT_NAMES) limits[k] = Number((device.limits as unknown as Record<string, number>)[k]);
  return { gpu, device, adapter, summary: summarize(adapter, name === NULL_ADAPTER ? "null" : defaultBackendName()), limits, robustness };
}

/** Put Dawn's WebGPU constants (GPUBufferUsage, GPUMapMode, ...) on globalThis, where tfjs's webgpu backend reads them. */
export function installGlobals(d: DawnModule): void {
  for (const [k, v] of Object.entries(d.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
}
