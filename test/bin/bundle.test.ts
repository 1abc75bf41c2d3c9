/**
 * `retromae bundle`: the archive is at most 50 MB, and unpacked into an
 * empty folder it runs `info`, `doctor`, `kernel install` and a short
 * notebook with no node on the PATH (an empty PATH: the launcher is POSIX
 * sh and calls nothing but the bundled runtime and ldconfig by path).
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { keepFile } from "../../bin/bundle";
import { SHARED_DATA } from "../helpers";
import { useSoftwareVulkan } from "../webgpu-helpers";

// the bundle's bench steps run on lavapipe (scripts/lavapipe.sh): its bench step takes a
// fraction of SwiftShader's (this file: about 2 minutes against 4 to 6), and any Vulkan ICD
// shows the bundled loader at work
process.env.RETROMAE_TEST_VULKAN ??= "lavapipe";

const ROOT = path.resolve(__dirname, "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-bundle-test-"));
const archive = path.join(work, "retromae.tar.xz");
const unpacked = path.join(work, "unpacked");
const emptyBin = path.join(work, "empty-bin");
const launcher = path.join(unpacked, "retromae", "bin", "retromae");

/** The launcher under a bare environment: an empty PATH, so no node and no other tool can be found by name. */
function launch(args: string[], timeout = 300_000, extra: NodeJS.ProcessEnv = {}) {
  return spawnSync("/bin/sh", [launcher, ...args], { encoding: "utf8", timeout, cwd: work, env: { HOME: work, PATH: emptyBin, RETROMAE_SHARED_DATA: SHARED_DATA, ...extra } });
}

test("what the bundle keeps of a dependency: Node's entry, declarations, linux-x64 binaries; not maps, tests or other platforms", () => {
  assert.ok(keepFile("webgpu", "dist/linux-x64/dawn.node", "index.js"));
  assert.not.ok(keepFile("webgpu", "dist/darwin-universal/dawn.node", "index.js"));
  assert.ok(keepFile("@tensorflow/tfjs-core", "dist/tf-core.node.js", "dist/tf-core.node.js"));
  assert.ok(keepFile("@tensorflow/tfjs-core", "dist/ops/matmul.d.ts", "dist/tf-core.node.js"), "the kernel type-checks cells against tfjs's declarations");
  assert.not.ok(keepFile("@tensorflow/tfjs-core", "dist/tf-core.min.js", "dist/tf-core.node.js"));
  assert.ok(keepFile("@tensorflow/tfjs-backend-wasm", "dist/tfjs-backend-wasm-simd.wasm", "dist/tf-backend-wasm.node.js"));
  assert.ok(keepFile("zeromq", "build/manifest.json", "lib/index.js"));
  assert.ok(keepFile("zeromq", "build/linux/x64/node/glibc-115-Release/addon.node", "lib/index.js"));
  assert.not.ok(keepFile("zeromq", "build/darwin/x64/node/115/addon.node", "lib/index.js"));
  assert.not.ok(keepFile("anything", "lib/index.js.map", "lib/index.js"));
  assert.ok(keepFile("anything", "LICENSE", "lib/index.js"));
});

test("an --out in a folder that does not exist gets one sentence, before any work", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "bundle", "--out", path.join(work, "missing", "x.tar.xz")], { encoding: "utf8", timeout: 60_000 });
  assert.is.not(r.status, 0);
  assert.match(r.stderr.trim(), /The folder for --out, .*missing, does not exist; create it or pass another path\.$/);
  assert.not.ok(fs.existsSync(path.join(work, "missing")));
});

