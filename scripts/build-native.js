#!/usr/bin/env node
/**
 * Builds the native backend's addon (native/) at `npm install` with node-gyp
 * and the machine's g++. Nothing is downloaded: Node's headers come from the
 * Node installation itself.
 *
 * Matrix products: OpenBLAS (Debian's libopenblas-dev) when pkg-config finds
 * it, else the GEMM bundled in native/src/gemm.cc, which needs only the
 * compiler. RETROMAE_BLAS=openblas|bundled forces one (tests, benchmarks);
 * openblas then fails the build when it is missing, with the reason on file.
 *
 * It never fails the install. Where the addon can't be built (no compiler,
 * no headers) it writes the reason to native/build-error.txt and prints one
 * line; `backend.use("auto")` then falls back to wasm and says why.
 *
 * Environment: RETROMAE_SKIP_NATIVE=1 skips the build; RETROMAE_MARCH sets
 * g++'s -march (default native; `retromae bundle` builds for x86-64-v3); RETROMAE_NATIVE_DIR
 * builds another copy of native/ (tests); PKG_CONFIG names pkg-config.
 */
"use strict";
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const dir = path.resolve(process.env.RETROMAE_NATIVE_DIR || path.join(__dirname, "..", "native"));
const errorFile = path.join(dir, "build-error.txt");

function fail(reason) {
  // no stale addon from an earlier build may stay behind a failed one
  fs.rmSync(path.join(dir, "build", "Release", "retromae_native.node"), { force: true });
  fs.writeFileSync(errorFile + ".tmp", reason + "\n");
  fs.renameSync(errorFile + ".tmp", errorFile);
  console.log(`retromae: native backend not built (${reason}); the wasm backend will be used.`);
  process.exit(0);
}

if (process.env.RETROMAE_SKIP_NATIVE === "1") fail("RETROMAE_SKIP_NATIVE=1");

const wanted = process.env.RETROMAE_BLAS || "auto";
if (!["auto", "openblas", "bundled"].includes(wanted)) fail(`RETROMAE_BLAS="${wanted}" is not one of openblas, bundled, auto`);
const pkgConfig = process.env.PKG_CONFIG || "pkg-config";
let openblas = null;
if (wanted !== "bundled") {
  const found = spawnSync(pkgConfig, ["--modversion", "openblas"], { encoding: "utf8" });
  if (!found.error && found.status === 0) openblas = found.stdout.trim();
  else if (wanted === "openblas") fail("RETROMAE_BLAS=openblas, but pkg-config finds no OpenBLAS: apt-get install libopenblas-dev pkg-config");
}

// node-gyp: the copy npm passes to install scripts, else the one inside npm
const candidates = [
  process.env.npm_config_node_gyp,
  path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
].filter(Boolean);
const nodeGyp = candidates.find((p) => fs.existsSync(p));
if (!nodeGyp) fail("node-gyp not found (it comes with npm)");

// Node's own headers, so node-gyp doesn't try to download them
const args = [nodeGyp, "rebuild"];
const headers = path.join(path.dirname(process.execPath), "..", "include", "node");
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(headers, "node_api.h"))) {
  args.push(`--nodedir=${path.resolve(headers, "..", "..")}`);
}
const march = process.env.RETROMAE_MARCH || "native";
if (!/^[\w.-]+$/.test(march)) fail(`RETROMAE_MARCH="${march}" is not a -march value`);
args.push("--", `-Dblas=${openblas ? "openblas" : "bundled"}`, `-Dmarch=${march}`);

const started = Date.now();
const r = spawnSync(process.execPath, args, { cwd: dir, encoding: "utf8" });
if (r.status !== 0) {
  const out = `${r.stdout}\n${r.stderr}`.split("\n");
  const first = out.find((l) => /error/i.test(l) && !/^gyp info/.test(l)) || `node-gyp exited with ${r.status}`;
  fail(first.trim().slice(0, 300));
}
if (fs.existsSync(errorFile)) fs.unlinkSync(errorFile);
const gemm = openblas ? `OpenBLAS ${openblas}` : "the bundled GEMM";
console.log(`retromae: native backend built in ${((Date.now() - started) / 1000).toFixed(1)} s (${gemm}).`);
