/**
 * `retromae doctor`'s WebGPU section: what the webgpu backend needs on this
 * machine (Dawn's binary, on Linux the Vulkan loader and a driver's ICD
 * file), and every adapter Dawn sees, hardware or software, with its limits.
 * Each failure comes with its fix.
 *
 * NVIDIA's Vulkan driver is `libGLX_nvidia.so.0`, named by `nvidia_icd.json`;
 * it loads the GL dispatch library (`libGLdispatch.so.0`, Debian's
 * libglvnd0). A container started by NVIDIA's runtime gets the ICD file and
 * the driver only with the `graphics` capability: CUDA works without it, and
 * Vulkan then finds no GPU.
 */
/// <reference types="@webgpu/types" />
import type { Check } from "../doctor";
import { dawnInstance, dawnLoadFix, defaultBackendName, DawnModule, IcdFile, icdFilesWithLibraries, isNvidiaIcd, isSoftwareAdapter, adapterInfo, limitsOf, listAdapterNames, loadDawn, MOUNTED_DRIVER_ICD_DIRS, mountedDriverIcd, usableIcds, vulkanLoader, WebGPUUnavailable } from "./dawn";

export interface AdapterReport {
  name: string;
  backend: string;
  vendor: string;
  architecture: string;
  description: string;
  software: boolean;
  limits: Record<string, number>;
  /** The adapter's optional features (timestamp-query lets Trainer.profile time a step's kernels); absent where not read. */
  features?: string[];
}

/** The optional features this project uses or may, named in the doctor's adapter lines. */
const NOTED_FEATURES = ["timestamp-query", "subgroups", "shader-f16"];

export interface WebGPUDoctorInputs {
  platform: string;
  /** Why Dawn's binding did not load, or null when it did. */
  dawnError: string | null;
  /** Null off Linux. */
  loader: { found: boolean; detail: string } | null;
  icds: IcdFile[];
  /** ICD files of a mounted driver, outside the loader's search, that VK_ICD_FILENAMES was pointed at (useMountedDriverIcd); null if none. */
  mountedIcd?: string[] | null;
  adapters: AdapterReport[];
  /** Whether nvidia-smi lists a GPU (CUDA can see one). */
  nvidiaGpu: boolean;
  /** Whether ldconfig lists libGLdispatch.so.0 (libglvnd), which NVIDIA's Vulkan driver loads. */
  glDispatch: boolean;
  /** NVIDIA_DRIVER_CAPABILITIES, when set (NVIDIA's container runtime reads it). */
  driverCapabilities: string | undefined;
}

export interface WebGPUDiagnosis {
  checks: Check[];
  adapters: AdapterReport[];
  summary: string;
}

const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;

export function describeAdapter(a: AdapterReport): string {
  const l = a.limits;
  const features = a.features ? `; features: ${NOTED_FEATURES.map((f) => `${f} ${a.features!.includes(f) ? "yes" : "no"}`).join(", ")}${a.features.includes("timestamp-query") ? "" : " (without timestamp-query, Trainer.profile cannot time a step)"}` : "";
  return `${a.name || a.description} (${a.backend}, ${a.software ? "software" : "hardware"}): maxBufferSize ${mib(l.maxBufferSize)}, maxStorageBufferBindingSize ${mib(l.maxStorageBufferBindingSize)}, ${l.maxStorageBuffersPerShaderStage} storage buffers per shader, workgroup memory ${l.maxComputeWorkgroupStorageSize} B, ${l.maxComputeInvocationsPerWorkgroup} invocations per workgroup${features}`;
}

