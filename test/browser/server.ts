/**
 * Shared by the real-browser tests: Debian's jupyter-notebook server on a
 * free 127.0.0.1 port with the kernel's kernelspec, and the flags for
 * Debian's chromium run headless by playwright-core.
 */
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface NotebookServer {
  base: string;
  token: string;
  process: ChildProcess;
  log(): string;
  stop(): void;
}

/** Start jupyter-notebook serving `dir` (the kernelspec in env's JUPYTER_PATH) and wait until its API answers. */
export async function startNotebookServer(dir: string, env: NodeJS.ProcessEnv, extraArgs: string[] = []): Promise<NotebookServer> {
  const token = crypto.randomBytes(12).toString("hex");
  const port = await freePort();
  let log = "";
  const proc = spawn("jupyter-notebook", ["--no-browser", "--ip=127.0.0.1", `--port=${port}`, `--NotebookApp.token=${token}`, `--notebook-dir=${dir}`, ...extraArgs, ...(process.getuid?.() === 0 ? ["--allow-root"] : [])], {
    env: { ...env, JUPYTER_CONFIG_DIR: path.join(dir, ".jupyter"), JUPYTER_RUNTIME_DIR: path.join(dir, ".runtime") },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout!.on("data", (d) => (log += d));
  proc.stderr!.on("data", (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`jupyter-notebook did not come up: ${log.slice(-2000)}`);
    try {
      if ((await fetch(`${base}/api?token=${token}`)).ok) break;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { base, token, process: proc, log: () => log, stop: () => void proc.kill("SIGTERM") };
}

/** A browser test's teardown: the browser closed, the server stopped, its folders removed. */
export async function tearDown(browser: { close(): Promise<void> } | null, server: NotebookServer | null, dirs: string[]): Promise<void> {
  await browser?.close();
  server?.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}
