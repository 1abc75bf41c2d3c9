/**
 * The notebooks through Debian's `jupyter nbconvert --execute` (in a reduced
 * mode: the parameters injected as `retromae run -p` would), and
 * load-pretrained through `retromae run` from a local checkpoint folder.
 * Each must finish with no error, a Plotly chart and (where it probes) a
 * probe table.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { saveCheckpoint } from "../../lib/model/retromae";
import { RetroMAE } from "../../lib/model/retromae";
import { bertBaseUncasedVocab } from "../../lib/text/vocab";
import { injectParameters, readNotebook } from "../../runner/runner";
import { installKernel } from "../kernel/harness";

const ROOT = path.resolve(__dirname, "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-notebooks-"));
const { env, prefix } = installKernel();

type Output = { output_type: string; data?: Record<string, unknown>; text?: string | string[]; evalue?: string };
const joined = (t: unknown) => (Array.isArray(t) ? t.join("") : String(t ?? ""));

function outputsOf(file: string): Output[] {
  const nb = JSON.parse(fs.readFileSync(file, "utf8"));
  return nb.cells.flatMap((c: { outputs?: Output[] }) => c.outputs ?? []);
}

function checkOutputs(outputs: Output[], table: boolean): void {
  const errors = outputs.filter((o) => o.output_type === "error");
  assert.equal(errors.map((e) => e.evalue), []);
  assert.ok(outputs.some((o) => o.data?.["application/vnd.plotly.v1+json"]), "a Plotly chart");
  if (table) assert.ok(outputs.some((o) => joined(o.data?.["text/plain"]).includes("NDCG@10")), "a probe table");
}

function nbconvert(name: string, params: Record<string, string>): string {
  const nb = readNotebook(path.join(ROOT, "notebooks", name));
  injectParameters(nb, { runDir: JSON.stringify(path.join(work, "runs", name)), ...params });
  const input = path.join(work, name);
  fs.writeFileSync(input, JSON.stringify(nb));
  const out = `${name.replace(/\.ipynb$/, "")}.executed.ipynb`;
  const r = spawnSync("jupyter", ["nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=600", "--output", out, input], { cwd: work, env, encoding: "utf8", timeout: 900_000 });
  assert.is(r.status, 0, r.stderr.slice(-3000));
  return path.join(work, out);
}

test("quickstart.ipynb through nbconvert --execute", () => {
  checkOutputs(outputsOf(nbconvert("quickstart.ipynb", { steps: "3", batchSize: "8", maxLength: "64", probeEvery: "3", probeDocs: "30" })), true);
});

test("mask-ratios.ipynb through nbconvert --execute: the grid, grouped seeds, tests against 0.3 / 0.5 and each baseline, and the orderings read off them", () => {
  const outputs = outputsOf(nbconvert("mask-ratios.ipynb", { steps: "2", seeds: "2", decoderRatios: "[0.15, 0.5, 0.9]", batchSize: "8", maxLength: "64", probeDocs: "30" }));
  checkOutputs(outputs, true);
  const table = outputs.map((o) => joined(o.data?.["text/plain"])).find((t) => t.includes("NDCG@10"))!;
  for (const run of ["enc 0.3 / dec 0.5", "enc 0.15 / dec 0.15", "enc 0.3 / dec 0.9", "enc 0.15 / dec 0.9", "MLM only", "untrained tiny", "start"]) assert.ok(table.includes(run), `${run} in\n${table}`);
  assert.match(table, /± [0-9.]+ \(2 seeds\)/);
  assert.match(table, /NDCG@10 vs enc 0\.3 \/ dec 0\.5\s+NDCG@10 vs start\s+NDCG@10 vs untrained tiny\s+NDCG@10 vs MLM only/);
  const verdicts = outputs.map((o) => joined(o.data?.["text/plain"])).find((t) => t.includes("beats symmetric"))!;
  assert.match(verdicts, /0\.3 \/ 0\.5 beats symmetric 0\.15 \/ 0\.15: (holds|not significant|reversed) \(/);
  for (const base of ["the start", "the untrained model", "MLM only"]) assert.match(verdicts, new RegExp(`enc 0\\.3 / dec 0\\.5 is (above|below|level with) ${base} by [0-9.]+ NDCG@10 \\(p = [0-9.]+\\): (not )?significant at 0\\.05\\.`));
  assert.match(verdicts, /MLM only is (above|below|level with) the untrained model/);
});

test("load-pretrained.ipynb through retromae run, from a local checkpoint folder", async () => {
  await use("cpu");
  const source = path.join(work, "pretrained");
  const model = RetroMAE.create("tiny", { rng: new Rng(11) });
  await saveCheckpoint(model, source, { vocab: bertBaseUncasedVocab(), encoderOnly: true });
  model.dispose();
  const out = path.join(work, "load-pretrained.out.ipynb");
  const r = spawnSync(
    process.execPath,
    [path.join(ROOT, "bin", "retromae.js"), "run", path.join(ROOT, "notebooks", "load-pretrained.ipynb"), "--out", out, "--timeout", "600",
      "-p", `source=${source}`, "-p", "steps=2", "-p", `runDir=${path.join(work, "runs", "load")}`],
    { encoding: "utf8", timeout: 900_000 },
  );
  assert.is(r.status, 0, r.stderr.slice(-3000));
  const outputs = outputsOf(out);
  checkOutputs(outputs, false);
  const printed = outputs.map((o) => joined(o.text)).join("");
  assert.match(printed, /2 layers, hidden 128, vocab 30522/);
  assert.match(printed, /torchrun --nproc_per_node 8 -m pretrain\.run/);
});

test.after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(prefix, { recursive: true, force: true });
});
test.run();
