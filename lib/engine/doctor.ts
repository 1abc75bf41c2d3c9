/**
 * `retromae doctor`: what the tensorflow (GPU) backend needs, and what this
 * machine has. @tensorflow/tfjs-node-gpu 4.22 loads libtensorflow 2.9.1,
 * which is built against CUDA 11.2 and cuDNN 8.1 and carries GPU kernels as
 * TensorFlow's release builds do: machine code for compute capabilities
 * 3.5, 5.0, 6.0, 7.0 and 7.5, and PTX for 8.0, which the driver compiles on
 * first use for 8.0 and newer (Ampere, Ada, Hopper): the first run then
 * spends minutes compiling (cached in ~/.nv/ComputeCache).
 *
 * The checks read `ldconfig -p`, `nvidia-smi` and the package's files; none
 * loads TensorFlow.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

export const REQUIRED = { cuda: "11.2", cudnn: "8.1", libtensorflow: "2.9.1" };
/** Compute capabilities libtensorflow 2.9's release build has machine code for; PTX for 8.0 covers newer GPUs by JIT. */
export const SASS_CAPABILITIES = ["3.5", "5.0", "6.0", "7.0", "7.5"];
export const PTX_CAPABILITY = "8.0";

export interface Gpu {
  name: string;
  computeCapability: string;
  driver: string;
}

export interface DoctorInputs {
  /** Output of `ldconfig -p`, or null when it cannot run. */
  ldconfig: string | null;
  /** Output of `nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader`, or null. */
  nvidiaSmi: string | null;
  /** libtensorflow files found under the tfjs-node(-gpu) package, or null when the package is absent. */
  libtensorflow: string[] | null;
}

export interface Check {
  name: string;
  ok: boolean;
  found: string;
  needed: string;
  /** What to do, when not ok. */
  fix?: string;
}

/** Library name -> the sonames ldconfig lists for it (e.g. libcudart -> ["libcudart.so.11.0", "libcudart.so.13"]). */
export function librariesIn(ldconfig: string, names: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>(names.map((n) => [n, []]));
  for (const line of ldconfig.split("\n")) {
    const m = /^\s*(lib[\w+-]+)\.so(\.[\d.]+)?\s/.exec(line);
    if (!m || !out.has(m[1])) continue;
    const soname = `${m[1]}.so${m[2] ?? ""}`;
    if (!out.get(m[1])!.includes(soname)) out.get(m[1])!.push(soname);
  }
  return out;
}

export function parseGpus(nvidiaSmi: string): Gpu[] {
  return nvidiaSmi
    .split("\n")
    .map((l) => l.split(",").map((x) => x.trim()))
    .filter((p) => p.length >= 3 && p[0])
    .map(([name, computeCapability, driver]) => ({ name, computeCapability, driver }));
}

const major = (soname: string) => /\.so\.(\d+)/.exec(soname)?.[1] ?? null;

/** The checks, from what was read off the machine. */
export function diagnose(inputs: DoctorInputs): { checks: Check[]; gpus: Gpu[]; summary: string } {
  const checks: Check[] = [];
  const tf = inputs.libtensorflow;
  checks.push({
    name: "libtensorflow",
    ok: !!tf && tf.length > 0,
    found: tf === null ? "@tensorflow/tfjs-node-gpu is not installed" : tf.length ? tf.join(", ") : "the package is installed, but its deps/lib has no libtensorflow (its install step downloads it, which fails offline)",
    needed: `libtensorflow ${REQUIRED.libtensorflow} (GPU build) under @tensorflow/tfjs-node-gpu/deps/lib`,
    fix: "npm install @tensorflow/tfjs-node-gpu@4.22.0 on a machine that reaches storage.googleapis.com, or place libtensorflow-gpu-linux-x86_64-2.9.1 in its deps/ folder",
  });
  const libs = librariesIn(inputs.ldconfig ?? "", ["libcudart", "libcublas", "libcublasLt", "libcudnn", "libcuda"]);
  const want: [string, string, string][] = [
    ["libcuda", "", "the NVIDIA driver (libcuda.so.1)"],
    ["libcudart", "11", `the CUDA ${REQUIRED.cuda} runtime (libcudart.so.11.0)`],
    ["libcublas", "11", `cuBLAS from CUDA ${REQUIRED.cuda} (libcublas.so.11)`],
    ["libcudnn", "8", `cuDNN ${REQUIRED.cudnn} (libcudnn.so.8)`],
  ];
  for (const [lib, wantMajor, needed] of want) {
    const found = libs.get(lib)!;
    const ok = wantMajor ? found.some((s) => major(s) === wantMajor) : found.length > 0;
    checks.push({
      name: lib,
      ok,
      found: found.length ? found.join(", ") : inputs.ldconfig === null ? "ldconfig could not run" : "not found by ldconfig",
      needed,
      fix: lib === "libcuda" ? "install the NVIDIA driver" : `install ${needed.replace(/ \(.*\)$/, "")} beside any newer CUDA (TF 2.9 loads the .so.${wantMajor} names only) and run ldconfig`,
    });
  }
  const gpus = inputs.nvidiaSmi ? parseGpus(inputs.nvidiaSmi) : [];
  if (!gpus.length) {
    checks.push({ name: "GPU", ok: false, found: inputs.nvidiaSmi === null ? "nvidia-smi is not available" : "nvidia-smi lists no GPU", needed: "an NVIDIA GPU", fix: "run on a machine with an NVIDIA GPU; here training uses the native CPU backend" });
  }
  for (const g of gpus) {
    const cc = g.computeCapability;
    const sass = SASS_CAPABILITIES.includes(cc);
    const jit = !sass && Number(cc) >= Number(PTX_CAPABILITY);
    checks.push({
      name: `GPU ${g.name}`,
      ok: sass || jit,
      found: `compute capability ${cc}, driver ${g.driver}`,
      needed: `compute capability ${SASS_CAPABILITIES.join(", ")} (machine code in TF 2.9), or ≥ ${PTX_CAPABILITY} through PTX JIT`,
      fix: sass ? undefined : jit ? `no machine code for ${cc}: the driver compiles TF's PTX on the first run (minutes; cached in ~/.nv/ComputeCache, raise CUDA_CACHE_MAXSIZE to keep it)` : `TF 2.9 has no kernels for compute capability ${cc}`,
    });
  }
  const failed = checks.filter((c) => !c.ok);
  const summary = failed.length === 0 ? "The tensorflow GPU backend has what it needs." : `The tensorflow GPU backend cannot run here: ${failed.map((c) => c.name).join(", ")} ${failed.length === 1 ? "is" : "are"} missing or unsuitable.`;
  return { checks, gpus, summary };
}

function run(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? r.stdout : null;
}

/** What the checks read off this machine. */
export function readMachine(): DoctorInputs {
  let libtensorflow: string[] | null = null;
  try {
    const pkg = path.dirname(require.resolve("@tensorflow/tfjs-node-gpu/package.json"));
    const lib = path.join(pkg, "deps", "lib");
    libtensorflow = fs.existsSync(lib) ? fs.readdirSync(lib).filter((f) => f.startsWith("libtensorflow")) : [];
  } catch {
    libtensorflow = null;
  }
  const ldconfig = run("ldconfig", ["-p"]) ?? run("/sbin/ldconfig", ["-p"]);
  const nvidiaSmi = run("nvidia-smi", ["--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]);
  return { ldconfig, nvidiaSmi, libtensorflow };
}

/** Read this machine and diagnose the tensorflow (CUDA) backend. */
export function doctor(machine: DoctorInputs = readMachine()): ReturnType<typeof diagnose> {
  return diagnose(machine);
}
