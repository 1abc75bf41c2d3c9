import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { diagnoseWebGPU, WebGPUDoctorInputs, AdapterReport } from "../../lib/engine/webgpu/doctor";
import { useMountedDriverIcd, WEBGPU_DEFAULT_LIMITS } from "../../lib/engine/webgpu/dawn";

const H200: AdapterReport = { name: "NVIDIA H200", backend: "vulkan", vendor: "nvidia", architecture: "hopper", description: "NVIDIA H200", software: false, limits: { ...WEBGPU_DEFAULT_LIMITS, maxBufferSize: 2 ** 34, maxStorageBufferBindingSize: 2 ** 32 - 4 } };
const SWIFT: AdapterReport = { name: "SwiftShader Device (Subzero)", backend: "vulkan", vendor: "google", architecture: "swiftshader", description: "SwiftShader driver 5.0.0", software: true, limits: { ...WEBGPU_DEFAULT_LIMITS } };
const NVIDIA_ICD = { file: "/etc/vulkan/icd.d/nvidia_icd.json", library: "libGLX_nvidia.so.0", fromEnv: false };

const base: WebGPUDoctorInputs = { platform: "linux", dawnError: null, loader: { found: true, detail: "libvulkan.so.1" }, icds: [NVIDIA_ICD], adapters: [H200], nvidiaGpu: true, glDispatch: true, driverCapabilities: undefined };
const failing = (x: WebGPUDoctorInputs) => diagnoseWebGPU(x).checks.filter((c) => !c.ok);

test("a GPU node with the loader, NVIDIA's ICD and libglvnd passes, and the adapter's limits are listed", () => {
  const d = diagnoseWebGPU(base);
  assert.equal(failing(base), []);
  assert.match(d.summary, /^The webgpu backend can run on NVIDIA H200\.$/);
  assert.match(d.checks.find((c) => c.name === "WebGPU adapters")!.found, /NVIDIA H200 \(vulkan, hardware\): maxBufferSize 16384 MiB/);
  // the optional features this project uses, where they were read
  const withFeatures = diagnoseWebGPU({ ...base, adapters: [{ ...H200, features: ["shader-f16", "subgroups", "timestamp-query"] }] });
  assert.match(withFeatures.checks.find((c) => c.name === "WebGPU adapters")!.found, /; features: timestamp-query yes, subgroups yes, shader-f16 yes/);
  const without = diagnoseWebGPU({ ...base, adapters: [{ ...H200, features: ["subgroups"] }] });
  assert.match(without.checks.find((c) => c.name === "WebGPU adapters")!.found, /timestamp-query no, subgroups yes, shader-f16 no \(without timestamp-query, Trainer\.profile cannot time a step\)/);
});

test("a container without the graphics capability: CUDA sees the GPU, Vulkan does not, and the fix names the variable", () => {
  const x = { ...base, icds: [], adapters: [], driverCapabilities: "compute,utility" };
  const icd = failing(x).find((c) => c.name === "Vulkan ICD files")!;
  assert.match(icd.fix!, /started with NVIDIA_DRIVER_CAPABILITIES=compute,utility; start it with NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics$/);
  assert.match(diagnoseWebGPU(x).summary, /no GPU here: Vulkan ICD files, WebGPU adapters are missing/);
});

test("no loader, no libglvnd, only SwiftShader, Dawn missing: each names its fix", () => {
  assert.match(failing({ ...base, loader: { found: false, detail: "libvulkan.so.1: cannot open shared object file" } })[0].fix!, /apt-get install libvulkan1/);
  assert.match(failing({ ...base, glDispatch: false })[0].fix!, /apt-get install libglvnd0/);
  const sw = failing({ ...base, nvidiaGpu: false, icds: [{ file: "/usr/lib/chromium/vk_swiftshader_icd.json", library: "./libvk_swiftshader.so", fromEnv: true }], adapters: [SWIFT] });
  assert.equal(sw.map((c) => c.name), ["WebGPU adapters"]);
  assert.match(sw[0].fix!, /only software adapters/);
  assert.match(failing({ ...base, dawnError: "the npm package webgpu is not installed" })[0].fix!, /npm ci/);
  const mac = diagnoseWebGPU({ ...base, platform: "darwin", loader: null, icds: [], adapters: [{ ...H200, name: "Apple M3 Max", backend: "metal" }] });
  assert.equal(mac.checks.map((c) => c.name), ["Dawn (npm webgpu)", "WebGPU adapters"], "no Vulkan checks on macOS");
});

test("a driver mounted at /usr/local/nvidia keeps its ICD outside the loader's search: VK_ICD_FILENAMES is pointed at it, beside what the search finds", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "icd-"));
  const mounted = path.join(dir, "share", "vulkan", "icd.d");
  fs.mkdirSync(mounted, { recursive: true });
  const nvidia = path.join(mounted, "nvidia_icd.json");
  fs.writeFileSync(nvidia, JSON.stringify({ file_format_version: "1.0.0", ICD: { library_path: "libGLX_nvidia.so.0", api_version: "1.3.277" } }));
  fs.writeFileSync(path.join(mounted, "broken.json"), "{");
  const lvp = { file: "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json", library: "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", fromEnv: false };
  // found by the search: nothing; lavapipe only; NVIDIA's already
  const none: NodeJS.ProcessEnv = {};
  assert.equal(useMountedDriverIcd(none, [mounted], []), [nvidia]);
  assert.is(none.VK_ICD_FILENAMES, nvidia);
  const withLvp: NodeJS.ProcessEnv = {};
  assert.equal(useMountedDriverIcd(withLvp, [mounted], [lvp]), [nvidia]);
  assert.is(withLvp.VK_ICD_FILENAMES, `${lvp.file}:${nvidia}`, "the search's own files stay");
  const already: NodeJS.ProcessEnv = {};
  assert.is(useMountedDriverIcd(already, [mounted], [NVIDIA_ICD]), null, "the search finds NVIDIA's driver: nothing changes");
  assert.is(already.VK_ICD_FILENAMES, undefined);
  // the user's choice stands; no mounted driver, nothing to do
  const chosen: NodeJS.ProcessEnv = { VK_DRIVER_FILES: "/x/mine.json" };
  assert.is(useMountedDriverIcd(chosen, [mounted], []), null);
  assert.equal(chosen, { VK_DRIVER_FILES: "/x/mine.json" });
  assert.is(useMountedDriverIcd({}, [path.join(dir, "nowhere")], []), null);
  // the doctor says where the file came from
  const d = diagnoseWebGPU({ ...base, icds: [{ file: nvidia, library: "libGLX_nvidia.so.0", fromEnv: true }], mountedIcd: [nvidia] });
  assert.equal(d.checks.filter((c) => !c.ok), []);
  assert.match(d.checks.find((c) => c.name === "Vulkan ICD files")!.found, /nvidia_icd\.json -> libGLX_nvidia\.so\.0 \(a mounted driver's, outside the Vulkan loader's search: VK_ICD_FILENAMES points at it for this process\)$/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
