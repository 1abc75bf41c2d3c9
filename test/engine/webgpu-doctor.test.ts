import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { diagnoseWebGPU, WebGPUDoctorInputs, AdapterReport } from "../../lib/engine/webgpu/doctor";
import { softwareVulkanIcd } from "../webgpu-helpers";
import { dawnLoadFix, icdFiles, icdLibraryFound, runtimeGlibc, useMountedDriverIcd, WEBGPU_DEFAULT_LIMITS } from "../../lib/engine/webgpu/dawn";

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

test("several GPUs: others are picked by name; GPUs of one model cannot be (Dawn takes the first), and the summary says how to reach another", () => {
  const one = diagnoseWebGPU({ ...base, adapters: [H200, { ...H200, name: "AMD Instinct MI300X" }] });
  assert.is(one.summary, "The webgpu backend can run on NVIDIA H200 (and 1 other, picked by name with RETROMAE_WEBGPU_ADAPTER).");
  const eight = diagnoseWebGPU({ ...base, adapters: Array.from({ length: 8 }, () => H200) });
  assert.is(eight.summary, "The webgpu backend can run on NVIDIA H200 (and 7 more of the same name, which Dawn cannot pick by index: it takes the first, whatever CUDA_VISIBLE_DEVICES says; to run on another, let the process see only that GPU: a container's --gpus device=N, or Slurm's ConstrainDevices).");
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
  const dawn = failing({ ...base, dawnError: "/opt/retromae/app/node_modules/webgpu/dist/linux-x64/dawn.node: /lib64/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by /opt/retromae/app/node_modules/webgpu/dist/linux-x64/dawn.node)" })[0];
  assert.is(dawn.name, "Dawn (npm webgpu)");
  assert.match(dawn.fix!, /^Dawn's binary needs GCC 12's libstdc\+\+ \(GLIBCXX_3\.4\.30\) or later/);
  const mac = diagnoseWebGPU({ ...base, platform: "darwin", loader: null, icds: [], adapters: [{ ...H200, name: "Apple M3 Max", backend: "metal" }] });
  assert.equal(mac.checks.map((c) => c.name), ["Dawn (npm webgpu)", "WebGPU adapters"], "no Vulkan checks on macOS");
});

