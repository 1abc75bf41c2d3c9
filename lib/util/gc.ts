/**
 * A full garbage collection on demand, for the moments a process knows it is
 * idle (V8 otherwise grows the heap between its own collections).
 */
import * as v8 from "v8";
import * as vm from "vm";

let gc: (() => void) | null = null;

/**
 * Collect garbage now, in this thread's isolate. gc() is reachable at run time
 * only so, from a new context (what jest's leak detector does); the flag makes
 * `gc` visible in contexts made after it, never in this one's globals.
 */
export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("gc") as () => void;
  }
  gc();
}
