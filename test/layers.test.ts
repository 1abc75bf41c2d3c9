/**
 * The layers of DESIGN.md, checked on the import graph of the sources:
 * lib/ never imports kernel/ (or bin/); the kernel reaches lib only through
 * its public entries (lib/index.ts, lib/util) or `import type`; no module
 * imports itself through a circle (static, type-only and dynamic imports
 * all count).
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

const files = [...sources("lib"), ...sources("kernel"), ...sources("bin")];

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

test("lib never imports kernel/ or bin/", () => {
  for (const [file, deps] of graph) {
    if (!file.startsWith("lib")) continue;
    for (const d of deps) assert.not.ok(d.target.startsWith("kernel") || d.target.startsWith("bin"), `${file} imports ${d.target}`);
  }
});

test("the kernel reaches lib only through its public entries or types", () => {
  const publicEntries = new Set([path.join("lib", "index.ts"), path.join("lib", "util", "index.ts")]);
  for (const [file, deps] of graph) {
    if (!file.startsWith("kernel")) continue;
    for (const d of deps) {
      if (!d.target.startsWith("lib")) continue;
      assert.ok(publicEntries.has(d.target), `${file} imports ${d.target}, not lib's public API`);
    }
  }
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
