/**
 * TypeScript for cells: type-check against earlier cells, compile to runnable
 * JavaScript with a position map, completion, inspection and is_complete.
 * One TypeScript LanguageService is kept for the session: unchanged files
 * (lib declarations, @types/node, earlier cells) are parsed and bound once,
 * each program reuses the last, and completion and inspection are
 * TypeScript's own (getCompletionsAtPosition, getQuickInfoAtPosition,
 * getSignatureHelpItems). It runs in its own thread (language-worker.ts) and
 * is warmed up at start.
 */
import * as fs from "fs";
import * as path from "path";
import * as ts from "typescript";
import { cellModule, checkText, declaredNames, NameKind, runtimeText } from "./cells";
import { blankComments, standardDeclarations } from "./declarations";
import { PACKAGE_ROOT } from "../../lib/util";

/** Declarations of what the kernel puts on globalThis for cells (kernel/language/globals.d.ts; notebooks/src type-check against it too). */
export const KERNEL_GLOBALS = fs.readFileSync(path.join(PACKAGE_ROOT, "kernel", "language", "globals.d.ts"), "utf8");

export interface Diagnostic {
  line: number;
  column: number;
  code: number;
  message: string;
  category: "error" | "warning";
  /** The offending source line. */
  source: string;
}

export interface Compiled {
  id: number;
  js: string;
  /** Per generated line: flat [genCol, cellLine, cellCol, ...] (all 1-based). */
  map: number[][];
  hasResult: boolean;
  names: { name: string; kind: NameKind }[];
}

export type CheckResult = { ok: true; compiled: Compiled; checkMs: number; cached: boolean } | { ok: false; diagnostics: Diagnostic[]; checkMs: number };

/** Completion matches, the span of the word they replace, and each match's kind. */
export interface Completion {
  matches: string[];
  start: number;
  end: number;
  types: { text: string; type: string; start: number; end: number }[];
}

export type IsComplete = { status: "complete" | "incomplete" | "invalid"; indent?: string };


/**
 * Doc comments are parsed only where type errors depend on them (@see and @link in TypeScript files), as tsc
 * does: two thirds of the time parsing declaration files goes to their doc comments (the standard declarations,
 * 2.8 MB: 415 ms with them, 183 without, here). Inspection reads the comment it shows from its own parse (docsAt).
 */
const JSDOC_MODE = ts.JSDocParsingMode.ParseForTypeErrors;

/** Where `import … from "retromae"` resolves for types: the build's declarations, else the source. */
function retromaeTypes(root: string): string {
  const built = path.join(root, "dist", "lib", "index.d.ts");
  return fs.existsSync(built) ? built : path.join(root, "lib", "index.ts");
}

export class CellLanguage {
  readonly cwd: string;
  private readonly options: ts.CompilerOptions;
  /** Files that exist only here: the kernel globals, committed cells, the file being checked; with their versions. */
  private readonly virtual = new Map<string, string>();
  private readonly versions = new Map<string, number>();
  private readonly service: ts.LanguageService;
  private readonly resolutionCache: ts.ModuleResolutionCache;
  private readonly typeRefCache = new Map<string, ts.ResolvedTypeReferenceDirectiveWithFailedLookupLocations>();
  /**
   * Cells that passed, by their text and the declarations they refer to: re-running
   * an unchanged cell (the train cell after a mask-ratio cell, say) skips the checker.
   * Cells importing the user's own files are not cached (those files may change).
   */
  private readonly passed = new Map<string, Omit<Compiled, "id">>();
  private readonly visible = new Map<string, { cell: number; kind: NameKind }>();
  private nextId = 1;
  private readonly scratchFile: string;
  private readonly globalsFile: string;
  /** The standard declarations and the kernel's globals: the program's roots besides the scratch file. */
  private readonly rootFiles: string[];

