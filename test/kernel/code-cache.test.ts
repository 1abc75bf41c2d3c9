import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";

// A package of its own, loaded in a new process each time (V8 keeps compiled code per process, which would hide the disk cache).
const root = fs.mkdtempSync(path.join(os.tmpdir(), "code-cache-"));
const pkg = path.join(root, "node_modules", "big");
fs.mkdirSync(pkg, { recursive: true });
fs.writeFileSync(path.join(pkg, "package.json"), JSON.stringify({ name: "big", version: "1.2.3", main: "index.js" }));
const source = (k: number) => `const path = require('path');\nexports.twice = (x) => ${k} * x;\nexports.base = path.basename(__filename);\nexports.self = module.id;\n`;
fs.writeFileSync(path.join(pkg, "index.js"), source(2));
/** The one cache file in dir. */
function cacheFile(dir: string): string {
  const files = fs.readdirSync(dir);
  assert.is(files.length, 1, files.join());
  assert.match(files[0], new RegExp(`^big-1\\.2\\.3-\\d+-\\d+-node${process.versions.node}-${process.arch}\\.v8cache$`));
  return path.join(dir, files[0]);
}

/** In a new process: load the package through the cache, call it, save; what it saw. */
function load(cacheDir: string): { hit: boolean; twice: number; base: string; self: string; same: boolean; saved: string | null } {
  const script = `
    const { requireWithCodeCache } = require(${JSON.stringify(path.join(__dirname, "..", "..", "kernel", "language", "code-cache.ts"))});
    const r = requireWithCodeCache("big", ${JSON.stringify(root)}, ${JSON.stringify(cacheDir)});
    const m = require(${JSON.stringify(path.join(pkg, "index.js"))});
    const again = require("module").createRequire(${JSON.stringify(root + "/")})("big");
    process.stdout.write(JSON.stringify({ hit: r.hit, twice: m.twice(21), base: m.base, self: m.self, same: m === again, saved: r.save() }));`;
  return JSON.parse(execFileSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { encoding: "utf8", cwd: path.join(__dirname, "..", "..") }));
}

test("the first start evaluates the module and writes the cache; the next takes it; require() gets that instance", () => {
  const dir = path.join(root, "cache");
  const first = load(dir);
  assert.equal(first, { hit: false, twice: 42, base: "index.js", self: path.join(pkg, "index.js"), same: true, saved: null });
  assert.ok(fs.statSync(cacheFile(dir)).size > 0);
  const before = fs.statSync(cacheFile(dir)).mtimeMs;
  const second = load(dir);
  assert.is(second.hit, true);
  assert.is(second.twice, 42);
  // A hit writes nothing.
  assert.is(fs.statSync(cacheFile(dir)).mtimeMs, before);
});

test("a cache V8 refuses (garbage, or the package's source changed) is not used, and is rewritten", () => {
  const dir = path.join(root, "cache");
  fs.writeFileSync(cacheFile(dir), Buffer.from("not a code cache"));
  assert.is(load(dir).hit, false);
  assert.is(load(dir).hit, true);
  // The same length (V8's own check would pass it), another mtime.
  fs.writeFileSync(path.join(pkg, "index.js"), source(3));
  fs.utimesSync(path.join(pkg, "index.js"), new Date(), new Date(Date.now() + 5000));
  const changed = load(dir);
  assert.is(changed.hit, false);
  assert.is(changed.twice, 63);
  assert.is(load(dir).hit, true);
  // The stale cache was removed when the new one was written.
  cacheFile(dir);
});

test("an unwritable cache directory is reported as one sentence, and the module still loads", () => {
  const blocked = path.join(root, "blocked");
  fs.writeFileSync(blocked, "a file where the directory should be");
  const r = load(path.join(blocked, "cache"));
  assert.is(r.twice, 63);
  assert.match(r.saved!, /^could not write the code cache .*: /);
});

test.run();
