/**
 * Turning a TypeScript cell into (a) the text that is type-checked and (b) the
 * JavaScript that runs, from one parse.
 *
 * Type-checking: every cell is a module `__cell_N.ts` that exports all its
 * top-level declarations. A new cell gets one prefix line that brings in the
 * newest declaration of every earlier name it does not redeclare itself:
 *   import { model, tf } from "./__cell_3";             (consts, functions, classes, types, imports)
 *   declare let step: typeof import("./__cell_4").step;  (let/var, so later cells may assign them)
 *
 * Running: the cell becomes the body of an async arrow (top-level await), with
 * top-level names stored on globalThis so later cells see them:
 *   const x: T = e          ->  ;(x = e);
 *   import X, {a as b} from "m" ->  var __rmi0 = await __rm.load("m"); X = __rm.def(__rmi0); b = __rmi0.a;
 *   import("m")                  ->  __rm.imp("m")   (the same resolution, as a module namespace)
 *   function f() {}         ->  kept; `globalThis.f = f;` in the prefix (hoisted)
 *   class C {}              ->  kept; `;globalThis.C = C;` after it
 *   last expression e       ->  return (e);
 * plus a loop guard at the top of every loop body and `await __rm.w(x)` for
 * every `await x`, so interrupts stop loops and pending awaits. Edits keep the
 * cell's line structure; a source map from the TypeScript transpile and the
 * edit list map run-time positions back to cell lines.
 */
import type * as TS from "typescript";
import { Flag } from "../protocol/flags";

export type NameKind = "let" | "const" | "import";

/** A top-level name a cell declares, and how later cells see it. */
export interface Declared {
  name: string;
  kind: NameKind;
}

export interface Edit {
  start: number;
  end: number;
  text: string;
  /** Among insertions at one offset, lower goes first (closers of inner nodes before outer ones). */
  order?: number;
}

/** Apply non-overlapping edits; also returns a mapper from new offsets to original offsets. */
export function applyEdits(source: string, edits: Edit[]): { text: string; toOriginal: (offset: number) => number } {
  const sorted = [...edits].sort((a, b) => a.start - b.start || a.end - b.end || (a.order ?? 0) - (b.order ?? 0));
  let out = "";
  let pos = 0;
  const spans: { newStart: number; newEnd: number; start: number; end: number }[] = [];
  for (const e of sorted) {
    if (e.start < pos) throw new Error(`overlapping edits at ${e.start}`);
    out += source.slice(pos, e.start);
    spans.push({ newStart: out.length, newEnd: out.length + e.text.length, start: e.start, end: e.end });
    out += e.text;
    pos = e.end;
  }
  out += source.slice(pos);
  const toOriginal = (offset: number): number => {
    let delta = 0;
    for (const s of spans) {
      if (offset < s.newStart) break;
      if (offset < s.newEnd) return s.start;
      delta = s.end - s.newEnd;
    }
    return Math.max(0, Math.min(source.length, offset + delta));
  };
  return { text: out, toOriginal };
}

/** Newlines of a span, so a replacement keeps the line count. */
function newlines(text: string): string {
  return text.replace(/[^\n]/g, "");
}

function hasModifier(ts: typeof TS, node: TS.Node, kind: TS.SyntaxKind): boolean {
  const mods = ts.canHaveModifiers(node) ? ts.getModifiers(node) : undefined;
  return !!mods?.some((m) => m.kind === kind);
}

function bindingNames(ts: typeof TS, name: TS.BindingName, out: string[]): void {
  if (ts.isIdentifier(name)) out.push(name.text);
  else for (const el of name.elements) if (!ts.isOmittedExpression(el)) bindingNames(ts, el.name, out);
}

/** The top-level names a cell declares (later declarations of a name win). */
export function declaredNames(ts: typeof TS, sf: TS.SourceFile): Declared[] {
  const out = new Map<string, NameKind>();
  const add = (name: string, kind: NameKind) => {
    out.delete(name);
    out.set(name, kind);
  };
  for (const st of sf.statements) {
    if (ts.isVariableStatement(st)) {
      const isConst = (st.declarationList.flags & ts.NodeFlags.Const) !== 0;
      const names: string[] = [];
      for (const d of st.declarationList.declarations) bindingNames(ts, d.name, names);
      for (const n of names) add(n, isConst ? "const" : "let");
    } else if (ts.isImportDeclaration(st)) {
      const clause = st.importClause;
      if (!clause) continue;
      if (clause.name) add(clause.name.text, "import");
      const nb = clause.namedBindings;
      if (nb && ts.isNamespaceImport(nb)) add(nb.name.text, "import");
      else if (nb) for (const el of nb.elements) add(el.name.text, "import");
    } else if (ts.isImportEqualsDeclaration(st)) {
      add(st.name.text, "import");
    } else if (
      (ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st) || ts.isEnumDeclaration(st)) &&
      st.name
    ) {
      add(st.name.text, "const");
    } else if (ts.isModuleDeclaration(st) && ts.isIdentifier(st.name)) {
      add(st.name.text, "const");
    }
  }
  return [...out].map(([name, kind]) => ({ name, kind }));
}

