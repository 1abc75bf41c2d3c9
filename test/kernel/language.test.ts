import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ts from "typescript";
import { blankComments, referenceDirectives, standardDeclarations } from "../../kernel/language/declarations";
import { CellLanguage, decodeMappings, isComplete } from "../../kernel/language/language";
import { mapPosition } from "../../kernel/runtime/traceback";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lang-"));
fs.writeFileSync(path.join(dir, "util.ts"), "/** Doubles. */\nexport function double(x: number): number { return 2 * x; }\n");
const L = new CellLanguage(dir);

function ok(code: string) {
  const r = L.check(code);
  if (!r.ok) throw new Error(JSON.stringify(r.diagnostics));
  return r.compiled;
}

test("cells see earlier declarations with their types; type errors carry cell-relative positions", () => {
  ok("let count = 1;\nconst label: string = 'n';");
  ok("count += 2;");
  const bad = L.check("const x = 1;\nconst y: number = label;");
  assert.is(bad.ok, false);
  if (bad.ok) return;
  assert.is(bad.diagnostics.length, 1);
  const d = bad.diagnostics[0];
  assert.equal([d.line, d.column, d.code], [2, 7, 2322]);
  assert.is(d.source, "const y: number = label;");
  // The failed cell committed nothing: `x` is unknown to the next one.
  const after = L.check("x");
  assert.is(after.ok, false);
});

test("redeclaring a name in a later cell replaces it, with its new type", () => {
  ok("const thing = 1;");
  ok("const thing = 'now a string';");
  ok("thing.toUpperCase();");
  assert.is(L.check("const n: number = thing;").ok, false);
});

test("imports of packages, relative .ts files and retromae are typed", () => {
  ok('import { double } from "./util";\nconst four: number = double(2);');
  ok('import { RetroMAE } from "retromae";\nconst make = RetroMAE.create;');
  const r = L.check('import { RetroMAE } from "retromae";\nRetroMAE.nope();');
  assert.is(r.ok, false);
});

test("the kernel's globals are typed", () => {
  ok('display.html("<b>x</b>");\nconst a: string = await input("?");\ninterruptSignal.aborted;\nclearOutput(true);');
  assert.is(L.check("display.nope()").ok, false);
});

test("completion lists members by type, and names in scope", () => {
  ok('import { RetroMAE } from "retromae";\nconst model = RetroMAE.create("tiny");');
  const members = L.complete("model.enc", 9);
  assert.ok(members.matches.includes("encode"), members.matches.join());
  assert.is(members.start, 6);
  assert.ok(L.complete("mod", 3).matches.includes("model"));
  assert.ok(L.complete("Math.", 5).matches.includes("max"));
  assert.ok(L.complete("wh", 2).matches.includes("while"));
});