  constructor(cwd = process.cwd()) {
    this.cwd = cwd;
    const root = PACKAGE_ROOT;
    const modules = path.join(root, "node_modules");
    this.options = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      esModuleInterop: true,
      allowImportingTsExtensions: true,
      resolveJsonModule: true,
      // The standard declarations come as one bundled file (declarations.ts), not as TypeScript's lib and @types/node files.
      noLib: true,
      types: [],
      typeRoots: [path.join(modules, "@types")],
      baseUrl: cwd,
      paths: { retromae: [retromaeTypes(root)], "*": ["*", path.join(modules, "*"), path.join(modules, "@types", "*")] },
    };
    this.scratchFile = path.join(cwd, "__check.ts");
    this.globalsFile = path.join(cwd, "__kernel_globals.d.ts");
    this.setVirtual(this.globalsFile, KERNEL_GLOBALS);
    const standard = standardDeclarations(ts, "es2022", path.join(modules, "@types"));
    this.setVirtual(standard.bundle.file, blankComments(standard.bundle.text));
    this.originals.set(standard.bundle.file, standard.bundle.text);
    this.rootFiles = [standard.bundle.file, ...standard.modules, this.globalsFile];
    const sys = ts.sys;
    this.resolutionCache = ts.createModuleResolutionCache(cwd, (f) => f, this.options);
    const fileExists = (f: string) => this.virtual.has(f) || memo(this.exists, f, () => sys.fileExists(f));
    // Installed declaration files are read with their comments blanked (declarations.ts, blankComments).
    const readFile = (f: string) => this.virtual.get(f) ?? memo(this.texts, f, () => (DECLARATION_FILE.test(f) && !isUserFile(f) ? mapDefined(sys.readFile(f), blankComments) : sys.readFile(f)));
    const directoryExists = (d: string) => memo(this.dirs, d, () => sys.directoryExists(d));
    // getModuleResolutionCache is read by the service (its compiler host passes it to each program) but not in its public type.
    const host: ts.LanguageServiceHost & { getModuleResolutionCache(): ts.ModuleResolutionCache } = {
      // Unchanged project version: the service reuses its program without asking each file's version.
      getProjectVersion: () => `${this.edits}:${[...this.userFiles].map(mtime).join(",")}`,
      getCompilationSettings: () => this.options,
      jsDocParsingMode: JSDOC_MODE,
      getScriptFileNames: () => [...this.rootFiles, this.scratchFile],
      // Cells and the scratch file count their edits; the user's files go by mtime; installed files never change.
      getScriptVersion: (f) => {
        if (this.virtual.has(f)) return String(this.versions.get(f));
        if (!isUserFile(f)) return "0";
        this.userFiles.add(f);
        return String(mtime(f));
      },
      getScriptSnapshot: (f) => {
        const text = readFile(f);
        return text === undefined ? undefined : ts.ScriptSnapshot.fromString(text);
      },
      getCurrentDirectory: () => cwd,
      getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
      useCaseSensitiveFileNames: () => sys.useCaseSensitiveFileNames,
      fileExists,
      readFile,
      directoryExists,
      getDirectories: sys.getDirectories,
      realpath: sys.realpath,
      // The resolution cache also keeps package.json lookups (each file's module format) across programs.
      getModuleResolutionCache: () => this.resolutionCache,
      resolveModuleNameLiterals: (literals, containingFile, redirected, options) =>
        literals.map((lit) => ts.resolveModuleName(lit.text, containingFile, options, { fileExists, readFile, directoryExists, realpath: sys.realpath }, this.resolutionCache, redirected)),
      resolveTypeReferenceDirectiveReferences: (refs, containingFile, redirected, options, containingSourceFile) =>
        refs.map((ref) => {
          const name = typeof ref === "string" ? ref : ref.fileName.toLowerCase();
          const mode = typeof ref === "string" ? undefined : ts.getModeForFileReference(ref, containingSourceFile?.impliedNodeFormat);
          const key = `${containingFile}\0${name}\0${mode}`;
          let r = this.typeRefCache.get(key);
          if (!r) this.typeRefCache.set(key, (r = ts.resolveTypeReferenceDirective(name, containingFile, options, { fileExists, readFile, directoryExists, realpath: sys.realpath, getDirectories: sys.getDirectories }, redirected, undefined, mode)));
          return r;
        }),
    };
    // Installed declarations (lib, @types, the library's) never change: once parsed and bound they stay, even when a
    // program without them (a trivial cell after the library's import) would release them, so the next cell that
    // imports the library does not parse its 800 files again.
    const registry = ts.createDocumentRegistry(sys.useCaseSensitiveFileNames, cwd, JSDOC_MODE);
    const release = registry.releaseDocumentWithKey as (...args: unknown[]) => void;
    registry.releaseDocumentWithKey = (...args: unknown[]) => {
      const file = args[0] as string;
      if (this.virtual.has(file) || isUserFile(file)) release.apply(registry, args);
    };
    this.service = ts.createLanguageService(host, registry);
  }

  /** Texts as they are on disk where the checker reads them otherwise (the bundle's comments are blanked): for docsAt. */
  private readonly originals = new Map<string, string>();
  private readonly exists = new Map<string, boolean>();
  private readonly dirs = new Map<string, boolean>();
  private readonly texts = new Map<string, string | undefined>();

  /** Edits to the virtual files, and the user's own files the program has read (their mtimes make the project version). */
  private edits = 0;
  private readonly userFiles = new Set<string>();

  private setVirtual(file: string, text: string): void {
    if (this.virtual.get(file) === text) return;
    this.virtual.set(file, text);
    this.versions.set(file, (this.versions.get(file) ?? 0) + 1);
    this.edits++;
  }

  /** The program with the given text as the scratch file (the service reuses the last program). */
  private programWith(text: string): { program: ts.Program; file: ts.SourceFile } {
    this.setVirtual(this.scratchFile, text);
    const program = this.service.getProgram()!;
    return { program, file: program.getSourceFile(this.scratchFile)! };
  }

  /**
   * Warming up, in the order cells need it: the standard declarations (every cell), then the library's (cells that
   * import it). The language thread runs the steps with its message queue served between them, so a cell sent at
   * start waits for the first step only.
   */
  readonly warmUpSteps: (() => void)[] = [
    () => this.programWith("export {};\n").program.getSemanticDiagnostics(),
    () => {
      const { program, file } = this.programWith(`import { RetroMAE } from "retromae";\nexport const m: RetroMAE | undefined = undefined;\n`);
      program.getSemanticDiagnostics(file);
    },
  ];

  private parse(code: string, file = "cell.ts"): ts.SourceFile {
    return ts.createSourceFile(file, code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  }

  /** The earlier names a cell may refer to: only those it mentions, so a cell loads only what it uses. */
  private mentioned(sf: ts.SourceFile): Map<string, { cell: number; kind: NameKind }> {
    const names = new Set<string>();
    const walk = (n: ts.Node): void => {
      if (ts.isIdentifier(n)) names.add(n.text);
      ts.forEachChild(n, walk);
    };
    walk(sf);
    // A cell's own declarations shadow earlier ones of the same name.
    for (const d of declaredNames(ts, sf)) names.delete(d.name);
    return new Map([...this.visible].filter(([name]) => names.has(name)));
  }

  /** Type-check a cell against earlier cells; on success compile it and make its names visible to later cells. */
  check(code: string): CheckResult {
    const t0 = performance.now();
    const sf = this.parse(code);
    const id = this.nextId;
    const mentioned = this.mentioned(sf);
    const key = importsUserFiles(sf) ? null : JSON.stringify([code, [...mentioned].map(([n, w]) => [n, w.cell])]);
    const hit = key === null ? undefined : this.passed.get(key);
    const ct = checkText(ts, sf, mentioned);
    if (hit) {
      this.commit(id, hit.names, ct.text);
      return { ok: true, compiled: { ...hit, id }, checkMs: performance.now() - t0, cached: true };
    }
    const { program, file } = this.programWith(ct.text);
    const diags = [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)];
    const errors = diags.filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (errors.length) {
      const lines = code.split("\n");
      const diagnostics = errors.map((d): Diagnostic => {
        const off = d.start === undefined ? 0 : ct.toOriginal(d.start);
        const { line, character } = sf.getLineAndCharacterOfPosition(Math.min(off, code.length));
        return {
          line: line + 1,
          column: character + 1,
          code: d.code,
          message: ts.flattenDiagnosticMessageText(d.messageText, "\n"),
          category: "error",
          source: lines[line] ?? "",
        };
      });
      return { ok: false, diagnostics, checkMs: performance.now() - t0 };
    }
    const names = declaredNames(ts, sf);
    this.commit(id, names, ct.text);
    const compiled = this.compile(sf, id, names);
    if (key !== null) this.passed.set(key, { js: compiled.js, map: compiled.map, hasResult: compiled.hasResult, names });
    return { ok: true, compiled, checkMs: performance.now() - t0, cached: false };
  }

  /** The checked text becomes __cell_<id>.ts, and its names are visible from now on. */
  private commit(id: number, names: { name: string; kind: NameKind }[], text: string): void {
    if (names.length) {
      this.setVirtual(path.join(this.cwd, `${cellModule(id)}.ts`), text);
      for (const d of names) this.visible.set(d.name, { cell: id, kind: d.kind });
    }
    this.nextId++;
  }

  private compile(sf: ts.SourceFile, id: number, names: { name: string; kind: NameKind }[]): Compiled {
    const rt = runtimeText(ts, sf);
    const rtLines = lineStarts(rt.text);
    let js: string;
    let segments: [number, number, number][][];
    const plain = plainJavaScript(rt.text);
    if (plain) {
      // Nothing for the transpile to change: the text runs as it is, and maps onto itself token by token.
      js = rt.text + "\n";
      segments = plain;
    } else {
      const out = ts.transpileModule(rt.text, {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, sourceMap: true, alwaysStrict: false, useDefineForClassFields: true, esModuleInterop: true },
        fileName: "cell.ts",
        reportDiagnostics: false,
      });
      js = out.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
      segments = decodeMappings(JSON.parse(out.sourceMapText!).mappings);
    }
    const map = segments.map((line) =>
      line.flatMap(([genCol, srcLine, srcCol]) => {
        const offset = (rtLines[srcLine] ?? rt.text.length) + srcCol;
        const { line: l, character } = sf.getLineAndCharacterOfPosition(Math.min(sf.text.length, rt.toOriginal(offset)));
        return [genCol + 1, l + 1, character + 1];
      }),
    );
    return { id, js, map, hasResult: rt.hasResult, names };
  }

  /** Plain transpile (no check, no commit): for user_expressions. */
  transpileExpression(expr: string): string {
    return ts.transpileModule(`(${expr})`, { compilerOptions: { target: ts.ScriptTarget.ES2022 }, reportDiagnostics: false }).outputText;
  }

  /** Put code that is not yet run into the scratch file; where a cell position lands in it. */
  private at(code: string, cursor: number, allNames = false): number {
    const sf = this.parse(code);
    const ct = checkText(ts, sf, allNames ? this.visible : this.mentioned(sf));
    this.setVirtual(this.scratchFile, ct.text);
    return ct.prefixLength + editOffset(sf, ct.text.slice(ct.prefixLength), cursor);
  }

  /** Names that complete the word at the cursor: members by type after a dot, else what is in scope, and keywords. */
  complete(code: string, cursor: number): Completion {
    let start = cursor;
    while (start > 0 && /[\w$]/.test(code[start - 1])) start--;
    let end = cursor;
    while (end < code.length && /[\w$]/.test(code[end])) end++;
    const prefix = code.slice(start, cursor);
    const info = this.service.getCompletionsAtPosition(this.scratchFile, this.at(code, start, true), { includeCompletionsForModuleExports: false });
    const seen = new Set<string>();
    const entries = (info?.entries ?? [])
      .filter((e) => e.name.startsWith(prefix) && !e.name.startsWith("__") && !seen.has(e.name) && (seen.add(e.name), true))
      .map((e) => ({ name: e.name, kind: KIND_NAMES[e.kind] ?? e.kind }))
      .sort((a, b) => (a.name.startsWith("_") ? 1 : 0) - (b.name.startsWith("_") ? 1 : 0) || a.name.localeCompare(b.name));
    return { matches: entries.map((e) => e.name), start, end, types: entries.map((e) => ({ text: e.name, type: e.kind, start, end })) };
  }

  /** The signature and doc comment of the name at the cursor, else of the call the cursor is in. */
  inspect(code: string, cursor: number, detail: number): string | null {
    let at = cursor;
    // A cursor just after a name (or after "name(") inspects that name.
    while (at > 0 && !/[\w$]/.test(code[at] ?? "") && /[\s(]/.test(code[at - 1] ?? "")) at--;
    if (at > 0 && !/[\w$]/.test(code[at] ?? "")) at--;
    const quick = /[\w$]/.test(code[at] ?? "") ? this.service.getQuickInfoAtPosition(this.scratchFile, this.at(code, at)) : undefined;
    let sig: string;
    // Where the name's declarations are: their doc comments are read from there (see JSDOC_MODE).
    let named: number;
    if (quick) {
      sig = ts.displayPartsToString(quick.displayParts);
      named = this.at(code, at);
    } else {
      const help = this.service.getSignatureHelpItems(this.scratchFile, this.at(code, cursor), undefined);
      if (!help) return null;
      const item = help.items[help.selectedItemIndex];
      const separator = ts.displayPartsToString(item.separatorDisplayParts);
      sig = ts.displayPartsToString(item.prefixDisplayParts) + item.parameters.map((p) => ts.displayPartsToString(p.displayParts)).join(separator) + ts.displayPartsToString(item.suffixDisplayParts);
      // The callee: the last name before the call's "(".
      let callee = help.applicableSpan.start - 1;
      const text = this.virtual.get(this.scratchFile)!;
      while (callee > 0 && !/[\w$]/.test(text[callee])) callee--;
      named = callee;
    }
    const docs = (this.service.getDefinitionAtPosition(this.scratchFile, named) ?? []).map((d) => this.docsAt(d.fileName, d.textSpan.start)).find((d) => d !== null);
    return [sig, docs?.comment ?? "", detail > 0 ? (docs?.tags ?? []).join("\n") : ""].filter(Boolean).join("\n\n");
  }

  /** Files parsed with their doc comments for inspection, the last few. */
  private readonly withDocs = new Map<string, ts.SourceFile>();

  /** The doc comment and tags of the declaration whose name starts at `pos` in `file`, or null when it has none. */
  private docsAt(file: string, pos: number): { comment: string; tags: string[] } | null {
    let sf = this.withDocs.get(file);
    if (!sf) {
      const text = this.originals.get(file) ?? this.virtual.get(file) ?? ts.sys.readFile(file);
      if (text === undefined) return null;
      sf = ts.createSourceFile(file, text, { languageVersion: ts.ScriptTarget.ES2022, jsDocParsingMode: ts.JSDocParsingMode.ParseAll }, true);
      this.withDocs.set(file, sf);
      if (this.withDocs.size > 4) this.withDocs.delete(this.withDocs.keys().next().value!);
    }
    // The innermost node that starts at the name, then the declaration around it.
    let node: ts.Node = sf;
    for (let inner: ts.Node | undefined = sf; inner; ) {
      node = inner;
      inner = ts.forEachChild(node, (c) => (c.getStart(sf) <= pos && pos < c.end ? c : undefined));
    }
    const decl = ts.isIdentifier(node) || ts.isPrivateIdentifier(node) || ts.isStringLiteral(node) ? node.parent : node;
    const comments = ts.getJSDocCommentsAndTags(decl).filter(ts.isJSDoc);
    if (!comments.length) return null;
    const tags = comments.flatMap((c) =>
      (c.tags ?? []).map((t) => {
        const name = ts.isJSDocParameterTag(t) || ts.isJSDocPropertyTag(t) ? ` ${t.name.getText(sf)}` : "";
        return `@${t.tagName.text}${name} ${ts.getTextOfJSDocComment(t.comment) ?? ""}`.trim();
      }),
    );
    return { comment: comments.map((c) => ts.getTextOfJSDocComment(c.comment) ?? "").filter(Boolean).join("\n"), tags };
  }

  /** Jupyter's is_complete: complete, incomplete (with an indent) or invalid. */
  isComplete(code: string): IsComplete {
    return isComplete(code);
  }
}

