/**
 * The interrupt seam: long loops in lib (training, encoding) stop cleanly when
 * the host interrupts them. A plain script passes an AbortSignal explicitly;
 * the kernel installs an ambient one that aborts when the running cell is
 * interrupted, so `await trainer.fit(...)` stops after the current step.
 */
let ambient: () => AbortSignal | undefined = () => undefined;

/** The kernel calls this once. Returns the previous source. */
export function setAmbientSignal(source: () => AbortSignal | undefined): () => AbortSignal | undefined {
  const previous = ambient;
  ambient = source;
  return previous;
}

/** The signal a loop should watch: the one given, else the host's, else none. */
export function currentSignal(explicit?: AbortSignal): AbortSignal | undefined {
  return explicit ?? ambient();
}
