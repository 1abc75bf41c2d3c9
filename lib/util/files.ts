/**
 * Files written so that nothing on disk is ever half-written, and the
 * small file helpers the library and the kernel share.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";

/** Write a file atomically: a temporary file in the same folder, then rename. */
export function writeFileAtomic(file: string, data: Buffer | Uint8Array | string): void {
  writeFileAtomicBy(file, (fd) => fs.writeFileSync(fd, data));
}

/**
 * As writeFileAtomic, the content written by `write` into the open
 * temporary file, in as many pieces as it likes (a checkpoint's tensors
 * straight from their arrays, with no buffer of the whole file).
 */
export function writeFileAtomicBy(file: string, write: (fd: number) => void): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, "w");
    write(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Write all of `bytes` at the file's current position (fs.writeSync may write less than asked). */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(fd, bytes, done, bytes.length - done);
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
