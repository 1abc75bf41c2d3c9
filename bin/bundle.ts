/**
 * `retromae bundle [--out FILE]`: one compressed archive that runs on a
 * Linux x86-64 GPU node with no network and no Node.js. Unpacked anywhere:
 *
 *   retromae/bin/retromae        the launcher (POSIX sh): info, doctor, run NOTEBOOK, bench gpu, kernel install
 *   retromae/node/bin/node       the Node.js runtime that ran this command
 *   retromae/app/                the package, built; its production dependencies, pruned to what
 *                                Node loads on linux-x64 (one dawn.node, zeromq's linux build)
 *   retromae/app/native/...      the native addon, built with the bundled GEMM (no system BLAS) for
 *                                x86-64-v3 (AVX2 + FMA), so it runs on other CPUs than this one
 *   retromae/lib/vulkan, lib/gl  the Vulkan loader (libvulkan.so.1) and the GL dispatch library that
 *                                NVIDIA's Vulkan driver loads (libGLdispatch.so.0), from this machine's
 *                                Debian packages (libvulkan1, libglvnd0); the launcher puts each on
 *                                LD_LIBRARY_PATH only where the system has none
 *
 * The archive is tar + xz, written under a temporary name and renamed.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { PACKAGE_ROOT as ROOT } from "../lib/util/files";

/** What of the package the bundle carries (besides node_modules and the native addon). */
const APP_FILES = ["package.json", "README.md", "tsconfig.json", "dist", "bin/retromae.js", "models", "kernel", "runner", "bench", "lib", "notebooks"];

/** Libraries the launcher falls back to where the system lacks them: folder, soname, Debian package. */
const FALLBACK_LIBS: [string, string, string][] = [
  ["vulkan", "libvulkan.so.1", "libvulkan1"],
  ["gl", "libGLdispatch.so.0", "libglvnd0"],
];

const LAUNCHER = `#!/bin/sh
# retromae launcher: the bundled Node.js runs the bundled package. The Vulkan
# loader and the GL dispatch library in lib/ are used only where the system
# has none (a system's own are matched to its driver).
here=\${0%/*}
case "$here" in /*) ;; *) here="$PWD/$here" ;; esac
root=\${here%/bin}
ldcache=$( (/sbin/ldconfig -p || /usr/sbin/ldconfig -p || ldconfig -p) 2>/dev/null)
extra=
for pair in vulkan:libvulkan.so.1 gl:libGLdispatch.so.0; do
  dir=\${pair%%:*}
  lib=\${pair#*:}
  case "$ldcache" in *"$lib "*) ;; *) extra="$extra:$root/lib/$dir" ;; esac
done
if [ -n "$extra" ]; then
  LD_LIBRARY_PATH="\${extra#:}\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
# the bundled Node.js needs glibc @NODE_GLIBC@ or later: say so in one sentence, where the loader would print its own
have=$( (command -v getconf >/dev/null && getconf GNU_LIBC_VERSION || /usr/bin/getconf GNU_LIBC_VERSION) 2>/dev/null)
have=\${have#glibc }
case "$have" in
  [0-9]*.[0-9]*)
    major=\${have%%.*}; minor=\${have#*.}; minor=\${minor%%[!0-9]*}
    if [ "$major" -lt @NODE_GLIBC_MAJOR@ ] || { [ "$major" -eq @NODE_GLIBC_MAJOR@ ] && [ "$minor" -lt @NODE_GLIBC_MINOR@ ]; }; then
      echo "retromae: this system's glibc is $have, and the bundled Node.js needs @NODE_GLIBC@ or later (the webgpu backend @DAWN_GLIBC@); run on a newer system (Ubuntu 22.04, Debian 12, RHEL 9 or later, or a container image based on one)." >&2
      exit 1
    fi
    ;;
esac
PATH="$root/node/bin:$PATH"
export PATH
exec "$root/node/bin/node" "$root/app/bin/retromae.js" "$@"
`;

/**
 * The newest version of each of glibc's and libstdc++'s symbol sets that an
 * ELF binary needs (objdump -T; binutils is there wherever the native addon
 * builds), as "major.minor" for glibc and "3.4.n" for libstdc++; null where
 * it needs none.
 */
export function glibcNeeds(file: string): { glibc: string | null; glibcxx: string | null } {
  const symbols = run("objdump", ["-T", file]);
  const newest = (prefix: string) => {
    const found = [...symbols.matchAll(new RegExp(`\\(${prefix}_([\\d.]+)\\)`, "g"))].map((m) => m[1]);
    const key = (v: string) => v.split(".").map((n) => n.padStart(4, "0")).join(".");
    return found.length ? found.reduce((a, b) => (key(b) > key(a) ? b : a)) : null;
  };
  return { glibc: newest("GLIBC"), glibcxx: newest("GLIBCXX") };
}

function fail(message: string): never {
  throw new Error(message);
}

function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 26, ...options });
  if (r.error) fail(`${cmd} could not run (${r.error.message}).`);
  if (r.status !== 0) fail(`${cmd} ${args.join(" ")} failed: ${(r.stderr || r.stdout).trim().split("\n").pop()}`);
  return r.stdout;
}