export function cellModule(id: number): string {
  return `__cell_${id}`;
}

/**
 * The text type-checked for a cell: a prefix line bringing in earlier names,
 * then the cell with `export` on its top-level declarations. The cell starts
 * on line 2 (`prefix.length` + 1 characters in).
 */
export function checkText(
  ts: typeof TS,
  sf: TS.SourceFile,
  visible: Map<string, { cell: number; kind: NameKind }>,
): { text: string; prefixLength: number; toOriginal: (offset: number) => number } {
  const own = new Set(declaredNames(ts, sf).map((d) => d.name));
  const imports = new Map<number, string[]>();
  const decls: string[] = [];
  for (const [name, where] of visible) {
    if (own.has(name)) continue;
    if (where.kind === "let") decls.push(`declare let ${name}: typeof import("./${cellModule(where.cell)}").${name};`);
    else {
      const list = imports.get(where.cell) ?? [];
      list.push(name);
      imports.set(where.cell, list);
    }
  }
  const prefix =
    [...imports].map(([cell, names]) => `import { ${names.join(", ")} } from "./${cellModule(cell)}";`).join(" ") + (decls.length ? " " + decls.join(" ") : "") + "\n";
  const edits: Edit[] = [];
  const reexports: string[] = [];
  for (const st of sf.statements) {
    const exportable =
      ts.isVariableStatement(st) ||
      ts.isFunctionDeclaration(st) ||
      ts.isClassDeclaration(st) ||
      ts.isInterfaceDeclaration(st) ||
      ts.isTypeAliasDeclaration(st) ||
      ts.isEnumDeclaration(st) ||
      (ts.isModuleDeclaration(st) && ts.isIdentifier(st.name));
    if (exportable && !hasModifier(ts, st, ts.SyntaxKind.ExportKeyword) && (!ts.isFunctionDeclaration(st) || st.name)) {
      edits.push({ start: st.getStart(sf), end: st.getStart(sf), text: "export " });
    } else if (ts.isImportDeclaration(st) && st.importClause) {
      const c = st.importClause;
      if (c.name) reexports.push(c.name.text);
      const nb = c.namedBindings;
      if (nb && ts.isNamespaceImport(nb)) reexports.push(nb.name.text);
      else if (nb) for (const el of nb.elements) reexports.push(el.name.text);
    } else if (ts.isImportEqualsDeclaration(st) && !hasModifier(ts, st, ts.SyntaxKind.ExportKeyword)) {
      edits.push({ start: st.getStart(sf), end: st.getStart(sf), text: "export " });
    }
  }
  const { text, toOriginal } = applyEdits(sf.text, edits);
  const tail = `\nexport { ${reexports.join(", ")} };\n`;
  return { text: prefix + text + tail, prefixLength: prefix.length, toOriginal: (o) => toOriginal(o - prefix.length) };
}

export interface RuntimeText {
  /** TypeScript text of `(async () => { ... })()`; transpile it to run it. */
  text: string;
  toOriginal: (offset: number) => number;
  /** Whether the cell ends with an expression whose value is the result. */
  hasResult: boolean;
}

const GUARD = `if(__rmf[${Flag.Requested}])__rm.stop();`;

