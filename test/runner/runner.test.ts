/**
 * `retromae run`: the headless runner (a TypeScript Jupyter client) against
 * the real kernel, through the real CLI.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { injectParameters, Notebook, readNotebook } from "../../runner/runner";

const ROOT = path.resolve(__dirname, "..", "..");
const CLI = path.join(ROOT, "bin", "retromae.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-run-"));

function notebook(cells: { source: string; tags?: string[]; kind?: "code" | "markdown" }[]): Notebook {
  return {
    cells: cells.map((c, i) => ({ cell_type: c.kind ?? "code", id: `c${i}`, source: c.source, metadata: c.tags ? { tags: c.tags } : {}, execution_count: null, outputs: [] })),
    metadata: { kernelspec: { name: "retromae", display_name: "RetroMAE (TypeScript)", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

function write(name: string, nb: Notebook | string): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, typeof nb === "string" ? nb : JSON.stringify(nb));
  return file;
}

function run(...args: string[]) {
  return spawnSync(process.execPath, [CLI, "run", ...args], { cwd: work, encoding: "utf8", timeout: 180_000 });
}

const joined = (t: unknown) => (Array.isArray(t) ? t.join("") : String(t));

test("runs every cell, writes outputs with display updates applied in place, and an offline HTML report", () => {
  const file = write("ok.ipynb", notebook([
    { kind: "markdown", source: "# Title\n\nSome **bold** text." },
    { source: 'console.log("line one");\nconsole.log("line two");' },
    { source: "const h = display.markdown(\"step 1\");\nh.update(\"step 2\");\n6 * 7" },
    { source: "display.plotly({ data: [{ y: [1, 3, 2] }] })" },
  ]));
  const r = run(file, "--out", path.join(work, "ok.out.ipynb"), "--html", path.join(work, "ok.html"));
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /line one\nline two/); // streamed to the terminal
  assert.match(r.stderr, /\[3\/3\] ok/);
  const nb = JSON.parse(fs.readFileSync(path.join(work, "ok.out.ipynb"), "utf8"));
  const code = nb.cells.filter((c: { cell_type: string }) => c.cell_type === "code");
  assert.equal(code.map((c: { execution_count: number }) => c.execution_count), [1, 2, 3]);
  assert.is(joined(code[0].outputs[0].text), "line one\nline two\n");
  assert.is(joined(code[1].outputs[0].data["text/markdown"]), "step 2");
  assert.is(joined(code[1].outputs[1].data["text/plain"]), "42");
  assert.ok(code[2].outputs[0].data["application/vnd.plotly.v1+json"]);
  assert.ok(code[0].metadata.execution["shell.execute_reply"]);
  const html = fs.readFileSync(path.join(work, "ok.html"), "utf8");
  assert.match(html, /<h1>Title<\/h1>/);
  assert.match(html, /<strong>bold<\/strong>/);
  assert.match(html, /DecompressionStream/); // plotly.js travels with the page
  assert.match(html, /retromae-plot-/);
});

test("progress displays print in the terminal: one line per 10% and a final line when not a TTY", () => {
  const cell = [
    'const M = "application/vnd.retromae.progress+json";',
    'const at = (i: number) => ({ "text/plain": `p ${i}`, [M]: { step: i, totalSteps: 20, status: i === 20 ? "done" : "running", text: `step ${i}/20` } });',
    "const h = display.bundle(at(0));",
    "for (let i = 1; i <= 20; i++) h.update({ toMimeBundle: () => at(i) });",
  ].join("\n");
  const r = run(write("progress.ipynb", notebook([{ source: cell }])));
  assert.is(r.status, 0, r.stderr);
  const printed = r.stderr.split("\n").filter((l) => /^step \d+\/20$/.test(l));
  assert.equal(printed, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20].map((i) => `step ${i}/20`));
});

test("an error: nonzero exit with the cell number and traceback; the executed notebook is still written", () => {
  const file = write("err.ipynb", notebook([{ source: "const a = 1;" }, { source: "\nthrow new RangeError(\"bad range\");" }, { source: 'console.log("never")' }]));
  const r = run(file);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /Cell 2 failed: RangeError: bad range/, r.stderr);
  assert.match(r.stderr, /Cell In\[2\], line 2/, r.stderr);
  const nb = JSON.parse(fs.readFileSync(path.join(work, "err.out.ipynb"), "utf8"));
  assert.is(nb.cells[1].outputs[0].output_type, "error");
  assert.equal(nb.cells[2].outputs, []);
  assert.is(nb.metadata.retromae_run.failed_cell, 2);
});

test("-p values go into a new cell after the parameters cell; unknown names are refused", () => {
  const nb = notebook([{ source: "const steps = 100;\nlet name: string = \"a\";\nconst ratio = 0.3;", tags: ["parameters"] }, { source: "console.log(steps, name, ratio)" }]);
  const file = write("params.ipynb", nb);
  const before = fs.readFileSync(file, "utf8");
  const r = run(file, "-p", "steps=5", "-p", "name=hello world");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /5 hello world 0.3/);
  const out = JSON.parse(fs.readFileSync(path.join(work, "params.out.ipynb"), "utf8"));
  assert.equal(out.cells[1].metadata.tags, ["injected-parameters"]);
  assert.match(joined(out.cells[1].source), /const steps = 5;\nlet name = "hello world";/);
  const bad = run(file, "-p", "stepz=5");
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /Unknown parameter "stepz"; the parameters cell declares steps, name, ratio\./);
  assert.is(fs.readFileSync(file, "utf8"), before, "the input notebook is untouched");
  const copy = JSON.parse(before) as Notebook;
  injectParameters(copy, { steps: "7" });
  injectParameters(copy, { steps: "8" }); // a second injection replaces the first
  assert.is(copy.cells.length, 3);
});

test("bad input: missing file, invalid JSON, a timeout and a kernel that dies get one sentence each", () => {
  let r = run(path.join(work, "nope.ipynb"));
  assert.is(r.status, 1);
  assert.match(r.stderr, /Notebook .*nope\.ipynb does not exist or cannot be read\./);
  const broken = write("broken.ipynb", "{ not json");
  r = run(broken);
  assert.is(r.status, 1);
  assert.match(r.stderr, /is not valid JSON/);
  assert.is(fs.readFileSync(broken, "utf8"), "{ not json");
  assert.throws(() => readNotebook(write("plain.json", "{}")), /not a notebook/);
  r = run(write("slow.ipynb", notebook([{ source: "while (true) {}" }])), "--timeout", "2");
  assert.is(r.status, 1);
  assert.match(r.stderr, /Cell 1: The cell did not finish within 2 s; it was interrupted\./);
  r = run(write("dies.ipynb", notebook([{ source: "process.exit(3)" }, { source: "1" }])));
  assert.is(r.status, 1);
  assert.match(r.stderr, /The kernel died while running cell 1: The kernel exited \(code 3\)/);
  assert.ok(fs.existsSync(path.join(work, "dies.out.ipynb")));
  r = run(write("x.ipynb", notebook([])), "-p", "noequals");
  assert.match(r.stderr, /-p needs name=value/);
});

test("a cell's process.exit(3) ends the kernel with code 3, every time (late sends once aborted it from inside zeromq)", () => {
  const file = write("exits.ipynb", notebook([{ source: "process.exit(3)" }]));
  for (let i = 0; i < 10; i++) {
    const r = run(file);
    assert.is(r.status, 1);
    assert.match(r.stderr, /The kernel died while running cell 1: The kernel exited \(code 3\)/, `run ${i + 1}: ${r.stderr}`);
  }
});

test.after(() => fs.rmSync(work, { recursive: true, force: true }));
test.run();