/**
 * Drop the runtime's symbol table (binutils' strip), as distributions ship Node.js: the official
 * builds keep it, 4 to 5 MB of the archive (Node.js 26: 51.3 MB with it). Addons link against the
 * dynamic symbols, which strip keeps. Where strip is missing or fails, the copy stays as it was.
 */
function stripRuntime(node: string): string {
  const before = fs.statSync(node).size;
  const r = spawnSync("strip", [node], { encoding: "utf8" });
  if (r.error || r.status !== 0) return `the Node.js runtime goes in with its symbol table (strip ${r.error ? "is not installed: apt-get install binutils" : `failed: ${(r.stderr || "").trim().split("\n").pop()}`})`;
  return `the Node.js runtime, stripped of its symbol table: ${(before / 2 ** 20).toFixed(0)} → ${(fs.statSync(node).size / 2 ** 20).toFixed(0)} MB`;
}

/** Production dependency folders (relative to ROOT), as npm resolves them. */
function productionPackages(): string[] {
  const r = spawnSync("npm", ["ls", "--omit=dev", "--all", "--parseable", "--silent"], { cwd: ROOT, encoding: "utf8", maxBuffer: 1 << 26 });
  const dirs = (r.stdout || "").split("\n").map((l) => l.trim()).filter((l) => l.startsWith(ROOT) && l !== ROOT);
  if (dirs.length === 0) fail("npm ls listed no production dependencies; run npm ci first.");
  return [...new Set(dirs.map((d) => path.relative(ROOT, d)))].filter((d) => d.startsWith("node_modules") && fs.existsSync(path.join(ROOT, d)));
}

/**
 * Whether a file of package `pkg` (at `rel` inside it) goes into the bundle:
 * what Node loads on linux-x64, the declarations the kernel type-checks cells
 * against, and licences; not source maps, tests, other platforms' binaries,
 * or tfjs's ES-module and browser builds (Node loads each package's "main").
 */
export function keepFile(pkg: string, rel: string, main: string | undefined): boolean {
  const base = path.basename(rel);
  if (/^(license|licence|notice)/i.test(base)) return true;
  if (rel === "package.json") return true;
  if (base.endsWith(".map") || /(^|\/)(test|tests|__tests__|docs?|examples?|\.github)\//.test(rel)) return false;
  if (pkg === "webgpu") return rel === "index.js" || rel === "types.d.ts" || rel === "dist/linux-x64/dawn.node";
  if (pkg === "zeromq") return (!rel.startsWith("build/") || rel === "build/manifest.json" || rel.startsWith("build/linux/x64/")) && !/^(src|script|vcpkg|CMakeLists)/.test(rel);
  if (pkg === "typescript") return rel === "lib/typescript.js" || /^lib\/lib\..*\.d\.ts$/.test(rel) || rel === "lib/typescript.d.ts";
  if (pkg === "plotly.js-dist") return rel === main || rel === "plotly.js";
  if (pkg.startsWith("@tensorflow/")) return rel === main || rel.endsWith(".d.ts") || rel.endsWith(".wasm");
  if (pkg === "cmake-ts") return rel.startsWith("build/loader"); // zeromq loads its addon through it
  if (pkg === "core-js") return false; // tfjs's browser polyfills
  return !/\.md$/i.test(base);
}

function copyTree(from: string, to: string, keep: (rel: string) => boolean): void {
  const walk = (rel: string) => {
    const src = path.join(from, rel);
    for (const e of fs.readdirSync(src, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (e.name !== "node_modules") walk(r);
      } else if ((e.isFile() || e.isSymbolicLink()) && keep(r)) {
        fs.mkdirSync(path.dirname(path.join(to, r)), { recursive: true });
        fs.copyFileSync(path.join(from, r), path.join(to, r));
      }
    }
  };
  walk("");
}

function treeBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? treeBytes(path.join(dir, e.name)) : fs.lstatSync(path.join(dir, e.name)).size;
  return n;
}

/** Where ldconfig finds a soname. */
function findLibrary(soname: string): string | null {
  const out = spawnSync("/sbin/ldconfig", ["-p"], { encoding: "utf8" }).stdout ?? "";
  const line = out.split("\n").find((l) => l.trim().startsWith(`${soname} `) && l.includes("x86-64"));
  return line ? line.split("=>")[1].trim() : null;
}

export interface BundleResult {
  file: string;
  bytes: number;
  unpackedBytes: number;
}

