import { spawnSync } from "child_process";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { diagnose, librariesIn, parseGpus } from "../../lib/engine/doctor";

const LDCONFIG_GOOD = [
  "1234 libs found in cache `/etc/ld.so.cache'",
  "\tlibcudnn.so.8 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcudnn.so.8",
  "\tlibcudart.so.13 (libc6,x86-64) => /usr/local/cuda-13.0/lib/libcudart.so.13",
  "\tlibcudart.so.11.0 (libc6,x86-64) => /usr/local/cuda-11.2/lib64/libcudart.so.11.0",
  "\tlibcublasLt.so.11 (libc6,x86-64) => /usr/local/cuda-11.2/lib64/libcublasLt.so.11",
  "\tlibcublas.so.11 (libc6,x86-64) => /usr/local/cuda-11.2/lib64/libcublas.so.11",
  "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1",
].join("\n");
const TF = ["libtensorflow.so.2", "libtensorflow_framework.so.2"];

test("ldconfig and nvidia-smi output are read into sonames and GPUs", () => {
  const libs = librariesIn(LDCONFIG_GOOD, ["libcudart", "libcudnn", "libnccl"]);
  assert.equal(libs.get("libcudart"), ["libcudart.so.13", "libcudart.so.11.0"]);
  assert.equal(libs.get("libnccl"), []);
  assert.equal(parseGpus("NVIDIA A100-SXM4-40GB, 8.0, 535.104.05\nTesla T4, 7.5, 535.104.05\n"), [
    { name: "NVIDIA A100-SXM4-40GB", computeCapability: "8.0", driver: "535.104.05" },
    { name: "Tesla T4", computeCapability: "7.5", driver: "535.104.05" },
  ]);
});

test("a complete CUDA 11.2 / cuDNN 8 machine with a T4 passes; CUDA 13 alone does not", () => {
  const good = diagnose({ ldconfig: LDCONFIG_GOOD, nvidiaSmi: "Tesla T4, 7.5, 535.104.05\n", libtensorflow: TF });
  assert.equal(good.checks.filter((c) => !c.ok), []);
  assert.match(good.summary, /has what it needs/);
  const cuda13 = diagnose({ ldconfig: "\tlibcudart.so.13 (libc6,x86-64) => /x\n\tlibcuda.so.1 (libc6,x86-64) => /y\n", nvidiaSmi: "Tesla T4, 7.5, 1\n", libtensorflow: TF });
  const cudart = cuda13.checks.find((c) => c.name === "libcudart")!;
  assert.not.ok(cudart.ok);
  assert.is(cudart.found, "libcudart.so.13");
  assert.match(cudart.fix!, /TF 2\.9 loads the \.so\.11 names only/);
  assert.match(cuda13.summary, /cannot run here: libcudart, libcublas, libcudnn are missing or unsuitable/);
});

test("Hopper and Ampere run through PTX JIT with a long first run; Kepler 3.0 has no kernels; no package, no GPU", () => {
  const h100 = diagnose({ ldconfig: LDCONFIG_GOOD, nvidiaSmi: "NVIDIA H100 80GB HBM3, 9.0, 550.54\n", libtensorflow: TF }).checks.find((c) => c.name.startsWith("GPU"))!;
  assert.ok(h100.ok);
  assert.match(h100.fix!, /no machine code for 9\.0: the driver compiles TF's PTX on the first run \(minutes; cached in ~\/\.nv\/ComputeCache/);
  const k = diagnose({ ldconfig: LDCONFIG_GOOD, nvidiaSmi: "GeForce GTX 680, 3.0, 470\n", libtensorflow: TF }).checks.find((c) => c.name.startsWith("GPU"))!;
  assert.not.ok(k.ok);
  assert.match(k.fix!, /TF 2\.9 has no kernels for compute capability 3\.0/);
  const none = diagnose({ ldconfig: null, nvidiaSmi: null, libtensorflow: null });
  assert.match(none.checks[0].found, /tfjs-node-gpu is not installed/);
  assert.is(none.checks.find((c) => c.name === "GPU")!.found, "nvidia-smi is not available");
  const empty = diagnose({ ldconfig: "", nvidiaSmi: null, libtensorflow: [] });
  assert.match(empty.checks[0].found, /its install step downloads it, which fails offline/);
});

test("retromae doctor reads this machine and prints one line per check and a summary", () => {
  const r = spawnSync(process.execPath, [path.resolve(__dirname, "..", "..", "bin", "retromae.js"), "doctor", "--json"], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  const d = JSON.parse(r.stdout);
  assert.equal(d.checks.map((c: { name: string }) => c.name).slice(0, 5), ["libtensorflow", "libcuda", "libcudart", "libcublas", "libcudnn"]);
  assert.match(d.summary, /tensorflow GPU backend/);
});

test.run();
