/**
 * The kernel's one seam to the library: cells that import "retromae" get
 * the kernel's own copy of lib (so cells, live charts and the kernel share
 * one display and one interrupt signal), loaded on first import, typed by
 * lib's public API.
 */
import type * as Lib from "../../lib";

export type Library = typeof Lib;
export type { Display, Displayable } from "../../lib";

let library: Library | null = null;

/** Load lib (once) and install the kernel's display, widget host and the running cell's abort signal into it. */
export function loadLibrary(hooks: { display: Lib.Display; signal: () => AbortSignal | undefined; widgets: Lib.WidgetHost }): Library {
  if (library) return library;
  const lib = require("../../lib") as Library;
  lib.setDisplay(hooks.display);
  lib.setWidgetHost(hooks.widgets);
  lib.setAmbientSignal(hooks.signal);
  library = lib;
  return lib;
}

/** Give free C-heap memory back to the OS (lib's releaseFreeMemory), once the library is loaded (before, it keeps none). */
export function releaseFreeMemory(): void {
  library?.releaseFreeMemory();
}

/** Empty the native backend's buffer pool (lib's emptyCache), once the library is loaded. */
export function emptyCache(): void {
  library?.emptyCache();
}

/** Wait for TensorFlow.js to pick its backend, so the next line of a cell can make tensors. */
export async function libraryReady(lib: { ready?: () => Promise<unknown>; tf?: { ready?: () => Promise<unknown> } }): Promise<void> {
  await (lib.ready ?? lib.tf?.ready)?.();
}
