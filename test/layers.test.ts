/**
 * The layers of DESIGN.md, checked on the import graph of the sources:
 * lib/ never imports kernel/, runner/ or bin/; the kernel and the runner
 * reach lib only through its public entries (lib/index.ts, lib/util) or
 * `import type`; no module imports itself through a circle (static,
 * type-only and dynamic imports all count).
 *
 * Inside the kernel, the folders are layers too (kernel/README.md):
 * - protocol/ (wire, sockets, busy/idle) knows nothing of the runtime or
 *   the language thread;
 * - runtime/ (what cells run in) uses the protocol's messages and flags,
 *   the language thread's types only, and never the kernel's top level;
 * - language/ (the TypeScript thread) uses only the protocol's shared
 *   interrupt flags;
 * - runner/, the headless runner, is a Jupyter client, not part of the
 *   kernel: it shares only the wire format and the kernelspec lookup, and
 *   the kernel never imports it.
 */
import * as fs from "fs";
import * as path from "path";
import * as ts from "typescript";
import { test } from "uvu";
import * as assert from "uvu/assert";

const root = path.resolve(__dirname, "..");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(rel);
  }
  return out;
}

const files = [...sources("lib"), ...sources("kernel"), ...sources("runner"), ...sources("bin")];

/** Relative imports of a file, resolved to files in the tree; with whether each is type-only. */
function imports(file: string): { target: string; typeOnly: boolean }[] {
  const text = fs.readFileSync(path.join(root, file), "utf8");
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found: { spec: string; typeOnly: boolean }[] = [];
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const typeOnly = ts.isImportDeclaration(n) ? !!n.importClause?.isTypeOnly : n.isTypeOnly;
      found.push({ spec: n.moduleSpecifier.text, typeOnly });
    } else if (ts.isCallExpression(n) && (n.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(n.expression) && n.expression.text === "require")) && n.arguments[0] && ts.isStringLiteral(n.arguments[0])) {
      found.push({ spec: n.arguments[0].text, typeOnly: false });
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      found.push({ spec: n.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  const out: { target: string; typeOnly: boolean }[] = [];
  for (const { spec, typeOnly } of found) {
    if (!spec.startsWith(".")) continue;
    const base = path.join(path.dirname(file), spec);
    const target = [`${base}.ts`, path.join(base, "index.ts")].find((f) => fs.existsSync(path.join(root, f)));
    if (target) out.push({ target, typeOnly });
  }
  return out;
}

const graph = new Map(files.map((f) => [f, imports(f)]));

const under = (file: string, dir: string) => file.startsWith(dir + path.sep);

test("lib never imports kernel/, runner/ or bin/", () => {
  for (const [file, deps] of graph) {
    if (!under(file, "lib")) continue;
    for (const d of deps) assert.not.ok(under(d.target, "kernel") || under(d.target, "runner") || under(d.target, "bin"), `${file} imports ${d.target}`);
  }
});

test("the kernel and the runner reach lib only through its public entries or types", () => {
  const publicEntries = new Set([path.join("lib", "index.ts"), path.join("lib", "util", "index.ts")]);
  for (const [file, deps] of graph) {
    if (!under(file, "kernel") && !under(file, "runner")) continue;
    for (const d of deps) {
      if (!d.target.startsWith("lib")) continue;
      assert.ok(publicEntries.has(d.target), `${file} imports ${d.target}, not lib's public API`);
    }
  }
});

test("the kernel's folders are layers: protocol, runtime, language thread; the runner is a client beside them", () => {
  const k = (sub: string) => path.join("kernel", sub);
  const seen = { protocol: 0, runtime: 0, language: 0, runner: 0 };
  for (const [file, deps] of graph) {
    for (const d of deps) {
      const t = d.target;
      if (under(file, k("protocol"))) {
        seen.protocol++;
        assert.not.ok(under(t, k("runtime")) || under(t, k("language")) || under(t, "runner"), `the protocol knows nothing of the runtime or the language thread: ${file} imports ${t}`);
      }
      if (under(file, k("runtime"))) {
        seen.runtime++;
        assert.ok(!under(t, "kernel") || under(t, k("runtime")) || under(t, k("protocol")) || (under(t, k("language")) && d.typeOnly), `the runtime uses the protocol and the language thread's types only: ${file} imports ${t}`);
      }
      if (under(file, k("language"))) {
        seen.language++;
        assert.ok(!under(t, "kernel") || under(t, k("language")) || t === path.join("kernel", "protocol", "flags.ts") || t === path.join("kernel", "log.ts"), `the language thread shares only the interrupt flags and the log: ${file} imports ${t}`);
      }
      if (under(file, "runner")) {
        seen.runner++;
        assert.ok(!under(t, "kernel") || t === path.join("kernel", "protocol", "wire.ts") || t === path.join("kernel", "install.ts"), `the runner is a Jupyter client: it shares the wire format and the kernelspec lookup only: ${file} imports ${t}`);
      }
      if (under(file, "kernel")) assert.not.ok(under(t, "runner"), `the kernel never imports the runner: ${file} imports ${t}`);
    }
  }
  for (const [folder, n] of Object.entries(seen)) assert.ok(n > 0, `${folder}'s imports were checked`);
  // the groups of kernel/README.md, each in its folder
  const inFolder = (dir: string) => fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith(".ts")).sort();
  assert.equal(inFolder(k("protocol")), ["flags.ts", "iopub.ts", "messages.ts", "protocol.ts", "transport.ts", "wire.ts"]);
  assert.equal(inFolder(k("language")), ["cells.ts", "code-cache.ts", "declarations.ts", "globals.d.ts", "language-worker.ts", "language.ts"]);
  assert.equal(inFolder("runner"), ["cell-reporter.ts", "client.ts", "html.ts", "notebook.ts", "runner.ts", "widgets.ts"]);
  for (const f of ["runtime.ts", "display.ts", "modules.ts", "bridge.ts", "traceback.ts", "format.ts", "plotly.ts", "comms.ts"]) assert.ok(inFolder(k("runtime")).includes(f), `kernel/runtime/${f}`);
});

test("no import circles", () => {
  const circles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, "open");
    stack.push(f);
    for (const { target } of graph.get(f) ?? []) {
      if (state.get(target) === "open") circles.push([...stack.slice(stack.indexOf(target)), target].join(" -> "));
      else if (!state.has(target)) visit(target);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.equal(circles, []);
});

test.run();
