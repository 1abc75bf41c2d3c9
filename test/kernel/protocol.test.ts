/**
 * Protocol checks beyond the standard suite (protocol_checks.py): output
 * ordering, interrupts, heartbeat, stdin, signatures, binding, fuzzing,
 * restart and shutdown, imports, types in completion and tracebacks.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import { installKernel, pythonTests } from "./harness";

const { env, prefix } = installKernel();

// A notebook directory with an ESM-only package and a relative .ts module.
const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-kernel-cwd-"));
const pkg = path.join(cwd, "node_modules", "esm-only");
fs.mkdirSync(pkg, { recursive: true });
fs.writeFileSync(path.join(pkg, "package.json"), JSON.stringify({ name: "esm-only", version: "1.0.0", type: "module", exports: { ".": { types: "./index.d.ts", import: "./index.js" } } }));
fs.writeFileSync(path.join(pkg, "index.js"), 'export const hello = () => "hi from esm";\n');
fs.writeFileSync(path.join(pkg, "index.d.ts"), "export declare const hello: () => string;\n");
fs.writeFileSync(path.join(cwd, "helper.ts"), "export function twice(x: number): number {\n  return 2 * x;\n}\n");

pythonTests("protocol_checks", { ...env, KERNEL_CWD: cwd, HB_SECONDS: process.env.HB_SECONDS ?? "10" }, 900_000);
test.after(() => {
  fs.rmSync(prefix, { recursive: true, force: true });
  fs.rmSync(cwd, { recursive: true, force: true });
});
test.run();
