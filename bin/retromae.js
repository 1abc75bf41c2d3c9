#!/usr/bin/env node
// Entry point of the `retromae` command: the compiled CLI (npm ci builds it),
// or the TypeScript source through ts-node when there is no build or a source
// file is newer than it (a checkout being edited).
"use strict";
const fs = require("fs");
const path = require("path");
const root = path.join(__dirname, "..");
const built = path.join(root, "dist", "bin", "cli.js");

function newestSource(dir) {
  let newest = 0;
  if (!fs.existsSync(dir)) return newest;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith(".ts")) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

const fresh = fs.existsSync(built) && fs.statSync(built).mtimeMs >= Math.max(newestSource(path.join(root, "lib")), newestSource(path.join(root, "bin")), newestSource(path.join(root, "kernel")));
if (fresh) {
  require(built);
} else {
  require("ts-node").register({ transpileOnly: true, project: path.join(root, "tsconfig.json") });
  require("./cli.ts");
}