/** The checks, from what was read off the machine. */
export function diagnoseWebGPU(x: WebGPUDoctorInputs): WebGPUDiagnosis {
  const checks: Check[] = [];
  checks.push({
    name: "Dawn (npm webgpu)",
    ok: x.dawnError === null,
    found: x.dawnError ?? `dawn.node for ${x.platform} loads`,
    needed: "the npm package webgpu with a dawn.node for this platform (linux-x64, linux-arm64, macOS, Windows)",
    fix: x.dawnError ? dawnLoadFix(x.dawnError) : undefined,
  });
  if (x.platform === "linux") {
    checks.push({
      name: "Vulkan loader",
      ok: !!x.loader?.found,
      found: x.loader?.found ? "libvulkan.so.1 loads" : (x.loader?.detail ?? "not checked"),
      needed: "libvulkan.so.1",
      fix: x.loader?.found ? undefined : "apt-get install libvulkan1 (or use retromae bundle, which carries one)",
    });
    const usable = usableIcds(x.icds);
    const nvidiaIcd = usable.some(isNvidiaIcd);
    const nvidiaWithoutDriver = x.icds.find((f) => isNvidiaIcd(f) && f.library && f.libraryFound === false);
    let icdFix: string | undefined;
    const caps = x.driverCapabilities;
    const capsFix = caps !== undefined && !/\b(graphics|all)\b/.test(caps) ? `this container was started with NVIDIA_DRIVER_CAPABILITIES=${caps}; start it with NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics` : null;
    if (x.nvidiaGpu && !nvidiaIcd && nvidiaWithoutDriver) {
      icdFix = `${nvidiaWithoutDriver.file} names ${nvidiaWithoutDriver.library}, NVIDIA's Vulkan driver, which is not installed: ${capsFix ?? "in a container, set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics; on a host, install the driver's GL and Vulkan libraries (Debian: nvidia-vulkan-icd)"}`;
    } else if (x.nvidiaGpu && !nvidiaIcd) {
      icdFix = capsFix
        ? `an NVIDIA GPU is visible to CUDA but its Vulkan driver is not: ${capsFix}`
        : "an NVIDIA GPU is visible to CUDA but no nvidia_icd.json was found: install the driver's Vulkan part (Debian: nvidia-vulkan-icd; NVIDIA's .run installer includes it), or in a container set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics";
    } else if (usable.length === 0) {
      icdFix = x.icds.some((f) => f.fromEnv)
        ? "VK_ICD_FILENAMES names files that are missing, not ICD json, or name a driver that is not installed: fix or unset it"
        : "install the GPU's Vulkan driver (NVIDIA: the driver's Vulkan ICD; AMD and Intel: mesa-vulkan-drivers)";
    }
    checks.push({
      name: "Vulkan ICD files",
      ok: usable.length > 0 && !icdFix,
      found:
        (x.icds.length ? x.icds.map((f) => `${f.file}${f.library ? ` -> ${f.library}${f.libraryFound === false ? " (not installed)" : ""}` : " (unreadable)"}`).join(", ") : `none in /etc/vulkan/icd.d, /usr/share/vulkan/icd.d, /usr/local/share/vulkan/icd.d, ${MOUNTED_DRIVER_ICD_DIRS.join(", ")}`) +
        (x.mountedIcd ? " (a mounted driver's, outside the Vulkan loader's search: VK_ICD_FILENAMES points at it for this process)" : ""),
      needed: "a Vulkan driver's ICD json (NVIDIA's container runtime puts nvidia_icd.json in /etc/vulkan/icd.d or /usr/share/vulkan/icd.d; a driver mounted at /usr/local/nvidia keeps it in share/vulkan/icd.d there)",
      fix: icdFix,
    });
    if (nvidiaIcd) {
      checks.push({
        name: "GL dispatch (libglvnd)",
        ok: x.glDispatch,
        found: x.glDispatch ? "libGLdispatch.so.0" : "libGLdispatch.so.0 not found by ldconfig",
        needed: "libGLdispatch.so.0, which NVIDIA's Vulkan driver (libGLX_nvidia.so.0) loads",
        fix: x.glDispatch ? undefined : "apt-get install libglvnd0 (or use retromae bundle, which carries it)",
      });
    }
  }
  const hardware = x.adapters.filter((a) => !a.software);
  checks.push({
    name: "WebGPU adapters",
    ok: hardware.length > 0,
    found: x.adapters.length ? x.adapters.map(describeAdapter).join("; ") : "none",
    needed: `a hardware ${defaultBackendName()} adapter (auto skips software ones: SwiftShader, llvmpipe)`,
    fix:
      hardware.length > 0
        ? undefined
        : x.adapters.length
          ? "only software adapters: backend.use(\"webgpu\") runs on them, slower than the native CPU backend"
          : "fix the checks above; Debian 12's lavapipe (Mesa 22.3) does not work with Dawn, Mesa 25's from bookworm-backports does (on the CPU: a software adapter)",
  });
  const failed = checks.filter((c) => !c.ok);
  const summary =
    hardware.length > 0
      ? `The webgpu backend can run on ${hardware[0].name || hardware[0].description}${moreAdapters(hardware)}.`
      : `The webgpu backend has no GPU here: ${failed.map((c) => c.name).join(", ")} ${failed.length === 1 ? "is" : "are"} missing or unsuitable.`;
  return { checks, adapters: x.adapters, summary };
}

