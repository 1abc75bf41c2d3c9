/**
 * bench gpu's parent reading a child's rows (bench/gpu.ts lastChildRow): the
 * child prints its row after each part, so a child stopped by
 * --child-timeout-s still gives what it measured. And a rehearsal of the
 * whole benchmark on Dawn's Null backend (--rehearse): the parts that only a
 * hardware adapter runs (the A/B steps, the logits' layouts, encoding with
 * and without the inference kernels) had never run anywhere before a GPU.
 * And where ours fails before its timed steps (no adapter), PyTorch's
 * inputs are collated by the parent (collateTrainingBatches), so a GPU
 * node's run still gives PyTorch's figures.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { lastChildRow } from "../../bench/gpu";
import { collateTrainingBatches, SHARED_DATA } from "../../bench/common";
import { loadBatch } from "../../lib/masking/batch-io";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { PackedCorpus } from "../../lib/train/data";
import { gpuTables } from "../../bench/gpu-table";

const ROOT = path.resolve(__dirname, "..", "..");

test("the last whole row is what the child measured; a stopped child's row is kept and marked incomplete; a cut-off line is passed over", () => {
  const first = JSON.stringify({ preset: "base", ms_per_step: 1500, incomplete: "stopped before profile" });
  const second = JSON.stringify({ preset: "base", ms_per_step: 1500, profile: { gpu_ms: 900 }, incomplete: "stopped before encoding" });
  const last = JSON.stringify({ preset: "base", ms_per_step: 1500, profile: { gpu_ms: 900 }, docs_per_s: 80 });
  assert.equal(lastChildRow(["starting", first, second, last, ""].join("\n")), { row: JSON.parse(last), complete: true });
  assert.equal(lastChildRow([first, second].join("\n")), { row: JSON.parse(second), complete: false }, "stopped after the profile");
  assert.equal(lastChildRow([first, second.slice(0, 40)].join("\n")), { row: JSON.parse(first), complete: false }, "killed while writing its second row");
  assert.equal(lastChildRow("warming up\n"), { row: null, complete: false }, "stopped before any row");
});

test("bench gpu --rehearse on the Null backend runs every part a GPU run will, and the table says the figures mean nothing", () => {
  const r = spawnSync(
    process.execPath,
    ["-r", "ts-node/register/transpile-only", path.join(ROOT, "bench", "index.ts"), "gpu", "--configs", "tiny:2x16", "--steps", "2", "--probe-docs", "100", "--encode-batch", "16", "--rehearse"],
    { cwd: ROOT, encoding: "utf8", env: { ...process.env, RETROMAE_WEBGPU_ADAPTER: "null-backend" }, timeout: 300_000 },
  );
  assert.is(r.status, 0, r.stderr.slice(-3000));
  const rows = r.stdout.split("\n").filter((l) => l.startsWith('{"bench":"gpu"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const ours = rows.find((row) => row.engine === "webgpu")!;
  assert.not.ok("failed" in ours || "incomplete" in ours, JSON.stringify(ours));
  assert.ok(ours.not_gpu === true && /figures mean nothing/.test(String(ours.rehearsal)));
  for (const k of ["ms_per_step", "docs_per_s", "fused_speedup", "padding_speedup", "docs_per_s_padded_to_16", "docs_per_s_unpadded", "ms_per_step_through_tfjs", "ms_per_step_main_thread_collates", "ms_per_step_timer_poll", "steps_collated_ahead", "ms_per_step_dense_transposed", "ms_per_step_heads_split", "ms_per_step_matmul_tiled", "dense_gflops_x_wt", "logits_gflops_x_et", "logits_gflops_x_e_stored_transposed"]) {
    assert.ok(typeof ours[k] === "number", `${k}: ${ours[k]}`);
  }
  assert.is(ours.encode_batch, 16);
  assert.is(ours.steps_collated_ahead, 1, "of the 2 timed steps, the second's batches made on the collating thread (the first opens the fit)");
  assert.ok((ours.profile as { categories: unknown[] }).categories.length > 5, "the step's dispatches profiled (no times on the Null device)");
  assert.match(gpuTables(rows), /^\*\*Not GPU figures\*\*: a software adapter \(null-backend \(null\)\)\. A rehearsal \(--rehearse\): every part was run to check that it runs, and the figures mean nothing\./);
});

test("where ours saved no batches, the parent collates PyTorch's: the trainer's collator with static shapes, the same bytes every time", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-gpu-batches-"));
  try {
    const tok = BertTokenizer.bertBaseUncased();
    const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 32, { limit: 40 });
    const [a, b] = [path.join(dir, "a.safetensors"), path.join(dir, "b.safetensors")];
    collateTrainingBatches(a, tok, corpus, 3, 32, 3);
    collateTrainingBatches(b, tok, corpus, 3, 32, 3);
    assert.equal(fs.readdirSync(dir).sort(), ["a.safetensors", "a.safetensors.1", "a.safetensors.2", "b.safetensors", "b.safetensors.1", "b.safetensors.2"]);
    const batches = ["", ".1", ".2"].map((s) => loadBatch(a + s));
    for (const batch of batches) {
      assert.is(batch.batchSize, 3);
      assert.is(batch.seqLength, 32, "padded to maxLength, as a recorded step needs");
      assert.ok(batch.encoderLabels.some((l) => l >= 0) && batch.decoderLabels.some((l) => l >= 0), "masked positions to predict");
    }
    assert.not.equal(Array.from(batches[0].encoderInputIds), Array.from(batches[1].encoderInputIds), "each step its own batch");
    for (const s of ["", ".1", ".2"]) assert.ok(fs.readFileSync(a + s).equals(fs.readFileSync(b + s)), `batch${s} the same bytes twice`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("bench gpu where webgpu cannot start (no Vulkan driver): the row says why in one sentence, and the run goes on to its end", () => {
  const r = spawnSync(
    process.execPath,
    ["-r", "ts-node/register/transpile-only", path.join(ROOT, "bench", "index.ts"), "gpu", "--configs", "tiny:2x16", "--steps", "2", "--probe-docs", "0"],
    { cwd: ROOT, encoding: "utf8", env: { ...process.env, VK_ICD_FILENAMES: "/nonexistent/icd.json" }, timeout: 120_000 },
  );
  assert.is(r.status, 0, r.stderr.slice(-3000));
  const rows = r.stdout.split("\n").filter((l) => l.startsWith('{"bench":"gpu"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const ours = rows.find((row) => row.engine === "webgpu")!;
  assert.match(String(ours.failed), /VK_ICD_FILENAMES names \/nonexistent\/icd\.json, which is missing/);
  assert.not.match(String(ours.failed), /\n|    at /, "one sentence, no stack");
  assert.ok(/^skipped/.test(String(ours.torch)), "no CUDA here: PyTorch is skipped, and says why");
});

test("bench gpu with a bad --encode-batch stops at once with one sentence, before any child starts", () => {
  const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(ROOT, "bench", "index.ts"), "gpu", "--configs", "tiny:2x16", "--encode-batch", "0"], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  assert.is.not(r.status, 0);
  assert.match(r.stderr, /--encode-batch takes a whole number of documents ≥ 1; got "0"\./);
  assert.not.match(r.stderr, /    at |bench gpu: tiny/, "no stack, and no child ran");
});

test.run();