test("an ICD file whose driver library is not installed (an image with nvidia_icd.json baked in, started without the graphics capability): the fix names the file, the library and the variable", () => {
  const noDriver = { ...NVIDIA_ICD, libraryFound: false };
  const x = { ...base, icds: [noDriver], adapters: [], driverCapabilities: "compute,utility" };
  const icd = failing(x).find((c) => c.name === "Vulkan ICD files")!;
  assert.match(icd.found, /^\/etc\/vulkan\/icd\.d\/nvidia_icd\.json -> libGLX_nvidia\.so\.0 \(not installed\)$/);
  assert.is(icd.fix, "/etc/vulkan/icd.d/nvidia_icd.json names libGLX_nvidia.so.0, NVIDIA's Vulkan driver, which is not installed: this container was started with NVIDIA_DRIVER_CAPABILITIES=compute,utility; start it with NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics");
  assert.match(failing({ ...x, driverCapabilities: undefined }).find((c) => c.name === "Vulkan ICD files")!.fix!, /not installed: in a container, set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics; on a host, install the driver's GL and Vulkan libraries/);
  assert.not.ok(failing(x).some((c) => c.name === "GL dispatch (libglvnd)"), "no GL dispatch check for a driver that is not there");
  assert.equal(failing({ ...base, icds: [{ ...NVIDIA_ICD, libraryFound: true }] }), [], "found: as before");

  // where the library is looked for: beside the json (a relative path, as the loader reads it), ldconfig's cache, LD_LIBRARY_PATH
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "icd-lib-"));
  fs.writeFileSync(path.join(dir, "libvk_fake.so"), "");
  const json = path.join(dir, "fake_icd.json");
  assert.ok(icdLibraryFound({ file: json, library: "./libvk_fake.so", fromEnv: true }, null, {}));
  assert.not.ok(icdLibraryFound({ file: json, library: "./libvk_gone.so", fromEnv: true }, null, {}));
  assert.not.ok(icdLibraryFound({ file: json, library: "libvk_fake.so", fromEnv: true }, null, {}));
  assert.ok(icdLibraryFound({ file: json, library: "libvk_fake.so", fromEnv: true }, null, { LD_LIBRARY_PATH: `/nowhere:${dir}` }));
  assert.ok(icdLibraryFound(NVIDIA_ICD, "\tlibGLX_nvidia.so.0 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0\n", {}));
  assert.not.ok(icdLibraryFound(NVIDIA_ICD, "\tlibGLX_mesa.so.0 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libGLX_mesa.so.0\n", {}));
  // this machine's software driver (SwiftShader, or lavapipe in a second-driver run), as the doctor reads it
  const swiftshader = icdFiles({ VK_ICD_FILENAMES: softwareVulkanIcd() })[0];
  assert.ok(icdLibraryFound(swiftshader, null), `${swiftshader.file} -> ${swiftshader.library}`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("Dawn's binary not loading: the loader's message gives the cause and the fix (glibc, libstdc++, a missing library), else reinstall", () => {
  const dawn = "/x/node_modules/webgpu/dist/linux-x64/dawn.node";
  // glibc's dynamic loader words these so (dl-version.c, dl-load.c), on RHEL 8, RHEL 9 and a slim container
  assert.is(
    dawnLoadFix(`${dawn}: /lib64/libc.so.6: version \`GLIBC_2.34' not found (required by ${dawn})`, "2.28"),
    "Dawn's binary needs glibc 2.34 or later and this system has glibc 2.28: run on a system with glibc 2.34 or later (Ubuntu 22.04, Debian 12, RHEL 9, or a container image based on one), or use the CPU (RETROMAE_BACKEND=native)",
  );
  assert.match(dawnLoadFix(`${dawn}: /lib64/libc.so.6: version \`GLIBC_2.34' not found (required by ${dawn})`, null), /and this system has an older one:/);
  assert.is(
    dawnLoadFix(`${dawn}: /lib64/libstdc++.so.6: version \`GLIBCXX_3.4.30' not found (required by ${dawn})`, "2.34"),
    "Dawn's binary needs GCC 12's libstdc++ (GLIBCXX_3.4.30) or later, and this system's is older: put a newer libstdc++.so.6 first on LD_LIBRARY_PATH (on a cluster, a gcc module of GCC 12 or later, or conda's libstdcxx-ng), or use the CPU (RETROMAE_BACKEND=native)",
  );
  assert.is(dawnLoadFix(`libgcc_s.so.1: cannot open shared object file: No such file or directory`, "2.36"), "libgcc_s.so.1, which Dawn's binary loads, is missing: install the system package that provides it, or use the CPU (RETROMAE_BACKEND=native)");
  assert.is(dawnLoadFix(`${dawn}: invalid ELF header`, "2.36"), "reinstall with npm ci");
  assert.match(String(runtimeGlibc()), /^2\.\d+$/, "this machine's glibc, as Node reports it");
  // the loader's own words: a copy of dawn.node that asks for a glibc and a libstdc++ newer than any there is
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dawn-"));
  const binary = fs.readFileSync(require.resolve("webgpu/dist/linux-x64/dawn.node"));
  for (const [from, to, fix] of [
    ["GLIBC_2.34", "GLIBC_2.99", /^Dawn's binary needs glibc 2\.99 or later and this system has glibc 2\.\d+: run on a system with glibc 2\.99 or later/],
    ["GLIBCXX_3.4.30", "GLIBCXX_3.4.99", /^Dawn's binary needs a libstdc\+\+ with GLIBCXX_3\.4\.99 or later, and this system's is older: put a newer libstdc\+\+\.so\.6 first on LD_LIBRARY_PATH \(on a cluster, a gcc module, or conda's libstdcxx-ng\)/],
  ] as const) {
    const patched = Buffer.from(binary);
    for (let i = patched.indexOf(`${from}\0`); i >= 0; i = patched.indexOf(`${from}\0`, i + 1)) patched.write(to, i); // (the version names in .dynstr)
    const file = path.join(dir, `${to}.node`);
    fs.writeFileSync(file, patched);
    const err = (() => {
      try {
        process.dlopen({ exports: {} }, file);
        return "loaded";
      } catch (e) {
        return (e as Error).message;
      }
    })();
    assert.match(dawnLoadFix(err), fix, err);
  }
  fs.rmSync(dir, { recursive: true, force: true });
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