export function bundle(out?: string, log: (line: string) => void = () => undefined): BundleResult {
  if (process.platform !== "linux" || process.arch !== "x64") fail(`retromae bundle makes a Linux x86-64 archive and must run on one (this is ${process.platform}-${process.arch}).`);
  if (!fs.existsSync(path.join(ROOT, "dist", "bin", "cli.js"))) fail("The package is not built; run npm ci (or npm run build) first.");
  const version = (JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string }).version;
  const file = path.resolve(out ?? `retromae-${version}-linux-x64.tar.xz`);
  if (!fs.existsSync(path.dirname(file))) fail(`The folder for --out, ${path.dirname(file)}, does not exist; create it or pass another path.`);
  const libs = FALLBACK_LIBS.map(([dir, soname, pkg]) => {
    const found = findLibrary(soname);
    if (!found) fail(`${soname} is not installed here, and the bundle carries it for nodes without one: apt-get install ${pkg}.`);
    return { dir, soname, found };
  });

  const stage = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-bundle-"));
  try {
    const top = path.join(stage, "retromae");
    const app = path.join(top, "app");
    // the runtime
    fs.mkdirSync(path.join(top, "node", "bin"), { recursive: true });
    fs.copyFileSync(fs.realpathSync(process.execPath), path.join(top, "node", "bin", "node"));
    fs.chmodSync(path.join(top, "node", "bin", "node"), 0o755);
    log(stripRuntime(path.join(top, "node", "bin", "node")));
    // the package, with its timestamps (bin/retromae.js runs dist/ when it is newer than the sources)
    for (const f of APP_FILES) {
      const src = path.join(ROOT, f);
      if (!fs.existsSync(src)) continue;
      fs.cpSync(src, path.join(app, f), { recursive: true, preserveTimestamps: true, filter: (p) => !p.endsWith(".map") && !p.includes(`${path.sep}runs${path.sep}`) && !/\.out\.ipynb$|\.html$/.test(p) });
    }
    const now = new Date();
    fs.utimesSync(path.join(app, "dist", "bin", "cli.js"), now, now);
    // production dependencies, pruned
    for (const dir of productionPackages()) {
      const pj = JSON.parse(fs.readFileSync(path.join(ROOT, dir, "package.json"), "utf8")) as { name: string; main?: string };
      const main = pj.main ? path.posix.normalize(pj.main.endsWith(".js") || pj.main.endsWith(".node") ? pj.main : `${pj.main}.js`) : undefined;
      copyTree(path.join(ROOT, dir), path.join(app, dir), (rel) => keepFile(pj.name, rel, main));
    }
    // the native addon: the bundled GEMM, for x86-64-v3
    const native = path.join(app, "native");
    fs.mkdirSync(native, { recursive: true });
    fs.cpSync(path.join(ROOT, "native", "binding.gyp"), path.join(native, "binding.gyp"));
    fs.cpSync(path.join(ROOT, "native", "src"), path.join(native, "src"), { recursive: true });
    log("building the native addon (bundled GEMM, x86-64-v3)");
    const built = run(process.execPath, [path.join(ROOT, "scripts", "build-native.js")], { env: { ...process.env, RETROMAE_NATIVE_DIR: native, RETROMAE_BLAS: "bundled", RETROMAE_MARCH: "x86-64-v3" } });
    const addon = path.join(native, "build", "Release", "retromae_native.node");
    if (!fs.existsSync(addon)) fail(`The native addon did not build for the bundle: ${built.trim()}`);
    const keepAddon = fs.readFileSync(addon);
    fs.rmSync(path.join(native, "build"), { recursive: true, force: true });
    fs.mkdirSync(path.join(native, "build", "Release"), { recursive: true });
    fs.writeFileSync(addon, keepAddon);
    // the fallback libraries and the launcher
    for (const { dir, soname, found } of libs) {
      fs.mkdirSync(path.join(top, "lib", dir), { recursive: true });
      fs.copyFileSync(fs.realpathSync(found), path.join(top, "lib", dir, soname));
    }
    // what the node needs of its C library: the launcher checks the runtime's, and the log names each
    const nodeNeeds = glibcNeeds(path.join(top, "node", "bin", "node"));
    const dawnNeeds = glibcNeeds(path.join(app, "node_modules", "webgpu", "dist", "linux-x64", "dawn.node"));
    const nodeGlibc = nodeNeeds.glibc ?? "2.17";
    const [major, minor] = nodeGlibc.split(".");
    const addonGlibc = glibcNeeds(addon).glibc;
    log(`the node needs glibc ${nodeGlibc} or later for Node.js, ${addonGlibc} for the native CPU backend, and for the webgpu backend glibc ${dawnNeeds.glibc} and libstdc++ GLIBCXX_${dawnNeeds.glibcxx}`);
    const launcher = LAUNCHER.replace(/@NODE_GLIBC@/g, nodeGlibc).replace(/@NODE_GLIBC_MAJOR@/g, major).replace(/@NODE_GLIBC_MINOR@/g, minor).replace(/@DAWN_GLIBC@/g, dawnNeeds.glibc ?? nodeGlibc);
    fs.mkdirSync(path.join(top, "bin"), { recursive: true });
    fs.writeFileSync(path.join(top, "bin", "retromae"), launcher, { mode: 0o755 });
    // one archive, written whole or not at all
    log(`compressing ${(treeBytes(top) / 2 ** 20).toFixed(0)} MB`);
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      run("tar", ["-C", stage, "-cJf", tmp, "retromae"], { env: { ...process.env, XZ_OPT: `-6 -T${Math.max(1, os.cpus().length)}` } });
      fs.renameSync(tmp, file);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    return { file, bytes: fs.statSync(file).size, unpackedBytes: treeBytes(top) };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}
