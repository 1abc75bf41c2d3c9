/**
 * Files written so that nothing on disk is ever half-written, and the
 * small file helpers the library and the kernel share.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";

/** Write a file atomically: a temporary file in the same folder, then rename. */
export function writeFileAtomic(file: string, data: Buffer | Uint8Array | string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** A name beside `final` for building a folder before it is moved into place with replaceDirAtomic. */
export function tempDirFor(final: string): string {
  return path.join(path.dirname(final), `.${path.basename(final)}.tmp-${process.pid}`);
}

/**
 * Move a finished folder into place. An older copy is replaced only after
 * the new one is complete, and is put back if the move fails.
 */
export function replaceDirAtomic(tmp: string, final: string): void {
  const old = `${final}.old-${process.pid}`;
  if (fs.existsSync(final)) fs.renameSync(final, old);
  try {
    fs.renameSync(tmp, final);
  } catch (err) {
    if (fs.existsSync(old)) fs.renameSync(old, final);
    throw err;
  }
  fs.rmSync(old, { recursive: true, force: true });
}

/** The hex digest of a file, read in 1 MiB pieces. */
export function hashFile(file: string, algorithm: "sha256" | "md5" = "sha256"): string {
  const h = crypto.createHash(algorithm);
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

/** The folder holding this package's package.json, from source or from the build (dist/). */
export const PACKAGE_ROOT: string = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, "package.json")) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();
