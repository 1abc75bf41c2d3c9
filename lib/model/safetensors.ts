/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header
 * length N, N bytes of JSON header {name: {dtype, shape, data_offsets}},
 * optional "__metadata__" of strings, then the raw little-endian data.
 * Small enough to read and write by hand; files are written atomically.
 */
import * as fs from "fs";
import { writeAllSync, writeFileAtomicBy } from "../util/files";

export interface NamedArray {
  readonly shape: readonly number[];
  /** float32 data; F16/BF16 files are widened on read. Integer tensors come back as Int32Array or BigInt64Array. */
  readonly data: Float32Array | Int32Array | BigInt64Array;
  readonly dtype: "F32" | "I32" | "I64";
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8, I16: 2, I8: 1, U8: 1, BOOL: 1 };

function fail(file: string, what: string): never {
  throw new Error(`${file} is not a valid safetensors file: ${what}.`);
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

let halfValues: Float32Array | null = null;

/** Every half's float32 value, by its bits (256 KB, made on first use): a lookup per weight where loading a base model's halves computed each. */
function halfTable(): Float32Array {
  if (!halfValues) {
    halfValues = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfValues[h] = halfToFloat(h);
  }
  return halfValues;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half bits, rounding to nearest even (as torch's .half()). */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf, NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mant |= 0x800000; // subnormal: shift the implicit bit in
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0)); // a carry rolls into the exponent, as it should
}

/**
 * Little-endian element bytes as a NamedArray's data: floats (F32, F16,
 * BF16, F64) as float32, I64 as BigInt64Array, smaller integers and bools
 * as Int32Array. `what` names the tensor in the error message.
 */
export function decodeArray(bytes: Buffer, dtype: string, count: number, what: string): Pick<NamedArray, "data" | "dtype"> {
  const copy = <T extends Float32Array | Int32Array | BigInt64Array | Float64Array | Uint16Array>(out: T): T => {
    new Uint8Array(out.buffer).set(bytes.subarray(0, out.byteLength)); // copy: the file's data need not be aligned (little-endian host)
    return out;
  };
  switch (dtype) {
    case "F32":
      return { data: copy(new Float32Array(count)), dtype: "F32" };
    case "F64":
      return { data: Float32Array.from(copy(new Float64Array(count))), dtype: "F32" };
    case "F16":
    case "BF16": {
      const halves = copy(new Uint16Array(count));
      const data = new Float32Array(count);
      if (dtype === "F16") {
        const table = halfTable();
        for (let i = 0; i < count; i++) data[i] = table[halves[i]];
      } else {
        // bfloat16 is a float32's upper half
        const bits = new Uint32Array(data.buffer);
        for (let i = 0; i < count; i++) bits[i] = halves[i] << 16;
      }
      return { data, dtype: "F32" };
    }
    case "I32":
      return { data: copy(new Int32Array(count)), dtype: "I32" };
    case "I64":
      return { data: copy(new BigInt64Array(count)), dtype: "I64" };
    case "I16":
      return { data: Int32Array.from({ length: count }, (_, i) => bytes.readInt16LE(i * 2)), dtype: "I32" };
    case "I8":
      return { data: Int32Array.from({ length: count }, (_, i) => bytes.readInt8(i)), dtype: "I32" };
    case "U8":
    case "BOOL":
      return { data: Int32Array.from(bytes.subarray(0, count)), dtype: "I32" };
    default:
      throw new Error(`${what} has dtype ${dtype}, which this reader does not support (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL).`);
  }
}

/** Parse safetensors bytes. `file` names the source in error messages. */
export function parseSafetensors(buf: Buffer, file = "safetensors data"): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  if (buf.length < 8) fail(file, `it is ${buf.length} bytes, shorter than the 8-byte header length`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) fail(file, `the header claims ${n} bytes but only ${buf.length - 8} follow (truncated?)`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  } catch {
    fail(file, "its JSON header does not parse");
  }
  const base = 8 + n;
  const tensors = new Map<string, NamedArray>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offs } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const width = BYTES[dtype];
    if (!width) fail(file, `tensor "${name}" has dtype ${dtype}, which this reader does not support (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(file, `tensor "${name}" has a bad shape ${JSON.stringify(shape)}`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (!Array.isArray(offs) || offs.length !== 2 || offs[1] - offs[0] !== count * width || base + offs[1] > buf.length) {
      fail(file, `tensor "${name}" has data offsets ${JSON.stringify(offs)} that do not fit its shape [${shape}] of ${dtype} or the file size`);
    }
    const bytes = buf.subarray(base + offs[0], base + offs[1]);
    tensors.set(name, { shape, ...decodeArray(bytes, dtype, count, `${file}: tensor "${name}"`) });
  }
  return { tensors, metadata };
}

export function readSafetensors(file: string): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === "ENOENT" ? `Checkpoint file "${file}" does not exist; pass a folder holding model.safetensors.` : `Checkpoint file "${file}" cannot be read (${code}).`);
  }
  return parseSafetensors(buf, file);
}

/**
 * Serialise tensors (in the given order) with optional string metadata.
 * `floats: "F16"` stores float32 tensors as IEEE half (halving the file).
 */
export function serializeSafetensors(tensors: ReadonlyMap<string, NamedArray>, metadata: Record<string, string> = {}, floats: "F32" | "F16" = "F32"): Buffer {
  const pieces = safetensorsPieces(tensors, metadata, floats);
  const out = Buffer.allocUnsafe(pieces.bytes); // every byte is written below
  let pos = 0;
  pieces.each((bytes) => {
    out.set(bytes, pos);
    pos += bytes.length;
  });
  return out;
}

/**
 * Write tensors as a safetensors file (see serializeSafetensors), atomically.
 * The header, then each tensor's bytes straight from its array: no buffer of
 * the whole file (a trainer's state is its weights and two moments, ~3× the
 * model, written at every checkpoint).
 */
export function writeSafetensors(file: string, tensors: ReadonlyMap<string, NamedArray>, metadata: Record<string, string> = {}, floats: "F32" | "F16" = "F32"): void {
  const pieces = safetensorsPieces(tensors, metadata, floats);
  writeFileAtomicBy(file, (fd) => pieces.each((bytes) => writeAllSync(fd, bytes)));
}

/** A safetensors file as the pieces it is made of, in order: the header's length and JSON, then each tensor's bytes. */
function safetensorsPieces(tensors: ReadonlyMap<string, NamedArray>, metadata: Record<string, string>, floats: "F32" | "F16"): { bytes: number; each(use: (bytes: Uint8Array) => void): void } {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const stored = (t: NamedArray) => (t.dtype === "F32" ? floats : t.dtype);
  let offset = 0;
  for (const [name, t] of tensors) {
    const width = BYTES[stored(t)];
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`Tensor "${name}" has ${t.data.length} values but shape [${t.shape}] needs ${count}.`);
    header[name] = { dtype: stored(t), shape: t.shape, data_offsets: [offset, offset + count * width] };
    offset += count * width;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data starts 8-aligned
  const head = Buffer.from(json, "utf8");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(head.length), 0);
  return {
    bytes: 8 + head.length + offset,
    each(use) {
      use(length);
      use(head);
      for (const t of tensors.values()) {
        if (stored(t) === "F16") {
          const data = t.data as Float32Array;
          const half = new Uint16Array(data.length);
          for (let i = 0; i < data.length; i++) half[i] = floatToHalf(data[i]);
          use(new Uint8Array(half.buffer)); // little-endian hosts, as below
        } else use(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)); // little-endian hosts
      }
    },
  };
}
