/**
 * notebooks/quickstart.ipynb in a reduced mode (a few steps, a small probe
 * set) on ../shared/data, through `retromae run`: every cell runs, and the
 * outputs hold the live Plotly chart, the probe table and the checkpoint;
 * then the quickstart and the fine-tuning notebook on webgpu, on a device
 * that validates every command and runs none.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = path.resolve(__dirname, "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-quickstart-"));

test("the quickstart runs headless in reduced mode with a chart, a probe table and a checkpoint", () => {
  const out = path.join(work, "quickstart.out.ipynb");
  const html = path.join(work, "quickstart.html");
  const runDir = path.join(work, "runs");
  const r = spawnSync(
    process.execPath,
    [path.join(ROOT, "bin", "retromae.js"), "run", path.join(ROOT, "notebooks", "quickstart.ipynb"), "--out", out, "--html", html, "--timeout", "300",
      "-p", "steps=4", "-p", "batchSize=8", "-p", "maxLength=64", "-p", "probeEvery=2", "-p", "probeDocs=50", "-p", `runDir=${runDir}`],
    { encoding: "utf8", timeout: 600_000 },
  );
  assert.is(r.status, 0, r.stderr);
  const nb = JSON.parse(fs.readFileSync(out, "utf8"));
  const outputs = nb.cells.flatMap((c: { outputs?: unknown[] }) => c.outputs ?? []) as { output_type: string; data?: Record<string, unknown> }[];
  assert.not.ok(outputs.some((o) => o.output_type === "error"));
  const charts = outputs.filter((o) => o.data?.["application/vnd.plotly.v1+json"]);
  assert.ok(charts.length >= 2, "a live chart per training cell");
  const last = charts[charts.length - 1].data!["application/vnd.plotly.v1+json"] as { data: { name: string }[] };
  assert.ok(last.data.some((t) => t.name === "RetroMAE") && last.data.some((t) => t.name === "MLM only"), "both runs on one chart");
  const table = outputs.map((o) => [o.data?.["text/plain"]].flat().join("")).find((t) => t.includes("NDCG@10"));
  assert.ok(table && /BM25/.test(table) && /\+ MLM only, 4 steps/.test(table) && /start \(starter-tiny\)/.test(table) && /untrained tiny/.test(table), "the probe table with its baselines");
  assert.match(table!, /RetroMAE \(published\), Xiao et al\. 2022/);
  assert.match(table!, /"vs": the difference from each baseline/);
  assert.match(table!, /NDCG@10 vs start \(starter-tiny\)\s+NDCG@10 vs untrained tiny\s+NDCG@10 vs \+ MLM only, 4 steps/, "every run against each baseline");
  // the geometry table, and sentences on whether it explains the ordering
  const geometry = outputs.map((o) => [o.data?.["text/plain"]].flat().join("")).find((t) => t.startsWith("encoder  "));
  assert.ok(geometry && /anisotropy ↓/.test(geometry) && /untrained tiny/.test(geometry) && /\+ RetroMAE, 4 steps/.test(geometry), "the geometry table of the four encoders");
  // the findings are written from the tests, and results.json holds every figure
  const results = JSON.parse(fs.readFileSync(path.join(runDir, "results.json"), "utf8"));
  assert.is(results.findings.length, 6, "RetroMAE against 3 baselines, MLM-only against 2, the start against the untrained model");
  for (const f of results.findings) assert.match(f, /^.+ is (above|below|level with) .+ by [0-9.]+ NDCG@10 \(p = [0-9.]+\): (significant|not significant) at 0\.05\.$/);
  assert.ok(results.findings.some((f: string) => /^\+ RetroMAE, 4 steps is (above|below|level with) the untrained model/.test(f)));
  assert.ok(results.findings.some((f: string) => /^MLM-only is (above|below|level with) the untrained model/.test(f)));
  assert.ok(results.comparison.rows.some((r: { name: string }) => r.name === "BM25"));
  assert.equal(results.comparison.baselines, ["start (starter-tiny)", "untrained tiny", "+ MLM only, 4 steps"]);
  assert.is(results.geometry.rows.length, 4);
  assert.is(results.geometry.agreement.length, 4, "anisotropy, uniformity, alignment, effective rank");
  assert.is(results.geometryFindings.length, 4);
  assert.not.ok(fs.existsSync(path.join(runDir, "results.json.tmp")));
  // the chart carries the baselines as reference lines
  const layout = (charts[charts.length - 1].data!["application/vnd.plotly.v1+json"] as { layout: { annotations?: { text: string }[] } }).layout;
  assert.ok(layout.annotations!.some((a) => /^BM25 /.test(a.text)) && layout.annotations!.some((a) => /^start /.test(a.text)));
  // and the geometry panel, drawn live from geometryHook
  assert.ok(last.data.some((t) => t.name === "RetroMAE: anisotropy") && last.data.some((t) => t.name === "MLM only: effective rank"), "the geometry panel");
  assert.ok(fs.existsSync(path.join(runDir, "retromae", "final", "model.safetensors")));
  assert.match(fs.readFileSync(html, "utf8"), /DecompressionStream/);
});

test("on webgpu (Dawn's Null backend, picked with RETROMAE_BACKEND), every cell of the quickstart runs, then the fine-tuning notebook on its run, then the mask-ratio grid", () => {
  // The Null device validates every command (every buffer, bind group and dispatch of training,
  // probing, geometry, checkpoints and fine-tuning, within a WebGPU device's limits) and executes none:
  // its values are not computed (the trainer's non-finite guard is off there), so this checks that the
  // notebooks' every path runs on webgpu, not what they measure. It holds 512 MiB, so the batches are small.
  const runDir = path.join(work, "null-runs");
  const env = { ...process.env, RETROMAE_BACKEND: "webgpu", RETROMAE_WEBGPU_ADAPTER: "null-backend" };
  const notebook = (name: string, params: string[]) => {
    const out = path.join(work, `null-${name}.out.ipynb`);
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "run", path.join(ROOT, "notebooks", `${name}.ipynb`), "--out", out, "--timeout", "300", ...params.flatMap((p) => ["-p", p])], { encoding: "utf8", env, timeout: 600_000 });
    assert.is(r.status, 0, r.stderr.slice(-3000));
    assert.not.match(r.stdout + r.stderr, /While (calling|validating)|is invalid due to a previous error/, "no Dawn validation report");
    const outputs = JSON.parse(fs.readFileSync(out, "utf8")).cells.flatMap((c: { outputs?: unknown[] }) => c.outputs ?? []) as { output_type: string; text?: string | string[] }[];
    assert.not.ok(outputs.some((o) => o.output_type === "error"));
    return outputs.map((o) => [o.text ?? ""].flat().join("")).join("");
  };
  // The probes as the quickstart runs them (SciFact's full corpus at batches of 64 × 512, its search's top-k over
  // 5,183 documents) between training steps at 4 × 128: what they left on the device made the first step run out
  // of the Null device's memory, then the probe during training.
  const quick = notebook("quickstart", ["steps=4", "batchSize=4", "probeEvery=4", `runDir=${runDir}`]);
  assert.match(quick, /using webgpu \(gpu\) from @tensorflow\/tfjs-backend-webgpu on null-backend \(null, software\), as RETROMAE_BACKEND=webgpu asks in place of auto/);
  assert.ok(fs.existsSync(path.join(runDir, "results.json")) && fs.existsSync(path.join(runDir, "retromae", "final", "model.safetensors")));
  const fine = notebook("finetune", [`run=${runDir}`, "maxSteps=2", "batchSize=4", "probeDocs=40"]);
  assert.match(fine, /as RETROMAE_BACKEND=webgpu asks/);
  assert.ok(fs.existsSync(path.join(runDir, "finetune-results.json")));
  // the grid: several trainers, each probed after its fit (it called no backend.use before, so it never reached a GPU)
  const grid = notebook("mask-ratios", ["steps=2", "seeds=2", "batchSize=2", "maxLength=64", "probeDocs=50", `runDir=${path.join(work, "null-grid")}`]);
  assert.match(grid, /as RETROMAE_BACKEND=webgpu asks/);
});

test.after(() => fs.rmSync(work, { recursive: true, force: true }));
test.run();
