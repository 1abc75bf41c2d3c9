import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { builtNotebooks, notebookFromSource } from "../../scripts/make-notebooks";

const root = path.resolve(__dirname, "../..");

test("every committed notebook is what its source in notebooks/src builds", () => {
  const built = builtNotebooks();
  assert.ok(built.length >= 3, "quickstart, mask-ratios and load-pretrained have sources");
  for (const { source, target, json } of built) {
    assert.ok(fs.existsSync(target), `${target} is missing; run npm run notebooks`);
    assert.ok(fs.readFileSync(target, "utf8") === json, `${path.relative(root, target)} differs from ${path.relative(root, source)}; run npm run notebooks`);
  }
  const committed = fs.readdirSync(path.join(root, "notebooks")).filter((f) => f.endsWith(".ipynb") && !f.endsWith(".out.ipynb"));
  assert.equal(committed.sort(), built.map((b) => path.basename(b.target)).sort(), "every notebook has a source");
});

test("the sources type-check against lib's public API and the kernel's globals", () => {
  const tsc = require.resolve("typescript/bin/tsc");
  const r = spawnSync(process.execPath, [tsc, "-p", path.join(root, "notebooks", "tsconfig.json")], { encoding: "utf8" });
  assert.is(r.status, 0, r.stdout + r.stderr);
});

test("percent format: markdown and code cells, tags, and one sentence for a malformed source", () => {
  const nb = notebookFromSource('// %% [markdown]\n// # Title\n//\n// text\n\n// %% tags=["parameters"]\nconst a = 1;\n\n// %%\na + 1\n');
  assert.equal(
    nb.cells.map((c) => [c.cell_type, c.source, c.metadata]),
    [
      ["markdown", ["# Title\n", "\n", "text"], {}],
      ["code", ["const a = 1;"], { tags: ["parameters"] }],
      ["code", ["a + 1"], {}],
    ],
  );
  assert.throws(() => notebookFromSource("const a = 1;\n", "x.ts"), /x\.ts:1: text before the first "\/\/ %%" cell marker/);
  assert.throws(() => notebookFromSource("// %% tags=[oops]\n", "x.ts"), /x\.ts:1: the tags of a cell marker must be a JSON list/);
  assert.throws(() => notebookFromSource("// %% [markdown]\nnot a comment\n", "x.ts"), /x\.ts:2: a markdown cell's lines must start with "\/\/ "/);
});

test.run();
