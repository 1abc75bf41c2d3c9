/**
 * Debian's `jupyter nbconvert --to notebook --execute` runs a notebook on the
 * kernel: the outputs are the expected ones; with --allow-errors the error is
 * recorded and the later cells still run; without it, nbconvert fails.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { installKernel } from "./harness";

const { env, prefix } = installKernel();
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-nbconvert-"));
const source = path.join(__dirname, "..", "fixtures", "kernel", "check.ipynb");
const input = path.join(work, "check.ipynb");
fs.copyFileSync(source, input);

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}
interface Cell {
  cell_type: string;
  outputs?: Output[];
  execution_count?: number | null;
}

function nbconvert(args: string[]) {
  return spawnSync("jupyter", ["nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=120", ...args, input], { cwd: work, env, encoding: "utf8", timeout: 300_000 });
}

const join = (t: string | string[] | undefined) => (Array.isArray(t) ? t.join("") : (t ?? ""));

test("--allow-errors: outputs as expected, the error recorded, later cells run", () => {
  const r = nbconvert(["--allow-errors", "--output", "executed.ipynb"]);
  assert.is(r.status, 0, r.stderr);
  const nb = JSON.parse(fs.readFileSync(path.join(work, "executed.ipynb"), "utf8")) as { cells: Cell[] };
  const code = nb.cells.filter((c) => c.cell_type === "code");
  assert.equal(code.map((c) => c.execution_count), [1, 2, 3, 4, 5]);
  assert.is(join(code[0].outputs![0].text), "hello from nbconvert\n");
  assert.equal(code[1].outputs![0].output_type, "execute_result");
  assert.is(join(code[1].outputs![0].data!["text/plain"] as string | string[]), "[ 1, 4, 9 ]");
  const displays = code[2].outputs!.filter((o) => o.output_type === "display_data");
  assert.ok(displays.some((o) => join(o.data!["text/markdown"] as string | string[]) === "**bold**"));
  const plot = displays.find((o) => o.data!["application/vnd.plotly.v1+json"]);
  assert.ok(plot, "a Plotly output");
  assert.match(String(join(plot!.data!["text/html"] as string | string[])), /DecompressionStream/); // plotly.js embedded for offline viewing
  const err = code[3].outputs!.find((o) => o.output_type === "error")!;
  assert.is(err.ename, "Error");
  assert.is(err.evalue, "deliberate failure");
  assert.ok(err.traceback!.some((l) => l.includes("Cell In[4], line 1")));
  assert.is(join(code[4].outputs![0].text), "hello from nbconvert, after the error\n");
});

test("without --allow-errors nbconvert stops at the error and fails", () => {
  const r = nbconvert(["--output", "stopped.ipynb"]);
  assert.is.not(r.status, 0);
  assert.match(r.stderr, /deliberate failure/);
});

test.after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(prefix, { recursive: true, force: true });
});
test.run();