test("retromae bundle writes one archive of at most 50 MB", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "bundle", "--out", archive], { encoding: "utf8", timeout: 900_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*retromae\.tar\.xz: [\d.]+ MB \(\d+ MB unpacked\)/);
  // read off the binaries (objdump -T): Node 20's builds need glibc 2.28, webgpu 0.6.2's dawn.node glibc 2.34 and GCC 12's libstdc++;
  // the addon, built on Debian 12, no more than Node.js (its log() bound to glibc's old version: 2.29's would shut out RHEL 8)
  const needs = /^the node needs glibc 2\.(\d+) or later for Node\.js, 2\.(\d+) for the native CPU backend, and for the webgpu backend glibc 2\.3\d and libstdc\+\+ GLIBCXX_3\.4\.\d+$/m.exec(r.stderr);
  assert.ok(needs, r.stderr);
  assert.ok(Number(needs[2]) <= Number(needs[1]), needs[0]);
  const mb = fs.statSync(archive).size / 2 ** 20;
  assert.ok(mb <= 50, `${mb.toFixed(1)} MB`);
  assert.equal(fs.readdirSync(work).filter((f) => f.includes(".tmp")), [], "no temporary file left");
  fs.mkdirSync(unpacked);
  fs.mkdirSync(emptyBin);
  const x = spawnSync("tar", ["-xJf", archive, "-C", unpacked], { encoding: "utf8" });
  assert.is(x.status, 0, x.stderr);
  // the runtime without its symbol table (strip comes with g++, which the native addon needs): Node.js 26's archive was 51.3 MB with it
  assert.match(r.stderr, /^the Node\.js runtime, stripped of its symbol table: \d+ → \d+ MB$/m);
  const runtime = path.join(unpacked, "retromae", "node", "bin", "node");
  assert.ok(fs.statSync(runtime).size <= fs.statSync(fs.realpathSync(process.execPath)).size, "no larger than the runtime that built it");
  const sections = spawnSync("readelf", ["-S", "--wide", runtime], { encoding: "utf8" });
  assert.is(sections.status, 0, sections.stderr);
  assert.not.match(sections.stdout, /\.symtab\b/, "no symbol table");
  assert.match(sections.stdout, /\.dynsym\b/, "the dynamic symbols that addons link against");
  for (const f of ["node/bin/node", "lib/vulkan/libvulkan.so.1", "lib/gl/libGLdispatch.so.0", "app/native/build/Release/retromae_native.node", "app/node_modules/webgpu/dist/linux-x64/dawn.node"]) {
    assert.ok(fs.existsSync(path.join(unpacked, "retromae", f)), f);
  }
});

test("unpacked with no node on the PATH: info and doctor run, and report the bundled runtime", () => {
  const info = launch(["info"]);
  assert.is(info.status, 0, info.stderr);
  const i = JSON.parse(info.stdout);
  assert.is(i.versions.node, process.versions.node);
  assert.ok(["native", "webgpu", "wasm", "cpu"].includes(i.backend), i.backend);
  if (i.backend === "native") assert.match(i.package, /GEMM: bundled/, "no system BLAS in the bundle");
  const doctor = launch(["doctor", "--json"]);
  assert.is(doctor.status, 0, doctor.stderr);
  const d = JSON.parse(doctor.stdout);
  assert.ok(d.webgpu.checks.some((c: { name: string; ok: boolean }) => c.name === "Vulkan loader" && c.ok), "the loader loads (the system's or the bundle's)");
});

