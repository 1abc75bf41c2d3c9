/**
 * TypeScript for cells: type-check against earlier cells, compile to runnable
 * JavaScript with a position map, completion, inspection and is_complete.
 * One TypeScript LanguageService is kept for the session, so unchanged files
 * (lib declarations, @types/node, earlier cells) are parsed and bound once.
 * It runs in its own thread (language-worker.ts) and is warmed up at start.
 */
import * as fs from "fs";
import * as path from "path";
import * as ts from "typescript";
import { cellModule, checkText, declaredNames, NameKind, runtimeText } from "./cells";
import { PACKAGE_ROOT } from "../lib/util";

/** Declarations of what the kernel puts on globalThis for cells. */
export const KERNEL_GLOBALS = `
interface DisplayHandle {
  /** The display_id of this output. */
  readonly id: string;
  /** Replace what this output shows (update_display_data). */
  update(value: unknown): void;
}
interface DisplayFunction {
  /** Show a value as rich output: objects with [Symbol.for("Jupyter.display")]() or toMimeBundle() give their own bundle. */
  (value: unknown, options?: { id?: string }): DisplayHandle;
  html(html: string): DisplayHandle;
  markdown(markdown: string): DisplayHandle;
  json(value: unknown): DisplayHandle;
  /** PNG bytes or base64 text. */
  png(data: Uint8Array | string, options?: { width?: number; height?: number }): DisplayHandle;
  svg(svg: string): DisplayHandle;
  /** A Plotly figure ({ data, layout } or a PlotlyFigure), with an offline HTML fallback. */
  plotly(figure: { data: unknown[]; layout?: unknown } | { toJSON(): unknown }): DisplayHandle;
  /** A raw MIME bundle. */
  bundle(bundle: Record<string, unknown>): DisplayHandle;
}
/** Rich output in the notebook. */
declare const display: DisplayFunction;
/** Clear this cell's output (wait: only when new output arrives). */
declare function clearOutput(wait?: boolean): void;
/** Ask the user for a line of text through the front end (stdin channel). */
declare function input(prompt?: string, options?: { password?: boolean }): Promise<string>;
/** Aborts when the running cell is interrupted; pass it to long loops, e.g. trainer.fit({ signal: interruptSignal }). */
declare const interruptSignal: AbortSignal;
`;

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


/** Where `import … from "retromae"` resolves for types: the build's declarations, else the source. */
function retromaeTypes(root: string): string {
  const built = path.join(root, "dist", "lib", "index.d.ts");
  return fs.existsSync(built) ? built : path.join(root, "lib", "index.ts");
}

