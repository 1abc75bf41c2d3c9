/**
 * Values to Jupyter MIME bundles: what an execute_result or display(value)
 * shows. Objects choose their own bundle through
 * [Symbol.for("Jupyter.display")]() or toMimeBundle(); tfjs tensors get their
 * shape, dtype and a value summary; everything else is util.inspect'ed.
 */
import * as util from "util";

export type Bundle = Record<string, unknown>;

const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");

interface TensorLike {
  shape: number[];
  dtype: string;
  size: number;
  isDisposed?: boolean;
  dataSync(): ArrayLike<number> | string[];
  data(): Promise<ArrayLike<number> | string[]>;
  toString(verbose?: boolean): string;
}

export function isTensor(v: unknown): v is TensorLike {
  const t = v as TensorLike;
  return !!t && typeof t === "object" && Array.isArray(t.shape) && typeof t.dtype === "string" && typeof t.dataSync === "function";
}

function num(x: number): string {
  return Number.isInteger(x) ? String(x) : Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(4) : x.toFixed(4);
}

export function tensorSummary(t: TensorLike): string {
  const head = `Tensor ${t.dtype} [${t.shape.join(", ")}]`;
  if (t.isDisposed) return `${head} (disposed)`;
  if (t.dtype === "string" || t.size === 0) return `${head}\n${t.toString()}`;
  let d: ArrayLike<number>;
  try {
    d = t.dataSync() as ArrayLike<number>;
  } catch {
    // webgpu in Node cannot read synchronously; a cell's last value is read before it gets here
    return `${head} (on the GPU: \`await t.data()\` reads it)`;
  }
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let nan = 0;
  for (let i = 0; i < d.length; i++) {
    const x = d[i];
    if (Number.isNaN(x)) {
      nan++;
      continue;
    }
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
  }
  const stats = `min ${num(min)}  mean ${num(sum / Math.max(1, d.length - nan))}  max ${num(max)}${nan ? `  NaN ${nan}` : ""}`;
  const body = t.toString().replace(/^Tensor\n?/, "");
  return `${head}  ${stats}\n${body}`;
}

export function inspect(v: unknown): string {
  return util.inspect(v, { depth: 4, maxArrayLength: 100, maxStringLength: 10_000, breakLength: 100 });
}

/** The MIME bundle for a value; null for undefined (no output). */
export function toBundle(value: unknown): Bundle | null {
  if (value === undefined) return null;
  if (value !== null && (typeof value === "object" || typeof value === "function")) {
    const own = (value as Record<symbol, unknown>)[JUPYTER_DISPLAY];
    if (typeof own === "function") return checkBundle(own.call(value));
    const mb = (value as { toMimeBundle?: unknown }).toMimeBundle;
    if (typeof mb === "function") return checkBundle(mb.call(value));
    if (isTensor(value)) return { "text/plain": tensorSummary(value) };
  }
  return { "text/plain": inspect(value) };
}

function checkBundle(b: unknown): Bundle {
  if (!b || typeof b !== "object" || Array.isArray(b)) throw new TypeError("A display method must return a MIME bundle: an object mapping MIME types to data.");
  const bundle = { ...(b as Bundle) };
  if (!("text/plain" in bundle)) bundle["text/plain"] = "<rich output>";
  return bundle;
}
