/**
 * `npm run bench -- kernel [--starts N] [--cells N] [--deno PATH]`: this kernel,
 * Debian's ipykernel (the reference) and, when a deno binary is found (the npm
 * package `deno` ships one; --deno, $DENO, or deno on PATH), Deno's Jupyter
 * kernel, measured by the same jupyter_client script in one run: start to
 * first kernel_info reply, the first cell after start, trivial cell round trip
 * (median, p95), a 10,000-line print loop to idle, memory (also after the
 * library import and 100 distinct cells; that import is also timed as the
 * first cell of a new kernel), and our type-check cost per cell.
 * Needs python3-jupyter-client and python3-ipykernel (apt).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LANGUAGE_THREAD_LIMITS } from "../kernel/workers";

const ROOT = path.resolve(__dirname, "..");

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** A deno binary: the one given, else deno on PATH; null when there is none. */
function findDeno(given: string): string | null {
  const candidates = given ? [given] : (process.env.PATH ?? "").split(path.delimiter).map((d) => path.join(d, "deno"));
  return candidates.find((c) => fs.existsSync(c)) ?? null;
}

/**
 * Where the checker's memory goes: the build's CellLanguage alone in a worker thread (the kernel's limits) of an
 * otherwise empty process, RSS after each stage: the idle worker, TypeScript loaded, the standard declarations
 * (warm-up step 1), the library's (step 2), `cells` distinct cells, the addon loaded in the main thread, then the
 * free C heap given back (releaseFreeMemory), with the worker still holding everything.
 */
export function checkerMemory(cells: number): Record<string, number> {
  const worker = `
    const { parentPort } = require("worker_threads");
    const say = (stage) => parentPort.postMessage(stage);
    say("idle_worker");
    // TypeScript as the kernel's language thread loads it: with its code cache (written by the kernel runs before)
    const { requireWithCodeCache } = require(${JSON.stringify(path.join(ROOT, "dist", "kernel", "language", "code-cache.js"))});
    const cached = requireWithCodeCache("typescript", ${JSON.stringify(ROOT)}, ${JSON.stringify(path.join(ROOT, "node_modules", ".cache", "retromae"))});
    const { CellLanguage } = require(${JSON.stringify(path.join(ROOT, "dist", "kernel", "language", "language.js"))});
    say(cached.hit ? "typescript_loaded" : "typescript_loaded_without_code_cache");
    const lang = new CellLanguage(${JSON.stringify(os.tmpdir())});
    lang.warmUpSteps[0]();
    say("standard_declarations");
    lang.warmUpSteps[1]();
    say("library_declarations");
    for (let i = 0; i < ${cells}; i++) lang.check("const c" + i + " = " + i + " * 2;\\nc" + i);
    say("after_cells");
    setInterval(() => {}, 1000); // alive (and holding it all) until the process exits`;
  const main = `
    const { Worker } = require("worker_threads");
    const out = {};
    const rss = () => Math.round(process.memoryUsage().rss / 1048576 * 10) / 10;
    out.node_alone = rss();
    const w = new Worker(${JSON.stringify(worker)}, { eval: true, resourceLimits: ${JSON.stringify(LANGUAGE_THREAD_LIMITS)} });
    w.on("message", (stage) => {
      out[stage] = rss();
      if (stage !== "after_cells") return;
      const native = require(${JSON.stringify(path.join(ROOT, "dist", "lib", "engine", "native.js"))});
      native.loadAddon();
      out.addon_loaded = rss();
      native.releaseFreeMemory();
      out.after_release = rss();
      console.log(JSON.stringify(out));
      process.exit(0);
    });`;
  return JSON.parse(execFileSync(process.execPath, ["-e", main], { encoding: "utf8" }).trim().split("\n").pop()!);
}

export async function benchKernel(args: string[]): Promise<void> {
  // The installed kernel runs the build; make sure it is current.
  execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-bench-kernel-"));
  execFileSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "kernel", "install", "--prefix", prefix], { stdio: "ignore" });
  const env = { ...process.env, JUPYTER_PATH: path.join(prefix, "share", "jupyter") };
  const kernels = [
    { name: "retromae", trivial: "{i}", loop: "for (let i = 0; i < 10000; i++) console.log(i)", import: 'import { RetroMAE } from "retromae"' },
    { name: "python3", trivial: "{i}", loop: "for i in range(10000): print(i)", import: "import json" },
  ];
  const deno = findDeno(option(args, "deno", process.env.DENO ?? ""));
  if (deno) {
    const dir = path.join(prefix, "share", "jupyter", "kernels", "deno");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "kernel.json"), JSON.stringify({ argv: [deno, "jupyter", "--kernel", "--conn", "{connection_file}"], display_name: "Deno", language: "typescript" }));
    kernels.push({ name: "deno", trivial: "{i}", loop: "for (let i = 0; i < 10000; i++) console.log(i)", import: 'import * as path from "node:path"' });
  }
  const out = execFileSync("/usr/bin/python3", [path.join(__dirname, "reference", "kernel_bench.py"), ...kernels.map((k) => JSON.stringify(k)), "--starts", option(args, "starts", "5"), "--cells", option(args, "cells", "200")], {
    env,
    cwd: os.tmpdir(),
    encoding: "utf8",
    maxBuffer: 16 << 20,
  });
  const rows = out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const [ours, ref, denoRow] = rows;
  const ratio = (k: string) => Math.round((ours[k] / ref[k]) * 100) / 100;
  console.log(
    JSON.stringify({
      bench: "kernel",
      rows,
      checker_rss_mb: checkerMemory(100),
      ratio_vs_ipykernel: {
        start: ratio("start_to_kernel_info_s"),
        trivial_median: ratio("trivial_cell_ms_median"),
        trivial_p95: ratio("trivial_cell_ms_p95"),
        repeated_median: ratio("repeated_cell_ms_median"),
        print_10000: ratio("print_10000_lines_ms"),
        rss_after_start: ratio("rss_mb_after_start"),
        rss_after_import_and_100_cells_1s_idle: ratio("rss_mb_after_import_and_100_cells_1s_idle"),
        first_cell: ratio("first_cell_ms_median"),
      },
      ...(denoRow ? { ratio_vs_deno: { start: +(ours.start_to_kernel_info_s / denoRow.start_to_kernel_info_s).toFixed(2), first_cell: +(ours.first_cell_ms_median / denoRow.first_cell_ms_median).toFixed(2), trivial_median: +(ours.trivial_cell_ms_median / denoRow.trivial_cell_ms_median).toFixed(2) } } : { deno: "skipped: no deno binary (npm install deno, then --deno node_modules/.bin/deno)" }),
    }),
  );
  fs.rmSync(prefix, { recursive: true, force: true });
}
