#!/usr/bin/env node
// Entry point of the `retromae` command: the compiled CLI when built (npm ci
// builds it), otherwise the TypeScript source through ts-node.
"use strict";
const fs = require("fs");
const path = require("path");
const built = path.join(__dirname, "..", "dist", "bin", "cli.js");
if (fs.existsSync(built)) {
  require(built);
} else {
  require("ts-node").register({ transpileOnly: true, project: path.join(__dirname, "..", "tsconfig.json") });
  require("./cli.ts");
}