test("inspect shows the signature and the doc comment", () => {
  const text = L.inspect("model.encode", 8, 0)!;
  assert.match(text, /encode\(inputIds: .*Tensor2D/);
  assert.match(text, /\[CLS\]/);
  assert.match(L.inspect("double(", 7, 0)!, /Doubles\./);
  assert.is(L.inspect("   ", 1, 0), null);
});

test("inspect reads doc comments of the standard declarations, which the checker parses without them", () => {
  const max = L.inspect("Math.max", 6, 1)!;
  assert.match(max, /^\(method\) Math\.max\(\.\.\.values: number\[\]\): number/);
  assert.match(max, /Returns the larger of a set of supplied numeric expressions\./);
  assert.match(max, /@param values Numeric expressions/);
  assert.not.match(L.inspect("Math.max", 6, 0)!, /@param/);
  // @types/node's, from the bundled file, through signature help.
  assert.match(L.inspect("console.log(", 12, 0)!, /Prints to `stdout` with newline/);
});

test("blankComments keeps every position and the parse, and leaves strings and templates alone", () => {
  const text = 'declare const a: "x//y"; // gone\n/** doc\n * more */ declare const b: \'/*not*/\';\ntype T = `a${string}//b`; /* c */ declare const c: 1;\n';
  const blank = blankComments(text);
  assert.is(blank.length, text.length);
  assert.equal(blank.split("\n").map((l) => l.length), text.split("\n").map((l) => l.length));
  assert.not.match(blank, /gone|doc|more|\/\* c/);
  for (const kept of ['"x//y"', "'/*not*/'", "`a${string}//b`", "declare const c: 1;"]) assert.ok(blank.includes(kept), kept);
  // The same tree, node for node, over these lines and over the whole of the standard declarations.
  const std = standardDeclarations(ts, "es2022", path.join(__dirname, "..", "..", "node_modules", "@types")).bundle.text;
  for (const t of [text, std]) {
    const shape = (src: string) => {
      const out: number[] = [];
      const walk = (n: ts.Node): void => {
        out.push(n.kind, n.pos, n.end);
        ts.forEachChild(n, walk);
      };
      walk(ts.createSourceFile("x.d.ts", src, { languageVersion: ts.ScriptTarget.ES2022, jsDocParsingMode: ts.JSDocParsingMode.ParseNone }));
      return out;
    };
    const [a, b] = [shape(t), shape(blankComments(t))];
    assert.is(a.length, b.length);
    assert.ok(a.every((x, i) => x === b[i]));
  }
});

test("referenceDirectives reads the leading /// lines as ts.preProcessFile does", () => {
  const text = '/* licence */\n/// <reference lib="es2015.core" />\n// note\n/// <reference path="./a.d.ts" />\n/// <reference types="node" />\ndeclare const x: 1;\n/// <reference path="./late.d.ts" />\n';
  const p = ts.preProcessFile(text, true, false);
  assert.equal(referenceDirectives(text), [
    ...p.libReferenceDirectives.map((r) => ({ kind: "lib", name: r.fileName })),
    ...p.referencedFiles.map((r) => ({ kind: "path", name: r.fileName })),
    ...p.typeReferenceDirectives.map((r) => ({ kind: "types", name: r.fileName })),
  ]);
});

test("compiled cells map generated positions back to cell lines", () => {
  const c = ok("const a = 1;\n\nthrow new Error('x');");
  const throwLine = c.js.split("\n").findIndex((l) => l.includes("throw new Error")) + 1;
  const segs = c.map[throwLine - 1];
  assert.ok(segs.length >= 3);
  assert.is(segs[1], 3); // cell line of the throw
});

test("plain-JavaScript cells run as written, typed ones are transpiled; both map thrown positions to the cell", () => {
  const plain = ok("let total = 0;\nfor (const v of [1, 2]) total += v;\n  throw new Error(`sum ${total}`);");
  const typed = ok("function half(x: number): number { return x / 2; }\n\nconst h = half(4) as number;\n  throw new Error('h');");
  assert.not.match(typed.js, /: number/);
  assert.match(plain.js, /for \(const v of \[1, 2\]\)/);
  for (const [c, line] of [[plain, 3], [typed, 4]] as const) {
    const genLine = c.js.split("\n").findIndex((l) => l.includes("throw new Error")) + 1;
    const genCol = c.js.split("\n")[genLine - 1].indexOf("Error") + 1;
    // The frame's column points at `Error` in `throw new Error`: column 13 of that cell line ("  throw new Error").
    assert.equal(mapPosition(c.map, genLine, genCol), [line, 13]);
  }
});

test("the standard declarations are one bundled file (lib.es2022 and @types/node's scripts), with node's typing intact", () => {
  const std = standardDeclarations(ts, "es2022", path.join(__dirname, "..", "..", "node_modules", "@types"));
  assert.ok(std.bundle.file.endsWith(path.join("@types", "node", "index.d.ts")), std.bundle.file);
  assert.ok(std.sources.some((f) => f.endsWith("lib.es5.d.ts")) && std.sources.some((f) => f.endsWith("lib.es2022.d.ts")));
  assert.ok(std.sources.some((f) => f.endsWith(path.join("node", "fs.d.ts"))));
  assert.ok(std.modules.length > 0 && std.modules.length < 10, std.modules.join());
  assert.not.match(std.bundle.text, /^\/\/\/\s*<reference/m);
  ok('import * as fsm from "node:fs";\nconst size: number = fsm.statSync(".").size;\nconst buf: Buffer = Buffer.from("x");\nsetTimeout(() => {}, 1);\nconst env: string | undefined = process.env.HOME;\nconst at: string = [1].at(-1)!.toFixed(1);\nconst r: Promise<Response> = fetch("http://127.0.0.1");');
  assert.is(L.check('import * as fsm from "node:fs";\nfsm.statSync(1, 2, 3);').ok, false);
  assert.is(L.check("const s: string = process.pid;").ok, false);
  assert.is(L.check("[1].findLast(x => x > 0)").ok, false); // ES2023: not in es2022, as before
});

test("is_complete: complete, incomplete with an indent, invalid", () => {
  for (const code of ["1", "const a = 1;", "function f() {}\n", "`a ${1} b`", "x = { a: [1, (2)] }"]) assert.is(isComplete(code).status, "complete", code);
  assert.equal(isComplete("for (;;) {"), { status: "incomplete", indent: "  " });
  assert.equal(isComplete("  foo(1,"), { status: "incomplete", indent: "    " });
  for (const code of ["`abc", "1 +", "`a ${"]) assert.is(isComplete(code).status, "incomplete", code);
  for (const code of ["}", "const = 5", "1 +* 2", "(]"]) assert.is(isComplete(code).status, "invalid", code);
});

test("an unchanged cell over unchanged declarations is not checked again; a changed declaration is", () => {
  ok("let ratio = 0.3;");
  const first = L.check("const masked = ratio * 100;");
  const again = L.check("const masked = ratio * 100;");
  assert.ok(first.ok && !first.cached);
  assert.ok(again.ok && again.cached);
  ok('let ratio = "0.5";');
  const retyped = L.check("const masked = ratio * 100;");
  assert.is(retyped.ok, false); // string * number: checked against the new declaration
  const withFile = L.check('import { double } from "./util";\ndouble(1);');
  const withFileAgain = L.check('import { double } from "./util";\ndouble(1);');
  assert.ok(withFile.ok && withFileAgain.ok && !withFileAgain.cached);
});

test("source-map VLQ decoding", () => {
  // "AAAA;AACA,IAAI" : line 0 col 0 -> 0:0; line 1 col 0 -> 1:0, col 4 -> 1:4
  assert.equal(decodeMappings("AAAA;AACA,IAAI"), [[[0, 0, 0]], [[0, 1, 0], [4, 1, 4]]]);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