/** The runnable form of a cell (still TypeScript; types are stripped by transpiling). */
export function runtimeText(ts: typeof TS, sf: TS.SourceFile): RuntimeText {
  const src = sf.text;
  const edits: Edit[] = [];
  const hoisted: string[] = [];
  let importCount = 0;
  const blank = (node: TS.Node) => edits.push({ start: node.getStart(sf), end: node.end, text: newlines(src.slice(node.getStart(sf), node.end)) });
  const stripExport = (node: TS.Node) => {
    const mods = ts.canHaveModifiers(node) ? ts.getModifiers(node) : undefined;
    for (const m of mods ?? []) if (m.kind === ts.SyntaxKind.ExportKeyword || m.kind === ts.SyntaxKind.DefaultKeyword) edits.push({ start: m.getStart(sf), end: m.end, text: "" });
  };

  // Loop guards and await wrappers, anywhere in the cell.
  const visit = (node: TS.Node, depth: number): void => {
    if (
      ts.isForStatement(node) ||
      ts.isForInStatement(node) ||
      ts.isForOfStatement(node) ||
      ts.isWhileStatement(node) ||
      ts.isDoStatement(node)
    ) {
      const body = node.statement;
      if (ts.isBlock(body)) edits.push({ start: body.getStart(sf) + 1, end: body.getStart(sf) + 1, text: GUARD });
      else {
        edits.push({ start: body.getStart(sf), end: body.getStart(sf), text: `{${GUARD}` });
        edits.push({ start: body.end, end: body.end, text: "}", order: -depth });
      }
    }
    // import(spec) anywhere (also in functions called by later cells) resolves as a static import in a cell does
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      edits.push({ start: node.expression.getStart(sf), end: node.expression.end, text: "__rm.imp" });
    }
    if (ts.isAwaitExpression(node)) {
      const kw = node.getStart(sf) + "await".length;
      edits.push({ start: kw, end: kw, text: " __rm.w(" });
      edits.push({ start: node.expression.end, end: node.expression.end, text: ")", order: -depth });
    }
    ts.forEachChild(node, (c) => visit(c, depth + 1));
  };

  const statements = sf.statements;
  statements.forEach((st, i) => {
    const last = i === statements.length - 1;
    if (hasModifier(ts, st, ts.SyntaxKind.DeclareKeyword)) return blank(st);
    if (ts.isImportDeclaration(st)) {
      const c = st.importClause;
      const spec = (st.moduleSpecifier as TS.StringLiteral).text;
      if (c?.isTypeOnly) return blank(st);
      const v = `__rmi${importCount++}`;
      const parts = [`var ${v} = await __rm.load(${JSON.stringify(spec)});`];
      if (c?.name) parts.push(`${c.name.text} = __rm.def(${v});`);
      const nb = c?.namedBindings;
      if (nb && ts.isNamespaceImport(nb)) parts.push(`${nb.name.text} = ${v};`);
      else if (nb)
        for (const el of nb.elements) {
          if (el.isTypeOnly) continue;
          const from = (el.propertyName ?? el.name).text;
          parts.push(from === "default" ? `${el.name.text} = __rm.def(${v});` : `${el.name.text} = ${v}[${JSON.stringify(from)}];`);
        }
      edits.push({ start: st.getStart(sf), end: st.end, text: parts.join(" ") + newlines(src.slice(st.getStart(sf), st.end)) });
      return;
    }
    if (ts.isImportEqualsDeclaration(st)) {
      if (st.isTypeOnly) return blank(st);
      const ref = st.moduleReference;
      const rhs = ts.isExternalModuleReference(ref) ? `__rm.require(${ref.expression.getText(sf)})` : ref.getText(sf);
      edits.push({ start: st.getStart(sf), end: st.end, text: `;${st.name.text} = ${rhs};` + newlines(src.slice(st.getStart(sf), st.end)) });
      return;
    }
    if (ts.isExportDeclaration(st) || ts.isExportAssignment(st)) return blank(st);
    visit(st, 1);
    if (ts.isVariableStatement(st)) {
      const list = st.declarationList;
      const decls = list.declarations;
      // `const ` / `export let ` ... up to the first declaration -> `;(`
      edits.push({ start: st.getStart(sf), end: decls[0].getStart(sf), text: ";(" });
      for (const d of decls) {
        const nameEnd = d.name.end;
        const typeEnd = d.type ? d.type.end : d.exclamationToken ? d.exclamationToken.end : nameEnd;
        if (typeEnd > nameEnd) edits.push({ start: nameEnd, end: typeEnd, text: newlines(src.slice(nameEnd, typeEnd)) });
        if (!d.initializer) edits.push({ start: typeEnd, end: typeEnd, text: " = undefined" });
      }
      edits.push({ start: list.end, end: list.end, text: ")" });
      return;
    }
    if (ts.isFunctionDeclaration(st)) {
      stripExport(st);
      if (st.name && st.body && !hoisted.includes(st.name.text)) hoisted.push(st.name.text);
      return;
    }
    if (ts.isClassDeclaration(st) || ts.isEnumDeclaration(st) || (ts.isModuleDeclaration(st) && ts.isIdentifier(st.name))) {
      stripExport(st);
      if (st.name) edits.push({ start: st.end, end: st.end, text: `;globalThis.${st.name.text} = ${st.name.text};` });
      return;
    }
    if (ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st)) return stripExport(st);
    if (last && ts.isExpressionStatement(st)) {
      edits.push({ start: st.expression.getStart(sf), end: st.expression.getStart(sf), text: "return (" });
      edits.push({ start: st.expression.end, end: st.expression.end, text: ")" });
    }
  });
  const last = statements[statements.length - 1];
  const hasResult = !!last && ts.isExpressionStatement(last);
  const prefix = `(async () => { ${hoisted.map((n) => `globalThis.${n} = ${n};`).join(" ")}\n`;
  const { text, toOriginal } = applyEdits(src, edits);
  return { text: `${prefix}${text}\n})()`, toOriginal: (o) => toOriginal(o - prefix.length), hasResult };
}
