import * as ts from "typescript";
import * as vm from "vm";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { applyEdits, checkText, declaredNames, runtimeText } from "../../kernel/language/cells";

const parse = (code: string) => ts.createSourceFile("cell.ts", code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
const js = (code: string) => ts.transpileModule(runtimeText(ts, parse(code)).text, { compilerOptions: { target: ts.ScriptTarget.ES2022 } }).outputText;

test("applyEdits maps edited offsets back to the original", () => {
  const { text, toOriginal } = applyEdits("abcdef", [
    { start: 1, end: 3, text: "XYZW" },
    { start: 5, end: 5, text: "!" },
  ]);
  assert.is(text, "aXYZWde!f");
  assert.is(toOriginal(0), 0);
  assert.is(toOriginal(2), 1);
  assert.is(toOriginal(5), 3);
  assert.is(toOriginal(8), 5);
  assert.throws(() => applyEdits("abc", [{ start: 0, end: 2, text: "" }, { start: 1, end: 3, text: "" }]), /overlapping/);
});

test("declared names: let/var may be reassigned later, the rest are imports", () => {
  const names = declaredNames(ts, parse('import x, { a as b } from "m";\nimport * as ns from "n";\nlet l = 1; var v; const { c, d: [e] } = o;\nfunction f() {}\nclass C {}\ninterface I {}\ntype T = 1;\nenum E { A }\nconst l = 2;'));
  assert.equal(
    names.map((n) => `${n.name}:${n.kind}`),
    ["x:import", "b:import", "ns:import", "v:let", "c:const", "e:const", "f:const", "C:const", "I:const", "T:const", "E:const", "l:const"],
  );
});

test("check text: earlier names through one prefix line, own declarations exported", () => {
  const visible = new Map([
    ["model", { cell: 3, kind: "const" as const }],
    ["step", { cell: 4, kind: "let" as const }],
    ["x", { cell: 1, kind: "const" as const }],
  ]);
  const ct = checkText(ts, parse("const x = model;\nstep += 1;"), visible);
  const [prefix, ...rest] = ct.text.split("\n");
  assert.is(prefix, 'import { model } from "./__cell_3"; declare let step: typeof import("./__cell_4").step;');
  assert.is(rest.join("\n"), "export const x = model;\nstep += 1;\nexport {  };\n");
  // Offsets in the check text map back to the cell (the `x` after "export const ").
  assert.is(ct.toOriginal(ct.text.indexOf("x = model")), 6);
});

test("runtime text keeps the cell's lines and stores top-level names on globalThis", () => {
  const code = 'import { a as b } from "m";\nconst x: number = 1,\n  y = 2;\nlet z;\nfunction f() { return x }\nclass C {}\nx + y';
  const rt = runtimeText(ts, parse(code));
  assert.ok(rt.hasResult);
  const lines = rt.text.split("\n");
  assert.is(lines.length, code.split("\n").length + 2); // prefix line + closing line
  assert.match(lines[0], /globalThis\.f = f;/);
  assert.match(lines[1], /__rm\.load\("m"\).*b = __rmi0\["a"\]/);
  assert.match(lines[2], /^;\(x = 1,$/);
  assert.match(lines[4], /z = undefined\)/);
  assert.match(lines[6], /globalThis\.C = C;/);
  assert.match(lines[7], /return \(x \+ y\)/);
});

test("loops get an interrupt guard and awaits race the interrupt, closers in the right order", () => {
  const out = js("for (const v of xs) total += await get(v)\nwhile (true) {}\ndo x++; while (x < 3)");
  assert.match(out, /for \(const v of xs\) \{\s*if \(__rmf\[0\]\)\s*__rm\.stop\(\);\s*total \+= await __rm\.w\(get\(v\)\);\s*\}/);
  assert.match(out, /while \(true\) \{\s*if \(__rmf\[0\]\)/);
  assert.match(out, /do \{\s*if \(__rmf\[0\]\)\s*__rm\.stop\(\);\s*x\+\+;\s*\}\s*while/);
});

test("import() anywhere becomes the runtime's import, which resolves as a static import does", () => {
  const rt = runtimeText(ts, parse('const p = await import("node:path");\nasync function later(s: string) { return (await import(s)).default; }\nimport.meta'));
  const lines = rt.text.split("\n");
  assert.match(lines[1], /await __rm\.w\( __rm\.imp\("node:path"\)\)/);
  assert.match(lines[2], /\(await __rm\.w\( __rm\.imp\(s\)\)\)\.default/);
  assert.match(lines[3], /import\.meta/, "import.meta is not a call; left alone");
  assert.is(rt.text.split("\n").length, 5, "the cell's lines are kept");
});

test("the compiled cell runs: declarations land on globalThis, the last expression is the result", async () => {
  const g = globalThis as Record<string, unknown>;
  g.__rmf = new Int32Array(2);
  g.__rm = { w: (x: unknown) => x, stop: () => { throw new Error("stopped"); } };
  const value = await vm.runInThisContext(js("const { p, q: [r] } = { p: 1, q: [2] };\nlet s: string = 'k';\nfunction twice(n: number) { return 2 * n }\nclass K { v = 3 }\n[p, r, s, twice(4), new K().v]"));
  assert.equal(value, [1, 2, "k", 8, 3]);
  assert.is(g.p, 1);
  assert.is(g.r, 2);
  assert.is(typeof g.twice, "function");
  assert.is(typeof g.K, "function");
  // An object-literal-looking last line is still an expression, and `declare` produces nothing.
  assert.equal(await vm.runInThisContext(js("declare const nothing: number;\n({ a: 1 })")), { a: 1 });
  g.__rmf = new Int32Array([1, 0]);
  await assert.not.throws(() => vm.runInThisContext(js("1")));
  try {
    await vm.runInThisContext(js("while (true) {}"));
    assert.unreachable("the guard should stop the loop");
  } catch (e) {
    assert.is((e as Error).message, "stopped");
  }
  for (const k of ["__rm", "__rmf", "p", "r", "s", "twice", "K"]) delete g[k];
});

test.run();
