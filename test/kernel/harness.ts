/**
 * Shared set-up for the tests that drive the real kernel process through
 * Debian's Python Jupyter clients: a kernelspec installed into a scratch
 * prefix (found through JUPYTER_PATH), and a Python unittest module whose
 * tests become uvu tests, one each.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";

export const ROOT = path.resolve(__dirname, "..", "..");
export const PYTHON = "/usr/bin/python3";

/** Install the kernelspec with the real CLI into a scratch prefix; returns the env for Jupyter clients. */
export function installKernel(): { env: NodeJS.ProcessEnv; prefix: string } {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-kernelspec-"));
  execFileSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "kernel", "install", "--prefix", prefix], { stdio: "pipe" });
  const env = { ...process.env, JUPYTER_PATH: path.join(prefix, "share", "jupyter"), JUPYTER_PLATFORM_DIRS: "1", PYTHONDONTWRITEBYTECODE: "1" };
  return { env, prefix };
}

/** Run a Python unittest module (in test/kernel) and declare one uvu test per Python test. */
export function pythonTests(module: string, env: NodeJS.ProcessEnv, timeoutMs: number, names: string[] = []): void {
  const r = spawnSync(PYTHON, [path.join(__dirname, "run_unittest.py"), module, ...names], { cwd: __dirname, env, encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  const records = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { name: string; ok: boolean; detail: string });
  if (r.status !== 0 || records.length === 0) {
    test(`${module} ran`, () => assert.unreachable(`python exited with ${r.status ?? r.signal}: ${r.stderr.slice(-3000)}`));
  }
  for (const rec of records) {
    test(rec.name.replace(/^.*?\./, ""), () => {
      if (!rec.ok) assert.unreachable(rec.detail);
    });
  }
  test.after(() => undefined);
}
