import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { install, kernelsDir, kernelSpec, list, uninstall } from "../../kernel/install";

const ROOT = path.resolve(__dirname, "..", "..");
const CLI = path.join(ROOT, "bin", "retromae.js");

test("kernel.json: connection file as its own argv element, message interrupts, TypeScript", () => {
  const spec = kernelSpec() as { argv: string[]; display_name: string; language: string; interrupt_mode: string };
  assert.is(spec.argv[spec.argv.length - 1], "{connection_file}");
  assert.ok(spec.argv.includes("kernel"));
  assert.is(spec.display_name, "RetroMAE (TypeScript)");
  assert.is(spec.language, "typescript");
  assert.is(spec.interrupt_mode, "message");
});

test("install --prefix writes kernel.json and logos; list finds it; uninstall removes it", () => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "ks-"));
  const dir = install({ prefix }, "rm-test");
  assert.is(dir, path.join(prefix, "share", "jupyter", "kernels", "rm-test"));
  assert.equal(fs.readdirSync(dir).sort(), ["kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]);
  const old = process.env.JUPYTER_PATH;
  process.env.JUPYTER_PATH = path.join(prefix, "share", "jupyter");
  assert.ok(list().some((k) => k.name === "rm-test" && k.dir === dir));
  process.env.JUPYTER_PATH = old;
  uninstall({ prefix }, "rm-test");
  assert.not.ok(fs.existsSync(dir));
  assert.throws(() => uninstall({ prefix }, "rm-test"), /No kernel "rm-test" is installed/);
  fs.rmSync(prefix, { recursive: true });
});

test("--user honours JUPYTER_DATA_DIR; --sys-prefix needs an environment; one location only", () => {
  const old = { ...process.env };
  process.env.JUPYTER_DATA_DIR = "/tmp/jdd";
  assert.is(kernelsDir({ user: true }), "/tmp/jdd/kernels");
  delete process.env.VIRTUAL_ENV;
  delete process.env.CONDA_PREFIX;
  assert.throws(() => kernelsDir({ sysPrefix: true }), /needs an active virtualenv or conda/);
  process.env.VIRTUAL_ENV = "/opt/venv";
  assert.is(kernelsDir({ sysPrefix: true }), "/opt/venv/share/jupyter/kernels");
  assert.throws(() => kernelsDir({ user: true, prefix: "/x" }), /Choose one of/);
  process.env = old;
});

test("the CLI installs with no Python, and Debian's jupyter_client sees the kernelspec", () => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "ks-cli-"));
  const out = execFileSync(process.execPath, [CLI, "kernel", "install", "--prefix", prefix, "--name", "rm-cli"], { encoding: "utf8" });
  assert.match(out, /Installed kernelspec rm-cli/);
  const env = { ...process.env, JUPYTER_PATH: path.join(prefix, "share", "jupyter") };
  const listed = execFileSync(process.execPath, [CLI, "kernel", "list"], { encoding: "utf8", env });
  assert.match(listed, /rm-cli/);
  const py = spawnSync("/usr/bin/python3", ["-c", "from jupyter_client.kernelspec import KernelSpecManager as K; s=K().get_kernel_spec('rm-cli'); print(s.display_name, s.interrupt_mode, s.language)"], { encoding: "utf8", env });
  assert.is(py.stdout.trim(), "RetroMAE (TypeScript) [rm-cli] message typescript", py.stderr);
  const bad = spawnSync(process.execPath, [CLI, "kernel", "install", "--name", "bad name!", "--prefix", prefix], { encoding: "utf8" });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /may use only letters, digits/);
  fs.rmSync(prefix, { recursive: true });
});

test.run();
