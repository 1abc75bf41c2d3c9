/**
 * The standard declarations cells are checked against, as few files as
 * possible: lib.es2022 (with every lib it references) and @types/node's
 * script files concatenated into one declaration file; the few of
 * @types/node's files that are modules stay files of their own.
 *
 * Why: every cell is checked in a new program (TypeScript has no incremental
 * checker), and each file of a program costs each new program and checker a
 * fixed price; the lib's interfaces, split over files (Array in es5,
 * es2015.core, es2015.iterable, ...), are merged again by every new checker.
 * In one file the binder merges them once. Measured here: a trivial cell
 * against the 158 separate files, 5.7 ms per check; against the bundle, about
 * 1 ms. The text is the same declarations, so what cells may use and how they
 * are typed does not change.
 */
import * as fs from "fs";
import * as path from "path";
import type * as TS from "typescript";

export interface StandardDeclarations {
  /** The concatenated script declarations: a virtual file in the place of @types/node's index.d.ts (where its imports resolve). */
  bundle: { file: string; text: string };
  /** Declaration files that are modules (`export {}` with `declare global`): kept as they are. */
  modules: string[];
  /** Every file that went into the bundle, in order. */
  sources: string[];
}

/** A declaration file is a module when a top-level statement imports or exports (ambient modules' bodies are indented). */
const TOP_LEVEL_MODULE_SYNTAX = /^(import|export)[\s{*]/m;
const REFERENCE_LINE = /^\/\/\/\s*<reference\s[^>]*\/>[^\n]*$/gm;

/**
 * Collect lib.<lib>.d.ts and, when @types/node is installed, its entry point with
 * everything they reference, following `/// <reference lib|path|types>` in order.
 */
export function standardDeclarations(ts: typeof TS, lib: string, typeRoot: string): StandardDeclarations {
  const libDir = path.dirname(ts.getDefaultLibFilePath({}));
  const seen = new Set<string>();
  const scripts: { file: string; text: string }[] = [];
  const modules: string[] = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = fs.readFileSync(file, "utf8");
    for (const r of referenceDirectives(text)) {
      if (r.kind === "lib") visit(path.join(libDir, `lib.${r.name.toLowerCase()}.d.ts`));
      else if (r.kind === "path") visit(path.resolve(path.dirname(file), r.name));
      else {
        const entry = typesEntry(ts, r.name, typeRoot);
        if (entry) visit(entry);
      }
    }
    if (file.startsWith(libDir + path.sep) || !TOP_LEVEL_MODULE_SYNTAX.test(text)) scripts.push({ file, text });
    else modules.push(file);
  };
  visit(path.join(libDir, `lib.${lib}.d.ts`));
  const node = typesEntry(ts, "node", typeRoot);
  if (node) visit(node);
  const home = node ? path.dirname(node) : libDir;
  // The bundle takes the place of @types/node's entry point, so that other packages' `/// <reference types="node" />` find it.
  // Reference lines are dropped (everything they name is in the bundle or among the modules); line breaks separate files.
  const text = scripts.map((s) => `// ${path.relative(home, s.file)}\n${s.text.replace(REFERENCE_LINE, "")}\n`).join("");
  return { bundle: { file: node ?? path.join(libDir, "__retromae_standard.d.ts"), text }, modules, sources: scripts.map((s) => s.file) };
}

/**
 * The `/// <reference lib|path|types="…" />` directives of a declaration file, in order: those in its leading
 * comments, where TypeScript reads them (ts.preProcessFile scans the whole file, 0.35 s over these 2.8 MB).
 */
export function referenceDirectives(text: string): { kind: "lib" | "path" | "types"; name: string }[] {
  const out: { kind: "lib" | "path" | "types"; name: string }[] = [];
  let inBlock = false;
  for (const raw of text.split("\n", 2000)) {
    const line = raw.trim();
    if (inBlock) {
      inBlock = !line.includes("*/");
      continue;
    }
    if (line === "") continue;
    if (line.startsWith("/*")) {
      inBlock = !line.slice(2).includes("*/");
      continue;
    }
    if (!line.startsWith("//")) break;
    const m = /^\/\/\/\s*<reference\s+(lib|path|types)\s*=\s*["']([^"']+)["']/.exec(line);
    if (m) out.push({ kind: m[1] as "lib" | "path" | "types", name: m[2] });
  }
  return out;
}

/**
 * The text with every comment's characters turned to spaces (line breaks kept), so that every position is
 * where it was: the parser skips a run of spaces faster than a comment it must search for doc tags, and
 * declaration files are half comments (the standard declarations: 2.7 MB, 0.7 MB of it not comments or
 * space). Type checking reads nothing from comments but doc tags, which the checker does not parse anyway
 * (JSDOC_MODE in language.ts); inspection reads doc comments from the original text.
 */
export function blankComments(text: string): string {
  const out: string[] = [];
  let last = 0;
  const next = /\/\/|\/\*|["'`]/g;
  for (let m = next.exec(text); m; m = next.exec(text)) {
    const at = m.index;
    let end: number;
    if (m[0] === "//") {
      end = text.indexOf("\n", at);
      if (end < 0) end = text.length;
    } else if (m[0] === "/*") {
      end = text.indexOf("*/", at + 2);
      end = end < 0 ? text.length : end + 2;
    } else {
      // A string or template: to its closing quote, past escapes; what is inside is not a comment.
      end = at + 1;
      while (end < text.length && text[end] !== m[0]) end += text[end] === "\\" ? 2 : 1;
      next.lastIndex = end + 1;
      continue;
    }
    out.push(text.slice(last, at));
    for (let s = at; s < end; ) {
      let nl = text.indexOf("\n", s);
      if (nl < 0 || nl > end) nl = end;
      out.push(" ".repeat(nl - s));
      if (nl < end) out.push("\n");
      s = nl + 1;
    }
    last = end;
    next.lastIndex = end;
  }
  out.push(text.slice(last));
  return out.join("");
}

/** The declaration entry point of an @types package, honouring its typesVersions; null when it is not installed. */
function typesEntry(ts: typeof TS, name: string, typeRoot: string): string | null {
  const r = ts.resolveTypeReferenceDirective(name, path.join(typeRoot, "__index.d.ts"), { typeRoots: [typeRoot], moduleResolution: ts.ModuleResolutionKind.Bundler }, ts.sys);
  return r.resolvedTypeReferenceDirective?.resolvedFileName ?? null;
}
