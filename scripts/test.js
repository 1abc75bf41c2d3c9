#!/usr/bin/env node
// Runs every test/**/*.test.ts file in its own Node process (tfjs keeps global
// engine state, so files stay isolated), two at a time, and ends with the line
// "N passed, M failed". A file that crashes before uvu's summary counts as one
// failure. Usage: npm test [-- FILTER...]  (substring match on the path)
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

// Largest files first: they are the slow ones, and starting them early shortens the run.
const files = find(path.join(root, "test"))
  .filter((f) => filters.length === 0 || filters.some((s) => path.relative(root, f).includes(s)))
  .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size);

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0" },
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => {
      const total = /Total:\s+(\d+)/.exec(output);
      const passed = /Passed:\s+(\d+)/.exec(output);
      let p = passed ? Number(passed[1]) : 0;
      let f = total ? Number(total[1]) - p : 1;
      if (code !== 0 && f === 0) f = 1;
      resolve({ file, passed: p, failed: f, output, seconds: (Date.now() - started) / 1000 });
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
      const rel = path.relative(root, r.file);
      console.log(`${r.failed ? "FAIL" : "ok  "} ${rel}  (${r.passed} passed, ${r.failed} failed, ${r.seconds.toFixed(1)}s)`);
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
