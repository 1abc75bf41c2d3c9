/**
 * Builds notebooks/NAME.ipynb from notebooks/src/NAME.ts. The sources are
 * TypeScript in percent format (as jupytext writes it), type-checked by
 * `tsc -p notebooks/tsconfig.json` against lib's public API:
 *
 *   // %% [markdown]
 *   // # A heading          (markdown cells: the text behind "// ")
 *   // %% tags=["parameters"]
 *   const steps = 120;     (code cells; tags as JSON)
 *
 * Run: npm run notebooks          (writes the notebooks)
 *      npm run notebooks -- --check   (exit 1 when a committed notebook differs from its source)
 */
import * as fs from "fs";
import * as path from "path";
import { writeFileAtomic } from "../lib/util";
import type { Notebook, NotebookCell } from "../runner/notebook";

const ROOT = path.resolve(__dirname, "..");
export const SOURCES = path.join(ROOT, "notebooks", "src");

const MARKER = /^\/\/ %%(?: \[(markdown|md)\])?(?: tags=(\[.*\]))?\s*$/;

/** Source lines as nbformat stores them: each line keeps its newline, the last has none. */
function lines(text: string): string[] {
  return text.split(/(?<=\n)/).filter((l) => l !== "");
}

/** A percent-format source as a notebook. */
export function notebookFromSource(text: string, file = "source"): Notebook {
  const cells: NotebookCell[] = [];
  let current: { kind: "markdown" | "code"; tags: string[]; body: string[] } | null = null;
  const finish = () => {
    if (!current) return;
    while (current.body.length && current.body[current.body.length - 1].trim() === "") current.body.pop();
    const i = cells.length;
    const source = lines(current.body.join("\n"));
    if (current.kind === "markdown") cells.push({ cell_type: "markdown", id: `md-${i}`, metadata: {}, source });
    else cells.push({ cell_type: "code", id: `code-${i}`, metadata: current.tags.length ? { tags: current.tags } : {}, execution_count: null, outputs: [], source });
  };
  text.split("\n").forEach((line, n) => {
    const m = MARKER.exec(line);
    if (m) {
      finish();
      let tags: string[] = [];
      if (m[2]) {
        try {
          tags = JSON.parse(m[2]);
        } catch {
          throw new Error(`${file}:${n + 1}: the tags of a cell marker must be a JSON list, e.g. // %% tags=["parameters"].`);
        }
      }
      current = { kind: m[1] ? "markdown" : "code", tags, body: [] };
      return;
    }
    if (!current) {
      if (line.trim() !== "") throw new Error(`${file}:${n + 1}: text before the first "// %%" cell marker; start the file with one.`);
      return;
    }
    if (current.kind === "markdown") {
      if (line !== "" && line !== "//" && !line.startsWith("// ")) throw new Error(`${file}:${n + 1}: a markdown cell's lines must start with "// ".`);
      current.body.push(line.replace(/^\/\/ ?/, ""));
    } else current.body.push(line);
  });
  finish();
  return {
    cells,
    metadata: {
      kernelspec: { name: "retromae", display_name: "RetroMAE (TypeScript)", language: "typescript" },
      language_info: { name: "typescript", file_extension: ".ts", mimetype: "text/typescript" },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

export function notebookJson(nb: Notebook): string {
  return JSON.stringify(nb, null, 1) + "\n";
}

/** Each source and the notebook it makes. */
export function builtNotebooks(): { source: string; target: string; json: string }[] {
  return fs
    .readdirSync(SOURCES)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
    .sort()
    .map((f) => {
      const source = path.join(SOURCES, f);
      return { source, target: path.join(ROOT, "notebooks", f.replace(/\.ts$/, ".ipynb")), json: notebookJson(notebookFromSource(fs.readFileSync(source, "utf8"), source)) };
    });
}

if (require.main === module) {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const { source, target, json } of builtNotebooks()) {
    const rel = path.relative(ROOT, target);
    if (check) {
      const same = fs.existsSync(target) && fs.readFileSync(target, "utf8") === json;
      if (!same) {
        stale++;
        console.error(`${rel} differs from ${path.relative(ROOT, source)}; run npm run notebooks.`);
      }
    } else {
      writeFileAtomic(target, json);
      console.log(`wrote ${rel}`);
    }
  }
  process.exit(stale ? 1 : 0);
}
