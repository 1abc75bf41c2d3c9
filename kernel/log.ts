/** The kernel's own log: stderr, never a cell's output (cells' stdout and stderr are captured). */
import * as fs from "fs";

export function log(line: string): void {
  fs.writeSync(2, `[retromae kernel] ${line}\n`);
}

const DEBUG = !!process.env.RETROMAE_KERNEL_DEBUG;

export function debug(line: string): void {
  if (DEBUG) log(line);
}
