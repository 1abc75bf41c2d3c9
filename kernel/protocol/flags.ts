/**
 * The interrupt flags the interpreter shares with the transport thread: an
 * Int32Array over a SharedArrayBuffer of `FLAG_SLOTS` slots.
 */
export const Flag = {
  /** 1 while an interrupt is requested; cell code's loop guards read it (`__rmf[0]`). */
  Requested: 0,
  /** The running cell's number (from 1); 0 between cells. */
  Cell: 1,
  /** 1 + the Cell slot when the transport raised SIGINT for a message interrupt; 0 when none is pending. */
  SignalFor: 2,
} as const;

export const FLAG_SLOTS = 3;
