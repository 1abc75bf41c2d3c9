/**
 * What the kernel puts on globalThis for cells (runtime.ts, display.ts). The
 * kernel's checker sees these declarations, and so does tsc when it checks
 * notebooks/src.
 */
interface DisplayHandle {
  /** The display_id of this output. */
  readonly id: string;
  /** Replace what this output shows (update_display_data). */
  update(value: unknown): void;
}
interface DisplayFunction {
  /** Show a value as rich output: objects with [Symbol.for("Jupyter.display")]() or toMimeBundle() give their own bundle. */
  (value: unknown, options?: { id?: string }): DisplayHandle;
  html(html: string): DisplayHandle;
  markdown(markdown: string): DisplayHandle;
  json(value: unknown): DisplayHandle;
  /** PNG bytes or base64 text. */
  png(data: Uint8Array | string, options?: { width?: number; height?: number }): DisplayHandle;
  svg(svg: string): DisplayHandle;
  /** A Plotly figure ({ data, layout } or a PlotlyFigure), with an offline HTML fallback. */
  plotly(figure: { data: unknown[]; layout?: unknown } | { toJSON(): unknown }): DisplayHandle;
  /** A raw MIME bundle. */
  bundle(bundle: Record<string, unknown>): DisplayHandle;
}
/** Rich output in the notebook. */
declare const display: DisplayFunction;
/** Clear this cell's output (wait: only when new output arrives). */
declare function clearOutput(wait?: boolean): void;
/** Ask the user for a line of text through the front end (stdin channel). */
declare function input(prompt?: string, options?: { password?: boolean }): Promise<string>;
/** Ask for a line of text, as a browser's prompt(): the default when the answer is empty, null when the front end refuses stdin. */
declare function prompt(message?: string, defaultValue?: string): Promise<string | null>;
/** Ask a yes/no question, as a browser's confirm(): true for "y" or "yes"; false when the front end refuses stdin. */
declare function confirm(message?: string): Promise<boolean>;
/** Show a message and wait for Enter, as a browser's alert(); without stdin it is printed. */
declare function alert(message?: string): Promise<void>;
/** The kernel's raw messaging, as Deno.jupyter. */
declare const jupyter: {
  /** Send any iopub message with the running cell as its parent, e.g. jupyter.broadcast("display_data", { data, metadata: {}, transient: {} }). */
  broadcast(msgType: string, content: Record<string, unknown>, options?: { metadata?: Record<string, unknown>; buffers?: (Uint8Array | ArrayBuffer | ArrayBufferView)[] }): void;
};
/** A message on a comm: its data, metadata and binary buffers. */
interface CommMessage {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  buffers: Uint8Array[];
}
type CommBuffers = (Uint8Array | ArrayBuffer | ArrayBufferView)[];
/** One end of a comm; it outlives the cell that made it. */
interface Comm {
  readonly commId: string;
  readonly targetName: string;
  readonly isClosed: boolean;
  /** Send a comm_msg to the front end. */
  send(data?: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: CommBuffers): void;
  /** Close it (comm_close); onClose handlers run. */
  close(data?: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: CommBuffers): void;
  /** Called for each comm_msg from the front end. */
  onMsg(handler: (msg: CommMessage) => void | Promise<void>): Comm;
  /** Called when either side closes it. */
  onClose(handler: (msg: CommMessage) => void | Promise<void>): Comm;
}
/** Comms with the front end (Jupyter's custom messages), in both directions. */
declare const comm: {
  /** Accept comm_open from the front end for this target. */
  register(target: string, handler: (comm: Comm, openMsg: CommMessage) => void | Promise<void>): void;
  unregister(target: string): void;
  /** Open a comm to a front-end target. */
  open(target: string, data?: Record<string, unknown>, metadata?: Record<string, unknown>, buffers?: CommBuffers): Comm;
};
/** Aborts when the running cell is interrupted; pass it to long loops, e.g. trainer.fit({ signal: interruptSignal }). */
declare const interruptSignal: AbortSignal;
