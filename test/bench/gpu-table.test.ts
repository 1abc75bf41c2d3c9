/**
 * bench gpu's JSON lines as the README's tables (bench/gpu-table.ts): the
 * ratios and goals, the kernel choices with the fastest marked, the profile,
 * a software adapter's rows headed as not GPU figures, and a stopped run's
 * partial row.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { gpuTables, readGpuRows } from "../../bench/gpu-table";

const ROOT = path.resolve(__dirname, "..", "..");

const ours = (preset: string, batch: number, seq: number, extra: Record<string, unknown>) => ({
  bench: "gpu",
  engine: "webgpu",
  preset,
  backend: "webgpu",
  adapter: "NVIDIA H200 (vulkan)",
  not_gpu: false,
  batch,
  seq,
  steps: 10,
  ...extra,
});
const torch = (engine: string, preset: string, batch: number, seq: number, extra: Record<string, unknown>) => ({ bench: "gpu", engine, preset, batch, seq, ...extra });

const lines = [
  "bench gpu: tiny 16x128 on webgpu: {...}", // a log line, skipped
  JSON.stringify(
    ours("tiny", 16, 128, {
      ms_per_step: 8.04,
      tokens_per_s: 254000,
      chart_overhead: 0.012,
      peak_gpu_mb: 900,
      docs_per_s: 2500,
      ms_per_step_through_tfjs: 31.5,
      ms_per_step_main_thread_collates: 10.1,
      ms_per_step_timer_poll: 8.3,
      ms_per_step_without_split_k: 9.5,
      ms_per_step_matmul_tiled: 7.5,
      ms_per_step_matmul_tfjs: 9.9,
      ms_per_step_dense_transposed: 8.1,
      ms_per_step_heads_split: 8.6,
      ms_per_step_with_robustness: 8.9,
      ratio_vs_torch_fp32: 0.61,
      ratio_vs_torch_fp32_same_work: 0.55,
      ratio_vs_torch_tf32_same_work: 0.5,
      profile: { gpu_ms: 6.25, kernels_share_of_step: 0.777, categories: [{ category: "matmul", share: 0.6, gflops: 9100 }, { category: "cross-entropy", share: 0.1 }] },
    }),
  ),
  JSON.stringify(torch("torch_cuda_fp32", "tiny", 16, 128, { ms_per_step: 5, peak_gpu_mb: 700, probe_docs_per_s: 4000 })),
  JSON.stringify(torch("torch_cuda_fp32_same_work", "tiny", 16, 128, { ms_per_step: 4.4 })),
  JSON.stringify(
    ours("base", 32, 512, { ms_per_step: 1500, tokens_per_s: 10900, ratio_vs_torch_fp32_same_work: 0.2, failed: "stopped after --child-timeout-s 160", incomplete: "stopped before encoding" }),
  ),
  '{"bench":"gpu","engine":"webgpu","preset":"mi', // cut off
];

test("bench gpu's rows as tables: ratios against PyTorch with §6's goals, the kernel choices with the fastest in bold, the profile; a stopped run's row kept", () => {
  const rows = readGpuRows(lines.join("\n"));
  assert.is(rows.length, 4, "log lines and a cut-off line are skipped");
  const t = gpuTables(rows);
  assert.match(t, /^On NVIDIA H200 \(vulkan\)\./);
  assert.match(t, /\| tiny 16 × 128 \| webgpu \| 8\.0 \| 254,000 \| 4\.4 \| 0\.550 \(≥ 0\.5: met\) \| 0\.610 \| 0\.500 \| 1\.2% \| 900 \(700\) \| 2,500\.0 \(4,000\.0\) \|/);
  assert.match(t, /\| base 32 × 512 \| webgpu \(stopped: stopped after --child-timeout-s 160\) \| 1,500\.0 \| 10,900 \| – \| 0\.200 \(≥ 0\.25: not met\) \|/);
  assert.match(t, /\| config \| replayed \(default\) ms\/step \| through tfjs ms\/step \| main thread collates ms\/step \| timer poll ms\/step \| split-K off ms\/step \|/);
  assert.match(t, /\| tiny 16 × 128 \| 8\.0 \| 31\.5 \| 10\.1 \| 8\.3 \| 9\.5 \| \*\*7\.5\*\* \| 9\.9 \| 8\.1 \| 8\.6 \| 8\.9 \|/);
  assert.match(t, /\| base 32 × 512 \| \*\*1,500\.0\*\* \| – \| – \| – \| – \| – \| – \| – \| – \| – \|/);
  assert.match(t, /\| tiny 16 × 128 \| 6\.25 \| 0\.777 \| matmul 60\.0% \(9100\), cross-entropy 10\.0% \|/);
  assert.match(t, /\| base 32 × 512 \| – \| – \| no profile \|/);
});

test("a software adapter's rows are headed as not GPU figures; no rows of ours says what to give", () => {
  const sw = ours("tiny", 2, 16, { adapter: "SwiftShader driver 5.0.0 (vulkan)", not_gpu: true, ms_per_step: 10563, tokens_per_s: 3, ms_per_step_through_tfjs: "skipped on a software adapter" });
  const t = gpuTables([sw]);
  assert.match(t, /^\*\*Not GPU figures\*\*: a software adapter \(SwiftShader driver 5\.0\.0 \(vulkan\)\)\./);
  assert.match(t, /\| tiny 2 × 16 \| \*\*10,563\.0\*\* \| skipped on a software adapter \|/);
  assert.match(gpuTables([]), /^No rows of ours in the input/);
});

test("npm run bench -- gpu-table FILE prints the tables; a missing file is one sentence", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gpu-table-"));
  const file = path.join(dir, "bench-gpu.jsonl");
  fs.writeFileSync(file, lines.join("\n"));
  const run = (args: string[]) => spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(ROOT, "bench", "index.ts"), "gpu-table", ...args], { cwd: ROOT, encoding: "utf8" });
  const r = run([file]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /\| tiny 16 × 128 \| webgpu \| 8\.0 \|/);
  const missing = run([path.join(dir, "nope.jsonl")]);
  assert.is(missing.status, 1);
  assert.match(missing.stderr.trim(), /^gpu-table: .*nope\.jsonl does not exist; give the bench-gpu\.jsonl that scripts\/gpu-node-check\.sh wrote\.$/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
