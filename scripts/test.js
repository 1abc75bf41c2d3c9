#!/usr/bin/env node
// Runs every test/**/*.test.ts file in its own Node process (tfjs keeps global
// engine state, so files stay isolated), two at a time, and ends with the line
// "N passed, M failed". A file that crashes before uvu's summary counts as one
// failure. Usage: npm test [-- FILTER...]  (substring match on the path)
//
// The webgpu engine and parity tests run twice: on SwiftShader (Chromium's
// Vulkan on the CPU), and again on Mesa 25's lavapipe, a second and
// independent Vulkan implementation (its own shader compiler, limits,
// subgroups and timestamps), which scripts/lavapipe.sh fetches into
// .cache/lavapipe. Those runs are listed as "FILE [lavapipe]"; a filter of
// "lavapipe" selects only them. test/engine/webgpu-real.test.ts (the real
// tiny model, too slow for SwiftShader) runs on lavapipe only, and so do the
// webgpu tests whose point is a size (webgpu-helpers.ts atScaleRun): the
// SwiftShader run lists them as skipped.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const filters = process.argv.slice(2);
const jobs = Math.max(1, Number(process.env.TEST_JOBS || 2));

function find(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "artifacts" && e.name !== "fixtures") out.push(...find(p));
    } else if (e.name.endsWith(".test.ts")) out.push(p);
  }
  return out.sort();
}

/** The files that run a second time, on lavapipe (RETROMAE_TEST_VULKAN=lavapipe). */
const SECOND_DRIVER = ["test/engine/webgpu.test.ts", "test/model/parity.test.ts"];

const runs = find(path.join(root, "test")).flatMap((file) => {
  const rel = path.relative(root, file);
  return [{ file, label: rel, env: {} }, ...(SECOND_DRIVER.includes(rel) ? [{ file, label: `${rel} [lavapipe]`, env: { RETROMAE_TEST_VULKAN: "lavapipe" } }] : [])];
});
// Largest files first: they are the slow ones, and starting them early shortens the run.
const files = runs
  .filter((r) => filters.length === 0 || filters.some((s) => r.label.includes(s)))
  .sort((a, b) => fs.statSync(b.file).size - fs.statSync(a.file).size);

function runFile({ file, label, env }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0", ...env },
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => {
      const total = /Total:\s+(\d+)/.exec(output);
      const passed = /Passed:\s+(\d+)/.exec(output);
      const skipped = /Skipped:\s+(\d+)/.exec(output);
      let p = passed ? Number(passed[1]) : 0;
      let f = total ? Number(total[1]) - p : 1;
      if (code !== 0 && f === 0) f = 1;
      resolve({ label, passed: p, failed: f, skipped: skipped ? Number(skipped[1]) : 0, output, seconds: (Date.now() - started) / 1000 });
    });
  });
}

(async () => {
  const queue = [...files];
  const results = [];
  async function worker() {
    while (queue.length) {
      const r = await runFile(queue.shift());
      results.push(r);
      console.log(`${r.failed ? "FAIL" : "ok  "} ${r.label}  (${r.passed} passed, ${r.failed} failed, ${r.skipped ? `${r.skipped} skipped, ` : ""}${r.seconds.toFixed(1)}s)`);
      if (r.failed) console.log(r.output.replace(/^/gm, "    "));
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  const passed = results.reduce((a, r) => a + r.passed, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  if (files.length === 0) console.log("no test files matched");
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 || files.length === 0 ? 1 : 0);
})();
