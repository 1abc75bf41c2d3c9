import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { escapeHtml, hashFile, PACKAGE_ROOT, replaceDirAtomic, tempDirFor, writeFileAtomic } from "../../lib/util";
import { writeAllSync, writeFileAtomicBy } from "../../lib/util/files";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "util-"));

test("writeFileAtomic replaces a file and leaves no temporary behind, also when the write fails", () => {
  const f = path.join(dir, "a.json");
  writeFileAtomic(f, "one");
  writeFileAtomic(f, Buffer.from("two"));
  assert.is(fs.readFileSync(f, "utf8"), "two");
  assert.equal(fs.readdirSync(dir), ["a.json"]);
  assert.throws(() => writeFileAtomic(path.join(dir, "missing", "b.json"), "x"), /ENOENT/);
  assert.equal(fs.readdirSync(dir), ["a.json"]);
});

test("writeFileAtomicBy writes in pieces into the temporary file; a writer that throws leaves the old file and no temporary", () => {
  const f = path.join(dir, "pieces.bin");
  writeFileAtomicBy(f, (fd) => ["ab", "cd", "e"].forEach((p) => writeAllSync(fd, Buffer.from(p))));
  assert.is(fs.readFileSync(f, "utf8"), "abcde");
  assert.throws(() => writeFileAtomicBy(f, (fd) => (writeAllSync(fd, Buffer.from("half")), (() => { throw new Error("disk full"); })())), /disk full/);
  assert.is(fs.readFileSync(f, "utf8"), "abcde", "the old file stays whole");
  assert.equal(fs.readdirSync(dir).sort(), ["a.json", "pieces.bin"]);
  fs.rmSync(f);
});

test("replaceDirAtomic swaps a finished folder in and keeps the old one when the move fails", () => {
  const final = path.join(dir, "data");
  fs.mkdirSync(final);
  fs.writeFileSync(path.join(final, "old.txt"), "old");
  const tmp = tempDirFor(final);
  fs.mkdirSync(tmp);
  fs.writeFileSync(path.join(tmp, "new.txt"), "new");
  replaceDirAtomic(tmp, final);
  assert.equal(fs.readdirSync(final), ["new.txt"]);
  assert.not.ok(fs.existsSync(tmp));
  assert.throws(() => replaceDirAtomic(path.join(dir, "no-such-folder"), final), /ENOENT/);
  assert.equal(fs.readdirSync(final), ["new.txt"]);
  assert.equal(fs.readdirSync(dir).sort(), ["a.json", "data"]);
});

test("hashFile gives sha256 and md5 hex digests", () => {
  const f = path.join(dir, "abc.txt");
  fs.writeFileSync(f, "abc");
  assert.is(hashFile(f), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.is(hashFile(f, "md5"), "900150983cd24fb0d6963f7d28e17f72");
  fs.rmSync(f);
});

test("PACKAGE_ROOT is the folder with this package's package.json", () => {
  assert.is(JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")).name, "retromae");
});

test("escapeHtml escapes the five characters HTML treats specially", () => {
  assert.is(escapeHtml(`<a href="x">Tom & Jerry's</a>`), "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
  assert.is(escapeHtml("plain"), "plain");
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
