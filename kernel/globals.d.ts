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
/** Aborts when the running cell is interrupted; pass it to long loops, e.g. trainer.fit({ signal: interruptSignal }). */
declare const interruptSignal: AbortSignal;
