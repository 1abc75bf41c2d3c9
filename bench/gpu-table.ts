/**
 * `npm run bench -- gpu-table FILE...`: `bench gpu`'s JSON lines (as
 * scripts/gpu-node-check.sh writes them to bench-gpu.jsonl) as the README's
 * Markdown tables, so a GPU run's figures go into the README as measured:
 *
 * 1. against PyTorch on CUDA, per configuration: ms/step and tokens/s, the
 *    ratios to PyTorch fp32 (same work and full) and TF32, §6's goal for the
 *    configuration and whether it was met, the chart's overhead, peak GPU
 *    memory and probe encoding docs/s for both;
 * 2. the kernel choices: ms/step replayed, through tfjs, without split-K,
 *    with the tiled matmul everywhere, with tfjs's matmuls only and with
 *    the dense layers as x·(Wᵀ), the fastest in bold;
 * 3. where a step's GPU time goes (its profile): the kernels' share of the
 *    step and the four largest kinds of work.
 *
 * Rows from a software adapter are headed as not GPU figures.
 */
import * as fs from "fs";

type Row = Record<string, unknown>;

/** §6's goals: ours over PyTorch fp32 (TF32 off) on the same work. */
export const GOALS: Record<string, number> = { tiny: 0.5, mini: 0.5, base: 0.25 };

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const fmt = (v: unknown, digits = 1): string => {
  const n = num(v);
  return n === null ? (typeof v === "string" ? v.replace(/\|/g, "/") : "–") : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
};

/** Parse bench gpu's JSON lines (other lines are skipped). */
export function readGpuRows(text: string): Row[] {
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith('{"bench":"gpu"')) continue;
    try {
      rows.push(JSON.parse(line) as Row);
    } catch {
      // a line cut off by a stopped run
    }
  }
  return rows;
}

/** The three tables, as Markdown. */
export function gpuTables(rows: Row[]): string {
  const ours = rows.filter((r) => r.engine !== undefined && !String(r.engine).startsWith("torch_"));
  if (ours.length === 0) return "No rows of ours in the input: give bench gpu's JSON lines (bench-gpu.jsonl).";
  const torch = (r: Row, engine: string) => rows.find((t) => t.engine === engine && t.preset === r.preset && t.batch === r.batch && t.seq === r.seq);
  const config = (r: Row) => `${r.preset} ${r.batch} × ${r.seq}`;
  const software = ours.some((r) => r.not_gpu === true);
  const adapters = [...new Set(ours.map((r) => String(r.adapter ?? r.engine)))].join(", ");
  const rehearsal = ours.some((r) => r.rehearsal) ? " A rehearsal (--rehearse): every part was run to check that it runs, and the figures mean nothing." : "";
  const out: string[] = [software ? `**Not GPU figures**: a software adapter (${adapters}).${rehearsal}` : `On ${adapters}.`, ""];

  out.push("| config | engine | ms/step | tokens/s | PyTorch fp32 same work: ms/step | ratio fp32 same work (goal) | ratio fp32 full | ratio TF32 same work | chart overhead | peak GPU MB (PyTorch) | probe docs/s (PyTorch fp32) |");
  out.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of ours) {
    const same = torch(r, "torch_cuda_fp32_same_work");
    const full = torch(r, "torch_cuda_fp32");
    const goal = GOALS[String(r.preset)];
    const ratio = num(r.ratio_vs_torch_fp32_same_work);
    const verdict = goal === undefined || ratio === null ? "" : ` (≥ ${goal}: ${ratio >= goal ? "met" : "not met"})`;
    const overhead = num(r.chart_overhead);
    out.push(
      `| ${config(r)} | ${r.engine}${r.failed ? ` (stopped: ${fmt(r.failed)})` : ""} | ${fmt(r.ms_per_step)} | ${fmt(r.tokens_per_s, 0)} | ${same ? fmt(same.ms_per_step) : "–"} | ${ratio === null ? "–" : ratio.toFixed(3)}${verdict} | ${fmt(r.ratio_vs_torch_fp32, 3)} | ${fmt(r.ratio_vs_torch_tf32_same_work, 3)} | ${overhead === null ? "–" : `${(100 * overhead).toFixed(1)}%`} | ${fmt(r.peak_gpu_mb, 0)} (${full ? fmt(full.peak_gpu_mb, 0) : "–"}) | ${fmt(r.docs_per_s)} (${full ? fmt(full.probe_docs_per_s) : "–"}) |`,
    );
  }

  const choices: [string, string][] = [
    ["replayed (default)", "ms_per_step"],
    ["through tfjs", "ms_per_step_through_tfjs"],
    ["main thread collates", "ms_per_step_main_thread_collates"],
    ["timer poll", "ms_per_step_timer_poll"],
    ["split-K off", "ms_per_step_without_split_k"],
    ["tiled matmul", "ms_per_step_matmul_tiled"],
    ["tfjs matmul", "ms_per_step_matmul_tfjs"],
    ["dense x·(Wᵀ)", "ms_per_step_dense_transposed"],
    ["heads split", "ms_per_step_heads_split"],
    ["bounds checks on", "ms_per_step_with_robustness"],
  ];
  out.push("", `| config | ${choices.map(([name]) => `${name} ms/step`).join(" | ")} |`, `| --- | ${choices.map(() => "---").join(" | ")} |`);
  for (const r of ours) {
    const values = choices.map(([, key]) => num(r[key]));
    const best = Math.min(...values.filter((v): v is number => v !== null));
    out.push(`| ${config(r)} | ${choices.map(([, key], i) => (values[i] !== null && values[i] === best ? `**${fmt(r[key])}**` : fmt(r[key]))).join(" | ")} |`);
  }

  out.push("", "| config | GPU ms in kernels | kernels' share of a step | largest kinds of work (share, GFLOP/s) |", "| --- | --- | --- | --- |");
  for (const r of ours) {
    const p = r.profile as { gpu_ms?: number; kernels_share_of_step?: number; categories?: { category: string; share: number; gflops?: number }[] } | undefined;
    if (!p) {
      out.push(`| ${config(r)} | – | – | no profile |`);
      continue;
    }
    const kinds = (p.categories ?? []).slice(0, 4).map((c) => `${c.category} ${(100 * c.share).toFixed(1)}%${c.gflops ? ` (${c.gflops})` : ""}`).join(", ");
    out.push(`| ${config(r)} | ${fmt(p.gpu_ms, 2)} | ${fmt(p.kernels_share_of_step, 3)} | ${kinds} |`);
  }
  return out.join("\n");
}

export async function benchGpuTable(args: string[]): Promise<void> {
  if (args.length === 0) throw new Error("gpu-table needs bench gpu's JSON lines: npm run bench -- gpu-table bench-gpu.jsonl");
  const rows: Row[] = [];
  for (const file of args) {
    if (!fs.existsSync(file)) throw new Error(`gpu-table: ${file} does not exist; give the bench-gpu.jsonl that scripts/gpu-node-check.sh wrote.`);
    rows.push(...readGpuRows(fs.readFileSync(file, "utf8")));
  }
  console.log(gpuTables(rows));
}