test("on a system whose glibc is older than the bundled Node.js needs, the launcher says so in one sentence instead of the loader's error", () => {
  const old = path.join(work, "old-glibc");
  fs.mkdirSync(old);
  // what getconf says on CentOS 7
  fs.writeFileSync(path.join(old, "getconf"), "#!/bin/sh\necho glibc 2.17\n", { mode: 0o755 });
  const r = launch(["info"], 60_000, { PATH: old });
  assert.is(r.status, 1);
  assert.is(r.stdout, "");
  assert.match(r.stderr.trim(), /^retromae: this system's glibc is 2\.17, and the bundled Node\.js needs 2\.\d+ or later \(the webgpu backend 2\.3\d\); run on a newer system \(Ubuntu 22\.04, Debian 12, RHEL 9 or later, or a container image based on one\)\.$/);
  fs.writeFileSync(path.join(old, "getconf"), "#!/bin/sh\necho glibc 2.99\n", { mode: 0o755 });
  assert.is(launch(["info"], 60_000, { PATH: old }).status, 0, "a newer one runs");
});

test("unpacked with no node on the PATH: kernel install and a short notebook", () => {
  const prefix = path.join(work, "prefix");
  const k = launch(["kernel", "install", "--prefix", prefix]);
  assert.is(k.status, 0, k.stderr);
  const spec = JSON.parse(fs.readFileSync(path.join(prefix, "share", "jupyter", "kernels", "retromae", "kernel.json"), "utf8"));
  assert.is(spec.argv[0], path.join(unpacked, "retromae", "node", "bin", "node"), "the kernelspec runs the bundled node");
  const nb = path.join(work, "short.ipynb");
  const cell = (source: string) => ({ cell_type: "code", metadata: {}, execution_count: null, outputs: [], source });
  fs.writeFileSync(nb, JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "retromae", display_name: "RetroMAE (TypeScript)", language: "typescript" } },
    cells: [cell(`import { backend, tf } from "retromae";\nconst c = await backend.use("auto");\nconsole.log(c.backend);\n(await tf.sum(tf.ones([3, 4])).data())[0]`), cell(`const x: number = 6 * 7;\nx`)],
  }));
  const out = path.join(work, "short.out.ipynb");
  const r = launch(["run", nb, "--out", out, "--timeout", "120"]);
  assert.is(r.status, 0, r.stdout + r.stderr);
  const cells = JSON.parse(fs.readFileSync(out, "utf8")).cells as { outputs: { output_type: string; data?: Record<string, unknown> }[] }[];
  const text = (c: { outputs: { data?: Record<string, unknown> }[] }) => c.outputs.map((o) => [o.data?.["text/plain"]].flat().join("")).join("");
  assert.is(text(cells[0]), "12");
  assert.is(text(cells[1]), "42");
});

test("unpacked with no node on the PATH: bench gpu runs (on a software adapter here, lavapipe, and says so)", () => {
  const r = launch(["bench", "gpu", "--configs", "tiny:2x16", "--steps", "1", "--probe-docs", "0"], 600_000, { VK_ICD_FILENAMES: useSoftwareVulkan() });
  assert.is(r.status, 0, r.stderr);
  const row = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith('{"bench":"gpu"'))!);
  assert.is(row.backend, "webgpu");
  assert.is(row.not_gpu, true);
  assert.ok(row.ms_per_step > 0 && row.tokens_per_s > 0);
  assert.ok(row.profile.gpu_ms > 0 && row.profile.categories.some((c: { category: string }) => c.category === "matmul"), "a step profiled with GPU timestamps");
  assert.match(row.torch, /^skipped: /);
});

