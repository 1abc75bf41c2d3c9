/**
 * The native backend built without OpenBLAS, as on a fresh machine with only
 * a C++ compiler: scripts/build-native.js picks the bundled GEMM
 * (native/src/gemm.cc) when pkg-config finds no OpenBLAS, or when
 * RETROMAE_BLAS=bundled; the addon it builds links no BLAS; and the whole
 * kernel suite (test/engine/native.test.ts) passes on it.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..", "..");

/** A copy of native/ (sources only) built by the install script with `env`. */
function build(env: NodeJS.ProcessEnv): { dir: string; addon: string; stdout: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "native-bundled-"));
  fs.cpSync(path.join(ROOT, "native", "src"), path.join(dir, "src"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "native", "binding.gyp"), path.join(dir, "binding.gyp"));
  const r = spawnSync(process.execPath, [path.join(ROOT, "scripts", "build-native.js")], {
    encoding: "utf8",
    env: { ...process.env, RETROMAE_NATIVE_DIR: dir, ...env },
  });
  assert.is(r.status, 0, r.stderr);
  return { dir, addon: path.join(dir, "build", "Release", "retromae_native.node"), stdout: r.stdout };
}

function gemmOf(addon: string): { gemm: string; openblas: string } {
  const script = `const a = require(${JSON.stringify(addon)});
    let openblas = "available";
    try { a.gemm("openblas"); } catch (e) { openblas = e.message; }
    console.log(JSON.stringify({ gemm: a.gemm(), openblas }));`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const built: string[] = [];
test.after(() => built.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

test("no OpenBLAS found: the install builds the bundled GEMM, links no BLAS, and the kernel suite passes on it", () => {
  const b = build({ PKG_CONFIG: "/bin/false" });
  built.push(b.dir);
  assert.match(b.stdout.trim(), /^retromae: native backend built in \d+\.\d s \(the bundled GEMM\)\.$/);
  assert.not.ok(fs.existsSync(path.join(b.dir, "build-error.txt")));
  const g = gemmOf(b.addon);
  assert.match(g.gemm, /^bundled (avx512|avx2|scalar)$/);
  assert.match(g.openblas, /^GEMM "openblas" is not available in this build/);
  const ldd = spawnSync("ldd", [b.addon], { encoding: "utf8" });
  if (ldd.status === 0) assert.not.match(ldd.stdout, /blas/i, "the bundled build links no BLAS");

  // every kernel test, against this addon (RETROMAE_NATIVE_ADDON), with each microkernel the CPU has
  const suite = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(ROOT, "test", "engine", "native.test.ts")], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, RETROMAE_NATIVE_ADDON: b.addon, FORCE_COLOR: "0" },
  });
  const total = /Total:\s+(\d+)/.exec(suite.stdout);
  const passed = /Passed:\s+(\d+)/.exec(suite.stdout);
  assert.ok(total && passed, `native.test.ts printed no summary:\n${suite.stdout}\n${suite.stderr}`);
  assert.ok(Number(total![1]) >= 15, "the whole suite ran");
  assert.is(passed![1], total![1], `native.test.ts on the bundled build:\n${suite.stdout.slice(-3000)}`);
  assert.is(suite.status, 0);
});

test("RETROMAE_BLAS=bundled forces the bundled GEMM where OpenBLAS is installed", () => {
  const b = build({ RETROMAE_BLAS: "bundled" });
  built.push(b.dir);
  assert.match(b.stdout, /\(the bundled GEMM\)/);
  assert.match(gemmOf(b.addon).gemm, /^bundled /);
});

test.run();
