/**
 * Load one large CommonJS package (TypeScript's 9 MB typescript.js) with a V8
 * code cache, as Node 22's module.enableCompileCache does for every module:
 * the bytecode of the functions the kernel ran last time is read from disk
 * instead of being parsed and compiled again at every kernel start.
 *
 * The cache is written once, after the caller has exercised the package (so it
 * holds the lazily compiled functions too), by write-then-rename, to a file
 * named by the package's version, the file's size and mtime, and Node's
 * version. V8 checks it against its own flags and the source's length; a cache
 * it rejects is rewritten.
 */
import * as fs from "fs";
import Module = require("module");
import * as path from "path";
import * as vm from "vm";
import { writeFileAtomic } from "../../lib/util";

export interface CachedModule {
  /** Whether V8 took the cache from disk. */
  readonly hit: boolean;
  /** Write the cache now, if there was none or V8 refused it; errors are returned, never thrown (the cache is an optimisation). */
  save(): string | null;
}

/**
 * Evaluate `id` (resolved from `from`) through vm.Script with the code cache in
 * `cacheDir`, and put it in require.cache, so that later `require(id)` calls
 * (and `import … from id`) get this instance.
 */
export function requireWithCodeCache(id: string, from: string, cacheDir: string): CachedModule {
  const file = require.resolve(id, { paths: [from] });
  if (require.cache[file]) return { hit: false, save: () => null };
  const pkg = packageDir(file);
  const version = (JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")) as { version: string }).version;
  // V8 checks a cache against the source's length only: the file's size and mtime go into the name.
  const stat = fs.statSync(file);
  const prefix = `${path.basename(pkg)}-${version}-`;
  const cacheFile = path.join(cacheDir, `${prefix}${stat.size}-${Math.round(stat.mtimeMs)}-node${process.versions.node}-${process.arch}.v8cache`);
  let cachedData: Buffer | undefined;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(fs.readFileSync(file, "utf8")), { filename: file, cachedData });
  const hit = cachedData !== undefined && !script.cachedDataRejected;
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeRequire, module: Module, filename: string, dirname: string) => void;
  wrapper.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  mod.loaded = true;
  require.cache[file] = mod;
  return {
    hit,
    save: () => {
      if (hit) return null;
      try {
        fs.mkdirSync(cacheDir, { recursive: true });
        writeFileAtomic(cacheFile, script.createCachedData());
        // Caches of the package's earlier versions or builds are of no further use.
        for (const f of fs.readdirSync(cacheDir)) if (f.startsWith(prefix) && f.endsWith(".v8cache") && path.join(cacheDir, f) !== cacheFile) fs.rmSync(path.join(cacheDir, f), { force: true });
        return null;
      } catch (err) {
        return `could not write the code cache ${cacheFile}: ${(err as Error).message}`;
      }
    },
  };
}

/** The directory of the package that holds `file` (the nearest package.json above it). */
function packageDir(file: string): string {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${file}`);
  }
}