/**
 * After the first of several hardware adapters: how to pick another. Dawn's
 * binding picks by name (the first adapter whose name holds the text), so
 * among GPUs of one model (a node's 8 H100s) it always takes the first it
 * enumerates, whatever CUDA_VISIBLE_DEVICES says; another one is reached by
 * letting the process see only it.
 */
function moreAdapters(hardware: AdapterReport[]): string {
  if (hardware.length < 2) return "";
  const name = (a: AdapterReport) => a.name || a.description;
  const same = hardware.slice(1).filter((a) => name(a) === name(hardware[0])).length;
  const other = hardware.length - 1 - same;
  return [
    other > 0 ? `and ${other} other${other > 1 ? "s" : ""}, picked by name with RETROMAE_WEBGPU_ADAPTER` : "",
    same > 0 ? `and ${same} more of the same name, which Dawn cannot pick by index: it takes the first, whatever CUDA_VISIBLE_DEVICES says; to run on another, let the process see only that GPU: a container's --gpus device=N, or Slurm's ConstrainDevices` : "",
  ].filter(Boolean).map((t) => ` (${t})`).join("");
}

/** Every adapter Dawn sees, each opened by name to read its limits. */
async function adapters(d: DawnModule): Promise<AdapterReport[]> {
  const out: AdapterReport[] = [];
  for (const { backend, name } of await listAdapterNames(d)) {
    try {
      const a = await dawnInstance(d, [`adapter=${name}`, `backend=${backend}`]).requestAdapter();
      if (!a) continue;
      const i = adapterInfo(a);
      out.push({ name, backend, vendor: i.vendor ?? "", architecture: i.architecture ?? "", description: i.description ?? "", software: isSoftwareAdapter(i, a.isFallbackAdapter), limits: limitsOf(a), features: [...a.features].map(String).sort() });
    } catch {
      // listed but not openable: leave it out
    }
  }
  return out;
}

/** Read this machine (nvidia-smi and ldconfig outputs as the CUDA doctor read them) and diagnose WebGPU. */
export async function webgpuDoctor(machine: { ldconfig: string | null; nvidiaSmi: string | null }): Promise<WebGPUDiagnosis> {
  let dawnError: string | null = null;
  let found: AdapterReport[] = [];
  try {
    found = await adapters(await loadDawn());
  } catch (err) {
    dawnError = err instanceof WebGPUUnavailable && err.detail ? err.detail : String((err as Error).message ?? err).split("\n")[0];
  }
  return diagnoseWebGPU({
    platform: process.platform,
    dawnError,
    loader: vulkanLoader(),
    icds: icdFilesWithLibraries(machine.ldconfig),
    mountedIcd: mountedDriverIcd,
    adapters: found,
    nvidiaGpu: !!machine.nvidiaSmi && machine.nvidiaSmi.trim().length > 0,
    glDispatch: /libGLdispatch\.so\.0/.test(machine.ldconfig ?? ""),
    driverCapabilities: process.env.NVIDIA_DRIVER_CAPABILITIES,
  });
}