export class CellLanguage {
  readonly cwd: string;
  private readonly options: ts.CompilerOptions;
  /** Files that exist only here: the kernel globals, committed cells, the file being checked. */
  private readonly virtual = new Map<string, string>();
  /** Every SourceFile ever loaded, kept parsed and bound for the session. */
  private readonly sources = new Map<string, ts.SourceFile>();
  private readonly host: ts.CompilerHost;
  private readonly resolutionCache: ts.ModuleResolutionCache;
  private readonly typeRefCache = new Map<string, ts.ResolvedTypeReferenceDirectiveWithFailedLookupLocations>();
  private program: ts.Program | undefined;
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
      lib: ["lib.es2022.d.ts"],
      types: ["node"],
      typeRoots: [path.join(modules, "@types")],
      baseUrl: cwd,
      paths: { retromae: [retromaeTypes(root)], "*": ["*", path.join(modules, "*"), path.join(modules, "@types", "*")] },
    };
    this.scratchFile = path.join(cwd, "__check.ts");
    this.globalsFile = path.join(cwd, "__kernel_globals.d.ts");
    this.virtual.set(this.globalsFile, KERNEL_GLOBALS);
    const base = ts.createCompilerHost(this.options, true);
    this.resolutionCache = ts.createModuleResolutionCache(cwd, (f) => f, this.options);
    this.host = {
      ...base,
      getCurrentDirectory: () => cwd,
      fileExists: (f) => this.virtual.has(f) || memo(this.exists, f, () => base.fileExists(f)),
      directoryExists: (d) => memo(this.dirs, d, () => base.directoryExists!(d)),
      readFile: (f) => this.virtual.get(f) ?? memo(this.texts, f, () => base.readFile(f)),
      getSourceFile: (f, lang) => {
        const v = this.virtual.get(f);
        const cached = this.sources.get(f);
        if (cached && (v === undefined ? !isUserFile(f) || this.unchanged(f) : cached.text === v)) return cached;
        const sf = v !== undefined ? ts.createSourceFile(f, v, lang, true) : base.getSourceFile(f, lang);
        if (sf) this.sources.set(f, sf);
        if (sf && v === undefined && isUserFile(f)) this.unchanged(f);
        return sf;
      },
      // Also caches package.json lookups (each file's module format) across programs.
      getModuleResolutionCache: () => this.resolutionCache,
      resolveModuleNameLiterals: (literals, containingFile, redirected, options) =>
        literals.map((lit) => ts.resolveModuleName(lit.text, containingFile, options, this.host, this.resolutionCache, redirected)),
      resolveTypeReferenceDirectiveReferences: (refs, containingFile, redirected, options, containingSourceFile) =>
        refs.map((ref) => {
          const name = typeof ref === "string" ? ref : ref.fileName.toLowerCase();
          const mode = typeof ref === "string" ? undefined : ts.getModeForFileReference(ref, containingSourceFile?.impliedNodeFormat);
          const key = `${containingFile}\0${name}\0${mode}`;
          let r = this.typeRefCache.get(key);
          if (!r) this.typeRefCache.set(key, (r = ts.resolveTypeReferenceDirective(name, containingFile, options, this.host, redirected, undefined, mode)));
          return r;
        }),
    };
  }

  private readonly exists = new Map<string, boolean>();
  private readonly dirs = new Map<string, boolean>();
  private readonly texts = new Map<string, string | undefined>();
  private readonly mtimes = new Map<string, number>();

  /** The user's own .ts files may change between cells; installed packages do not. */
  private unchanged(f: string): boolean {
    let m = -1;
    try {
      m = fs.statSync(f).mtimeMs;
    } catch {
      /* deleted */
    }
    const same = this.mtimes.get(f) === m;
    this.mtimes.set(f, m);
    return same;
  }

  /** A program holding the given text as the scratch file (earlier programs are reused). */
  private programWith(text: string): { program: ts.Program; file: ts.SourceFile } {
    this.virtual.set(this.scratchFile, text);
    this.program = ts.createProgram([this.globalsFile, this.scratchFile], this.options, this.host, this.program);
    return { program: this.program, file: this.program.getSourceFile(this.scratchFile)! };
  }

  /** Load and bind the standard declarations and the library's before the first cell needs them. */
  warmUp(): void {
    const { program, file } = this.programWith(`import { RetroMAE } from "retromae";\nexport const m: RetroMAE | undefined = undefined;\n`);
    program.getSemanticDiagnostics(file);
    this.programWith("export {};\n").program.getSemanticDiagnostics();
  }

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
      this.virtual.set(path.join(this.cwd, `${cellModule(id)}.ts`), text);
      for (const d of names) this.visible.set(d.name, { cell: id, kind: d.kind });
    }
    this.nextId++;
  }

  private compile(sf: ts.SourceFile, id: number, names: { name: string; kind: NameKind }[]): Compiled {
    const rt = runtimeText(ts, sf);
    const out = ts.transpileModule(rt.text, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, sourceMap: true, alwaysStrict: false, useDefineForClassFields: true, esModuleInterop: true },
      fileName: "cell.ts",
      reportDiagnostics: false,
    });
    const js = out.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
    const rtLines = lineStarts(rt.text);
    const segments = decodeMappings(JSON.parse(out.sourceMapText!).mappings);
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

  /** The program and the node at a cursor in code that is not yet run. */
  private at(code: string, cursor: number, allNames = false): { checker: ts.TypeChecker; file: ts.SourceFile; node: ts.Node; pos: number } {
    const sf = this.parse(code);
    const ct = checkText(ts, sf, allNames ? this.visible : this.mentioned(sf));
    const { program, file } = this.programWith(ct.text);
    const pos = ct.prefixLength + editOffset(sf, ct.text.slice(ct.prefixLength), cursor);
    return { checker: program.getTypeChecker(), file, node: tokenAt(file, pos), pos };
  }

  complete(code: string, cursor: number): { matches: string[]; start: number; end: number; types: { text: string; type: string; start: number; end: number }[] } {
    let start = cursor;
    while (start > 0 && /[\w$]/.test(code[start - 1])) start--;
    let end = cursor;
    while (end < code.length && /[\w$]/.test(code[end])) end++;
    const prefix = code.slice(start, cursor);
    // Complete at the start of the word being typed; a lone "." gets a placeholder name so it parses.
    const probe = code.slice(0, start) + "__rm_complete" + code.slice(end);
    const { checker, node } = this.at(probe, start, true);
    let symbols: ts.Symbol[];
    const parent = node.parent;
    if (parent && ts.isPropertyAccessExpression(parent) && parent.name === node) {
      const type = checker.getTypeAtLocation(parent.expression);
      symbols = checker.getPropertiesOfType(checker.getApparentType(type));
    } else if (parent && ts.isQualifiedName(parent) && parent.right === node) {
      const sym = checker.getSymbolAtLocation(parent.left);
      symbols = sym ? checker.getExportsOfModule(sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym) : [];
    } else {
      symbols = checker.getSymbolsInScope(node, ts.SymbolFlags.Value | ts.SymbolFlags.Type | ts.SymbolFlags.Namespace | ts.SymbolFlags.Alias);
      symbols.push(...KEYWORDS.map((k) => ({ name: k, flags: 0 }) as unknown as ts.Symbol));
    }
    const seen = new Set<string>();
    const entries = symbols
      .map((s) => ({ name: s.name, kind: symbolKind(s) }))
      .filter((e) => e.name.startsWith(prefix) && !e.name.startsWith("__") && !seen.has(e.name) && (seen.add(e.name), true))
      .sort((a, b) => (a.name.startsWith("_") ? 1 : 0) - (b.name.startsWith("_") ? 1 : 0) || a.name.localeCompare(b.name));
    return { matches: entries.map((e) => e.name), start, end, types: entries.map((e) => ({ text: e.name, type: e.kind, start, end })) };
  }

  inspect(code: string, cursor: number, detail: number): string | null {
    let at = cursor;
    // A cursor just after a name (or after "name(") inspects that name.
    while (at > 0 && !/[\w$]/.test(code[at] ?? "") && /[\s(]/.test(code[at - 1] ?? "")) at--;
    if (at > 0 && !/[\w$]/.test(code[at] ?? "")) at--;
    const { checker, node } = this.at(code, at);
    if (!ts.isIdentifier(node)) return null;
    let symbol = checker.getSymbolAtLocation(node);
    if (!symbol) return null;
    if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
    const type = checker.getTypeOfSymbolAtLocation(symbol, node);
    const flags = ts.TypeFormatFlags.NoTruncation;
    let sig: string;
    const calls = type.getCallSignatures();
    if (symbol.flags & ts.SymbolFlags.Class) sig = `class ${symbol.name}`;
    else if (calls.length && symbol.flags & (ts.SymbolFlags.Function | ts.SymbolFlags.Method))
      sig = calls.map((s) => `${symbolKind(symbol!)} ${qualified(checker, symbol!)}${checker.signatureToString(s, undefined, flags)}`).join("\n");
    else if (symbol.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias)) sig = `type ${symbol.name} = ${checker.typeToString(checker.getDeclaredTypeOfSymbol(symbol), undefined, flags)}`;
    else sig = `${symbolKind(symbol)} ${qualified(checker, symbol)}: ${checker.typeToString(type, undefined, flags)}`;
    const doc = ts.displayPartsToString(symbol.getDocumentationComment(checker));
    const tags = symbol.getJsDocTags(checker).map((t) => `@${t.name} ${ts.displayPartsToString(t.text)}`.trim());
    return [sig, doc, detail > 0 ? tags.join("\n") : ""].filter(Boolean).join("\n\n");
  }

  /** Jupyter's is_complete: complete, incomplete (with an indent) or invalid. */
  isComplete(code: string): { status: "complete" | "incomplete" | "invalid"; indent?: string } {
    return isComplete(code);
  }
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

