/**
 * Imports in cells: CommonJS through require, ESM packages through
 * import(), relative .ts files through ts-node, and "retromae" as the
 * kernel's own copy of the library (bridge.ts). Resolved from the
 * notebook's folder, then from the kernel's own packages.
 */
import * as fs from "fs";
import { createRequire } from "module";
import * as path from "path";
import { pathToFileURL } from "url";
import { libraryReady } from "./bridge";

// import() that TypeScript's CommonJS output leaves alone.
const dynamicImport = new Function("u", "return import(u)") as (u: string) => Promise<unknown>;

let tsRegistered = false;
function registerTs(): void {
  if (tsRegistered || require.extensions[".ts"]) return;
  tsRegistered = true;
  require("ts-node").register({ transpileOnly: true, compilerOptions: { module: "commonjs", target: "es2022", esModuleInterop: true } });
}

export class CellModules {
  /** require() for cells, resolving from the notebook's folder. */
  readonly require: NodeRequire;

  constructor(
    private readonly cwd: string,
    private readonly library: () => unknown,
  ) {
    this.require = createRequire(path.join(cwd, "__cell__.js"));
  }

  requireModule(spec: string): unknown {
    if (spec === "retromae") return this.library();
    if (/\.(c|m)?tsx?$/.test(spec) || (spec.startsWith(".") && !path.extname(spec))) registerTs();
    try {
      return this.require(spec);
    } catch (err) {
      // Packages the kernel itself has (tfjs, plotly.js-dist, ...) work from any notebook directory.
      const bare = !spec.startsWith(".") && !path.isAbsolute(spec);
      if (bare && (err as { code?: string }).code === "MODULE_NOT_FOUND") return require(spec);
      throw err;
    }
  }

  /** `import` in a cell. Importing retromae or tfjs waits for tf.ready(). */
  async load(spec: string): Promise<unknown> {
    const m = await this.loadModule(spec);
    if (spec === "retromae" || spec === "@tensorflow/tfjs" || spec === "@tensorflow/tfjs-core") await libraryReady(m as object);
    return m;
  }

  /**
   * `import(spec)` in a cell: the module a static import of spec in the cell
   * gives, as a module namespace, as Node's import() gives one: an ES module's
   * namespace as it is; a CommonJS module's exports as named exports (live),
   * and the exports object itself as `default`.
   */
  async importNamespace(spec: unknown): Promise<unknown> {
    const m = await this.load(String(spec));
    if (m && (m as Record<symbol, unknown>)[Symbol.toStringTag] === "Module") return m;
    const ns: Record<string | symbol, unknown> = Object.create(null);
    if (m && (typeof m === "object" || typeof m === "function")) {
      for (const key of Object.keys(m)) if (key !== "default") Object.defineProperty(ns, key, { enumerable: true, get: () => (m as Record<string, unknown>)[key] });
    }
    Object.defineProperty(ns, "default", { enumerable: true, value: m });
    Object.defineProperty(ns, Symbol.toStringTag, { value: "Module" });
    return Object.freeze(ns);
  }

  private async loadModule(spec: string): Promise<unknown> {
    try {
      return this.requireModule(spec);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "ERR_REQUIRE_ESM" && code !== "ERR_PACKAGE_PATH_NOT_EXPORTED" && code !== "ERR_REQUIRE_ASYNC_MODULE") {
        if (code === "MODULE_NOT_FOUND" && (err as Error).message.includes(`'${spec}'`))
          throw new Error(`Cannot find module "${spec}" from ${this.cwd}; install it with npm (npm install ${spec}) or fix the path.`);
        throw err;
      }
    }
    const url = spec.startsWith(".") || path.isAbsolute(spec) ? pathToFileURL(path.resolve(this.cwd, spec)).href : resolveEsm(spec, this.cwd);
    return dynamicImport(url);
  }
}

/** Find an ESM package's entry from a directory (exports "import" condition, then module/main). */
export function resolveEsm(spec: string, from: string): string {
  const parts = spec.startsWith("@") ? spec.split("/").slice(0, 2) : spec.split("/").slice(0, 1);
  const name = parts.join("/");
  const sub = spec.slice(name.length);
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkgDir = path.join(dir, "node_modules", name);
    const pkgFile = path.join(pkgDir, "package.json");
    if (fs.existsSync(pkgFile)) {
      const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf8"));
      const key = `.${sub}`;
      const pick = (e: unknown): string | undefined => {
        if (typeof e === "string") return e;
        if (e && typeof e === "object") {
          const o = e as Record<string, unknown>;
          if (key in o || "." in o) return pick(o[key] ?? (key === "." ? o["."] : undefined));
          return pick(o.import ?? o.node ?? o.default);
        }
        return undefined;
      };
      const target = pick(pkg.exports) ?? (sub ? sub.slice(1) : (pkg.module ?? pkg.main ?? "index.js"));
      return pathToFileURL(path.join(pkgDir, target)).href;
    }
    if (path.dirname(dir) === dir) throw new Error(`Cannot find module "${spec}" from ${from}; install it with npm (npm install ${name}).`);
  }
}