test("scripts/gpu-node-check.sh, the GPU node's prepared run, works from the unpacked bundle with no node on the PATH (lavapipe here)", () => {
  // the tools the script calls, and no node
  const tools = path.join(work, "tools");
  fs.mkdirSync(tools);
  for (const t of ["sh", "date", "mkdir", "mktemp", "tar", "xz", "timeout", "grep", "ls", "env", "rm"]) {
    const found = ["/usr/bin", "/bin"].map((d) => path.join(d, t)).find((f) => fs.existsSync(f));
    if (found) fs.symlinkSync(found, path.join(tools, t));
  }
  const out = path.join(work, "gpu-check");
  const script = path.join(ROOT, "scripts", "gpu-node-check.sh");
  // a bench step on SwiftShader took about 10 s per training step (6 of them), more under CI's parallel load; lavapipe is faster
  const env = { HOME: work, PATH: tools, VK_ICD_FILENAMES: useSoftwareVulkan(), BENCH_STEPS: "1", PROBE_DOCS: "0", DEADLINE_S: "700", STEP_S: "360" };
  const refused = spawnSync("/bin/sh", [script, path.join(unpacked, "retromae"), work, out], { encoding: "utf8", env });
  assert.is(refused.status, 2);
  assert.match(refused.stderr.trim(), /has no beir-scifact; pass the data folder \(\.\.\/shared\/data\) or an archive of it as the second argument\.$/);
  // the data as one archive, as it travels to a GPU node (2 MB where the folder is 8)
  const data = path.join(work, "data.tar.xz");
  assert.is(spawnSync("tar", ["-C", SHARED_DATA, "-cJf", data, "beir-scifact", "bert-base-uncased"]).status, 0);
  const r = spawnSync("/bin/sh", [script, path.join(unpacked, "retromae"), data, out, "doctor", "bench:tiny:2x16", "host"], { encoding: "utf8", env, timeout: 800_000 });
  assert.is(r.status, 0, r.stdout + r.stderr);
  const steps = fs.readFileSync(path.join(out, "steps.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: string; exit: number });
  assert.equal(steps.map((s) => [s.step, s.exit]), [["doctor", 0], ["info", 0], ["bench:tiny:2x16", 0], ["host", 0]]);
  const host = fs.readFileSync(path.join(out, "bench-gpu.jsonl"), "utf8").split("\n").filter((l) => l.startsWith('{"bench":"host","engine":"webgpu')).map((l) => JSON.parse(l));
  assert.equal(host.map((h) => h.preset), ["tiny", "tiny", "mini", "mini"], "the host's time per step on Dawn's Null backend, replayed and through tfjs, from the bundle");
  assert.ok(host.every((h) => h.dispatches_per_step > 100 && h.host_ms_per_step > 0));
  assert.ok(host.filter((h) => h.recorded_steps).every((h) => h.recorded_steps.replayed > 0), "the bundled trainer replays its steps");
  const thread = fs.readFileSync(path.join(out, "bench-gpu.jsonl"), "utf8").split("\n").filter((l) => l.startsWith('{"bench":"host","engine":"the collating thread')).map((l) => JSON.parse(l));
  assert.is(thread.length, 1);
  assert.ok(thread[0].steps_made_ahead > 0 && !("thread_off" in thread[0]), `the bundled trainer makes batches on the collating thread (from the build, no ts-node): ${JSON.stringify(thread[0])}`);
  assert.match(fs.readFileSync(path.join(out, "doctor.txt"), "utf8"), /WebGPU/);
  assert.is(JSON.parse(fs.readFileSync(path.join(out, "info.json"), "utf8")).versions.node, process.versions.node);
  const rows = fs.readFileSync(path.join(out, "bench-gpu.jsonl"), "utf8").split("\n").filter((l) => l.startsWith('{"bench":"gpu"')).map((l) => JSON.parse(l));
  assert.is(rows[0].engine, "webgpu");
  assert.is(rows[0].not_gpu, true);
  assert.ok(rows[0].ms_per_step > 0);
  assert.match(fs.readFileSync(path.join(out, "bench-gpu.log"), "utf8"), /bench gpu: tiny 2x16 on webgpu: \{/, "each row is logged as soon as it is measured");
});

test("the GPU node's quickstart step runs the bundled quickstart on webgpu, with no node on the PATH (Dawn's Null backend here, in reduced mode)", () => {
  const tools = path.join(work, "tools");
  const out = path.join(work, "gpu-check-quickstart");
  const data = path.join(work, "data.tar.xz");
  const env = {
    HOME: work, PATH: tools, RETROMAE_WEBGPU_ADAPTER: "null-backend", DEADLINE_S: "400", STEP_S: "300",
    QUICKSTART_ARGS: "-p steps=4 -p batchSize=2 -p maxLength=64 -p probeEvery=2 -p probeDocs=50 -p probeBatchSize=16",
  };
  const r = spawnSync("/bin/sh", [path.join(ROOT, "scripts", "gpu-node-check.sh"), path.join(unpacked, "retromae"), data, out, "quickstart"], { encoding: "utf8", env, timeout: 500_000 });
  assert.is(r.status, 0, r.stdout + r.stderr);
  const log = fs.readFileSync(path.join(out, "quickstart.log"), "utf8");
  assert.equal(fs.readFileSync(path.join(out, "steps.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).map((s: { step: string; exit: number }) => [s.step, s.exit]), [["quickstart", 0]], log.slice(-3000));
  assert.match(log, /as RETROMAE_BACKEND=webgpu asks in place of auto/, "the step runs on webgpu, not on a CPU fallback");
  assert.match(log, /\[11\/11\] ok/);
  assert.match(fs.readFileSync(path.join(out, "quickstart.html"), "utf8"), /DecompressionStream/);
});

test.after(() => fs.rmSync(work, { recursive: true, force: true }));
test.run();