/** TypeScript's TransformFlags (internal): what a subtree contains that a transform at target ES2022 would change. */
const TRANSFORMED = (() => {
  const f = (ts as unknown as { TransformFlags?: Record<string, number> }).TransformFlags;
  return f && typeof f.ContainsTypeScript === "number" ? f.ContainsTypeScript | f.ContainsJsx | f.ContainsESNext : null;
})();

/**
 * When the runnable text holds no TypeScript syntax and nothing newer than ES2022 (the parser's
 * transform flags say so), transpiling it would only reprint it: the token-start identity map
 * ([genCol, line, col] per generated line, 0-based) to run it as it is. Else null (transpile it).
 * Saves the transpile's program and checker, about 3 ms per cell here.
 */
function plainJavaScript(text: string): [number, number, number][][] | null {
  if (TRANSFORMED === null) return null;
  const sf = ts.createSourceFile("cell.ts", text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const flags = (sf as unknown as { transformFlags?: number }).transformFlags;
  if (typeof flags !== "number" || flags & TRANSFORMED) return null;
  const lines: [number, number, number][][] = sf.getLineStarts().map(() => []);
  const scanner = ts.createScanner(ts.ScriptTarget.ES2022, true, ts.LanguageVariant.Standard, text);
  for (let tok = scanner.scan(); tok !== ts.SyntaxKind.EndOfFileToken; tok = scanner.scan()) {
    const { line, character } = sf.getLineAndCharacterOfPosition(scanner.getTokenStart());
    lines[line].push([character, line, character]);
  }
  return lines;
}

/** Whether a cell imports a relative or absolute path (the user's files, which may change between runs). */
function importsUserFiles(sf: ts.SourceFile): boolean {
  return sf.statements.some((st) => {
    const spec = ts.isImportDeclaration(st)
      ? (st.moduleSpecifier as ts.StringLiteral).text
      : ts.isImportEqualsDeclaration(st) && ts.isExternalModuleReference(st.moduleReference)
        ? (st.moduleReference.expression as ts.StringLiteral).text
        : null;
    return spec !== null && (spec.startsWith(".") || path.isAbsolute(spec));
  });
}

/** Files outside installed packages and TypeScript's own declarations. */
const DECLARATION_FILE = /\.d\.[mc]?ts$/;

function mapDefined<T, U>(v: T | undefined, f: (v: T) => U): U | undefined {
  return v === undefined ? undefined : f(v);
}

function isUserFile(f: string): boolean {
  return !f.includes(`${path.sep}node_modules${path.sep}`) && !f.includes(`${path.sep}dist${path.sep}lib${path.sep}`);
}

/** Cache lookups of installed files (they don't change during a session); the user's files are looked up every time. */
function memo<T>(cache: Map<string, T>, key: string, get: () => T): T {
  if (!isUserFile(key) && cache.has(key)) return cache.get(key)!;
  const v = get();
  if (!isUserFile(key)) cache.set(key, v);
  return v;
}

/** TypeScript's element kinds, in the words Jupyter front ends show. */
const KIND_NAMES: Record<string, string> = {
  var: "variable",
  let: "variable",
  const: "variable",
  "local var": "variable",
  parameter: "variable",
  getter: "property",
  setter: "property",
  "local function": "function",
  alias: "module",
};

/** A file's modification time, -1 once deleted. */
function mtime(f: string): number {
  try {
    return fs.statSync(f).mtimeMs;
  } catch {
    return -1;
  }
}

/** The offset in the edited text that corresponds to `cursor` in the cell (insertions before it shift it). */
function editOffset(sf: ts.SourceFile, edited: string, cursor: number): number {
  // checkText only inserts "export " before top-level declarations.
  let shift = 0;
  for (const st of sf.statements) {
    if (st.getStart(sf) >= cursor) break;
    if (edited.slice(st.getStart(sf) + shift, st.getStart(sf) + shift + 7) === "export " && sf.text.slice(st.getStart(sf), st.getStart(sf) + 7) !== "export ") shift += 7;
  }
  return cursor + shift;
}

export function isComplete(code: string): IsComplete {
  if (code.trim() === "") return { status: "complete" };
  const scanner = ts.createScanner(ts.ScriptTarget.ES2022, false, ts.LanguageVariant.Standard, code);
  // Open brackets, with "t" for a template literal's ${ ... } (its `}` continues the template).
  const open: string[] = [];
  let unterminated = false;
  const closes: Record<number, string> = { [ts.SyntaxKind.CloseBraceToken]: "{", [ts.SyntaxKind.CloseParenToken]: "(", [ts.SyntaxKind.CloseBracketToken]: "[" };
  for (let tok = scanner.scan(); tok !== ts.SyntaxKind.EndOfFileToken; tok = scanner.scan()) {
    if (scanner.isUnterminated()) unterminated = true;
    if (tok === ts.SyntaxKind.OpenBraceToken) open.push("{");
    else if (tok === ts.SyntaxKind.OpenParenToken) open.push("(");
    else if (tok === ts.SyntaxKind.OpenBracketToken) open.push("[");
    else if (tok === ts.SyntaxKind.TemplateHead) open.push("t");
    else if (tok === ts.SyntaxKind.CloseBraceToken && open[open.length - 1] === "t") {
      const next = scanner.reScanTemplateToken(false);
      if (scanner.isUnterminated()) unterminated = true;
      if (next === ts.SyntaxKind.TemplateTail) open.pop();
    } else if (tok in closes) {
      if (open.pop() !== closes[tok]) return { status: "invalid" };
    }
  }
  const lastLine = code.split("\n").pop() ?? "";
  const indentOf = (l: string) => /^\s*/.exec(l)![0];
  if (unterminated || open.length) return { status: "incomplete", indent: indentOf(lastLine) + (open.length && !unterminated ? "  " : "") };
  const sf = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const diags = (sf as unknown as { parseDiagnostics: ts.DiagnosticWithLocation[] }).parseDiagnostics ?? [];
  if (!diags.length) return { status: "complete" };
  const endOfCode = code.trimEnd().length;
  if (diags.every((d) => d.start >= endOfCode)) return { status: "incomplete", indent: indentOf(lastLine) };
  return { status: "invalid" };
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Decode a source map's `mappings` into per-line [genCol, srcLine, srcCol] (0-based). */
export function decodeMappings(mappings: string): [number, number, number][][] {
  const lines: [number, number, number][][] = [];
  let srcLine = 0;
  let srcCol = 0;
  for (const lineText of mappings.split(";")) {
    const segs: [number, number, number][] = [];
    let genCol = 0;
    for (const seg of lineText.split(",")) {
      if (!seg) continue;
      const values: number[] = [];
      let shift = 0;
      let value = 0;
      for (const ch of seg) {
        const digit = B64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) shift += 5;
        else {
          values.push(value & 1 ? -(value >> 1) : value >> 1);
          value = 0;
          shift = 0;
        }
      }
      genCol += values[0];
      if (values.length >= 4) {
        srcLine += values[2];
        srcCol += values[3];
        segs.push([genCol, srcLine, srcCol]);
      }
    }
    lines.push(segs);
  }
  return lines;
}
