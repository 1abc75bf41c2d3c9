/**
 * notebooks/finetune.ipynb in a reduced mode (a few fine-tuning steps, a
 * small probe set) through `retromae run`, on a run directory laid out as
 * the quickstart writes it (retromae/ and mlm-only/ with checkpoint-N
 * folders, results.json): every cell runs, the four encoders are scored
 * before and after, both tables test each against every baseline, the
 * fine-tuning losses share one chart, and results.json is written.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = path.resolve(__dirname, "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-finetune-"));
const run = (runDir: string, extra: string[] = []) =>
  spawnSync(
    process.execPath,
    [path.join(ROOT, "bin", "retromae.js"), "run", path.join(ROOT, "notebooks", "finetune.ipynb"), "--out", path.join(work, "finetune.out.ipynb"), "--timeout", "300",
      "-p", `run=${runDir}`, "-p", "maxSteps=3", "-p", "probeDocs=40", ...extra],
    { encoding: "utf8", timeout: 600_000 },
  );

test("the fine-tuning notebook runs headless on a quickstart-shaped run: four encoders, two tables, one chart, results.json", () => {
  const runDir = path.join(work, "runs", "quickstart");
  // the checkpoints of a quickstart run: here copies of the starter (the notebook only reads them)
  for (const sub of ["retromae/checkpoint-2", "retromae/checkpoint-4", "mlm-only/checkpoint-4"]) fs.cpSync(path.join(ROOT, "models", "starter-tiny"), path.join(runDir, sub), { recursive: true });
  fs.writeFileSync(path.join(runDir, "results.json"), JSON.stringify({ settings: { seed: 7 } }));
  const r = run(runDir);
  assert.is(r.status, 0, r.stderr);
  const nb = JSON.parse(fs.readFileSync(path.join(work, "finetune.out.ipynb"), "utf8"));
  const outputs = nb.cells.flatMap((c: { outputs?: unknown[] }) => c.outputs ?? []) as { output_type: string; text?: string | string[]; data?: Record<string, unknown> }[];
  assert.not.ok(outputs.some((o) => o.output_type === "error"));
  const texts = outputs.map((o) => [o.data?.["text/plain"] ?? o.text ?? ""].flat().join(""));
  assert.ok(texts.some((t) => t.includes("retromae/checkpoint-4") && t.includes("random init, seed 7")), "the latest checkpoint of each run, and the quickstart's seed for the untrained model");
  // one chart, four fine-tuning curves
  const charts = outputs.filter((o) => o.data?.["application/vnd.plotly.v1+json"]);
  const last = charts[charts.length - 1].data!["application/vnd.plotly.v1+json"] as { data: { name: string }[]; layout: Record<string, { title?: { text?: string } }> };
  for (const n of ["start (starter-tiny)", "untrained tiny", "MLM-only", "RetroMAE"]) assert.ok(last.data.some((t) => t.name === n), `${n} on the chart`);
  assert.ok(Object.values(last.layout).some((v) => v?.title?.text === "contrastive loss"));
  // the two tables side by side, each with a column per baseline
  const both = outputs.find((o) => /zero-shot/.test(String(o.data?.["text/plain"] ?? "")) && o.data?.["text/html"]);
  assert.ok(both, "the side-by-side tables");
  const html = [both!.data!["text/html"]].flat().join("");
  assert.match(html, /display:flex/);
  assert.is((html.match(/<table class="retromae-compare">/g) ?? []).length, 2);
  assert.match(html, /NDCG@10 vs untrained tiny/);
  // results.json, written whole
  const results = JSON.parse(fs.readFileSync(path.join(runDir, "finetune-results.json"), "utf8"));
  assert.equal(results.fineTuned.baselines, ["start (starter-tiny)", "untrained tiny", "MLM-only"]);
  assert.is(results.timings.length, 4);
  for (const t of results.timings) assert.equal([t.steps, t.planned], [3, 3]);
  assert.is(results.findings.fineTuned.length, 6);
  for (const f of [...results.findings.zeroShot, ...results.findings.fineTuned]) assert.match(f, /^.+ is (above|below|level with) .+ by [0-9.]+ NDCG@10 \(p = [0-9.]+\): (significant|not significant) at 0\.05\.$/);
  assert.not.ok(fs.existsSync(path.join(runDir, "finetune-results.json.tmp")));
});

test("a folder that is not a quickstart run is refused with one sentence naming the fix", () => {
  const r = run(path.join(work, "nowhere"));
  assert.is.not(r.status, 0);
  assert.match(r.stderr, /nowhere is not a quickstart run \(it needs retromae\/ and mlm-only\/ with checkpoints\); run `npm run quickstart` first, or pass -p run=DIR\./);
});

test.after(() => fs.rmSync(work, { recursive: true, force: true }));
test.run();
