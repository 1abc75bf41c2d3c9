/**
 * `npm run bench -- kernel [--starts N] [--cells N]`: this kernel and Debian's
 * ipykernel (the reference), measured by the same jupyter_client script in one
 * run: start to first kernel_info reply, trivial cell round trip (median, p95),
 * a 10,000-line print loop to idle, memory, and our type-check cost per cell.
 * Needs python3-jupyter-client and python3-ipykernel (apt).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..");

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

export async function benchKernel(args: string[]): Promise<void> {
  // The installed kernel runs the build; make sure it is current.
  execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-bench-kernel-"));
  execFileSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "kernel", "install", "--prefix", prefix], { stdio: "ignore" });
  const env = { ...process.env, JUPYTER_PATH: path.join(prefix, "share", "jupyter") };
  const kernels = ["retromae:{i}:for (let i = 0; i < 10000; i++) console.log(i)", "python3:{i}:for i in range(10000): print(i)"];
  const out = execFileSync("/usr/bin/python3", [path.join(__dirname, "reference", "kernel_bench.py"), ...kernels, "--starts", option(args, "starts", "5"), "--cells", option(args, "cells", "200")], {
    env,
    cwd: os.tmpdir(),
    encoding: "utf8",
    maxBuffer: 16 << 20,
  });
  const rows = out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const [ours, ref] = rows;
  const ratio = (k: string) => Math.round((ours[k] / ref[k]) * 100) / 100;
  console.log(
    JSON.stringify({
      bench: "kernel",
      rows,
      ratio_vs_ipykernel: {
        start: ratio("start_to_kernel_info_s"),
        trivial_median: ratio("trivial_cell_ms_median"),
        trivial_p95: ratio("trivial_cell_ms_p95"),
        repeated_median: ratio("repeated_cell_ms_median"),
        print_10000: ratio("print_10000_lines_ms"),
        rss_after_start: ratio("rss_mb_after_start"),
      },
    }),
  );
  fs.rmSync(prefix, { recursive: true, force: true });
}