const KEYWORDS = ["await", "async", "break", "case", "catch", "class", "const", "continue", "default", "delete", "do", "else", "enum", "export", "false", "finally", "for", "function", "if", "import", "in", "instanceof", "interface", "let", "new", "null", "return", "switch", "this", "throw", "true", "try", "type", "typeof", "undefined", "var", "void", "while", "yield"];

function symbolKind(s: ts.Symbol): string {
  const f = s.flags;
  if (f & ts.SymbolFlags.Method) return "method";
  if (f & ts.SymbolFlags.Function) return "function";
  if (f & ts.SymbolFlags.Class) return "class";
  if (f & ts.SymbolFlags.Interface) return "interface";
  if (f & ts.SymbolFlags.TypeAlias) return "type";
  if (f & ts.SymbolFlags.Enum) return "enum";
  if (f & (ts.SymbolFlags.Module | ts.SymbolFlags.Alias)) return "module";
  if (f & (ts.SymbolFlags.Property | ts.SymbolFlags.GetAccessor)) return "property";
  if (f & ts.SymbolFlags.Variable) return "variable";
  return f === 0 ? "keyword" : "symbol";
}

function qualified(checker: ts.TypeChecker, s: ts.Symbol): string {
  const parent = (s as unknown as { parent?: ts.Symbol }).parent;
  return parent && s.flags & (ts.SymbolFlags.Method | ts.SymbolFlags.Property) ? `${parent.name}.${s.name}` : s.name;
}

/** The innermost token at a position. */
function tokenAt(sf: ts.SourceFile, pos: number): ts.Node {
  let found: ts.Node = sf;
  const visit = (n: ts.Node): void => {
    if (pos >= n.getStart(sf) && pos <= n.end) {
      found = n;
      ts.forEachChild(n, visit);
    }
  };
  ts.forEachChild(sf, visit);
  return found;
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

export function isComplete(code: string): { status: "complete" | "incomplete" | "invalid"; indent?: string } {
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
