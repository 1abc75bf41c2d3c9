/**
 * PyTorch's `pytorch_model.bin`: torch.save's zip format (torch >= 1.6,
 * what transformers < 4.35 writes by default):
 *
 *   ARCHIVE/data.pkl   the state dict, pickled (protocol 2)
 *   ARCHIVE/data/KEY   each storage's raw little-endian bytes
 *
 * The pickle is read by a restricted unpickler: it builds dicts, lists,
 * tuples and tensors, through OrderedDict, the rebuild-tensor functions and
 * the storage classes only. Any other global is refused with one sentence,
 * and nothing is ever called or executed: "calling" an allowed global here
 * builds a plain description of a tensor, never Python.
 */
import * as fs from "fs";
import { unzipSync } from "fflate";
import { decodeArray, NamedArray } from "./safetensors";

/** Storage classes and the dtype of their elements. */
const STORAGES: Record<string, { dtype: string; bytes: number }> = {
  FloatStorage: { dtype: "F32", bytes: 4 },
  HalfStorage: { dtype: "F16", bytes: 2 },
  BFloat16Storage: { dtype: "BF16", bytes: 2 },
  DoubleStorage: { dtype: "F64", bytes: 8 },
  LongStorage: { dtype: "I64", bytes: 8 },
  IntStorage: { dtype: "I32", bytes: 4 },
  ShortStorage: { dtype: "I16", bytes: 2 },
  CharStorage: { dtype: "I8", bytes: 1 },
  ByteStorage: { dtype: "U8", bytes: 1 },
  BoolStorage: { dtype: "BOOL", bytes: 1 },
};

/** The only globals a state dict needs. */
const ALLOWED = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_tensor",
  "torch._utils._rebuild_parameter",
  ...Object.keys(STORAGES).map((s) => `torch.${s}`),
]);

class Global {
  constructor(readonly name: string) {}
}
class StorageRef {
  constructor(
    readonly key: string,
    readonly storage: { dtype: string; bytes: number },
  ) {}
}
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

export class TorchLoadError extends Error {}

/** The refusal of a global that a state dict never needs. */
function refuse(file: string, name: string): never {
  throw new TorchLoadError(
    `${file}'s pickle names the global ${name}, which a state dict never needs; it was refused and nothing was run. Load only checkpoints you trust, or convert this one to model.safetensors where it came from.`,
  );
}

/**
 * Run the restricted unpickler over `data.pkl`. Returns the unpickled
 * object: the state dict as a Map from names to TensorRefs.
 */
function unpickle(buf: Uint8Array, file: string): unknown {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  const bad = (what: string): never => {
    throw new TorchLoadError(`${file} is not a valid PyTorch checkpoint: its pickle ${what} (at byte ${pos}); the file is corrupt or truncated.`);
  };
  const need = (n: number) => {
    if (pos + n > buf.length) bad("ends early");
  };
  const u8 = () => (need(1), buf[pos++]);
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u64 = () => (need(8), (pos += 8), Number(view.getBigUint64(pos - 8, true)));
  const bytes = (n: number) => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const text = (n: number) => Buffer.from(bytes(n)).toString("utf8");
  const line = () => {
    const end = buf.indexOf(10, pos);
    if (end < 0) bad("has an unterminated GLOBAL");
    const s = Buffer.from(buf.subarray(pos, end)).toString("utf8");
    pos = end + 1;
    return s;
  };
  const pop = () => (stack.length ? stack.pop() : bad("pops an empty stack"));
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) bad("has no MARK");
    return stack.splice(m!);
  };
  const top = () => (stack.length ? stack[stack.length - 1] : bad("reads an empty stack"));
  const global = (module: string, name: string) => {
    const full = `${module}.${name}`;
    if (!ALLOWED.has(full)) refuse(file, full);
    return new Global(full);
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) bad("sets items on something that is not a dict");
    for (let i = 0; i + 1 < items.length; i += 2) (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const call = (fn: unknown, args: unknown): unknown => {
    if (!(fn instanceof Global)) bad("calls something that is not a global");
    const a = args as unknown[];
    if (!Array.isArray(a)) bad("calls a global without an argument tuple");
    switch ((fn as Global).name) {
      case "collections.OrderedDict":
        return new Map(a.length && Array.isArray(a[0]) ? (a[0] as [unknown, unknown][]) : []);
      case "torch._utils._rebuild_tensor":
      case "torch._utils._rebuild_tensor_v2": {
        const [storage, offset, size, stride] = a as [StorageRef, number, number[], number[]];
        if (!(storage instanceof StorageRef) || !Array.isArray(size) || !Array.isArray(stride)) bad("rebuilds a tensor from arguments that are not a storage, sizes and strides");
        return new TensorRef(storage, Number(offset), size.map(Number), stride.map(Number));
      }
      case "torch._utils._rebuild_parameter":
        return a[0];
      default:
        return refuse(file, (fn as Global).name);
    }
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const n = u8();
        const b = bytes(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(Number(v));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x54: // BINSTRING
        stack.push(text(u32()));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(text(u8()));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()));
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) bad("appends to something that is not a list");
        (l as unknown[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) bad("appends to something that is not a list");
        (l as unknown[]).push(...items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: // SETITEMS
        {
          const items = popMark();
          setItems(top(), items);
        }
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) bad("adds items to something that is not a set");
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") bad("names a global with something that is not a string");
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args); no allowed global is built this way
        pop();
        const cls = pop();
        refuse(file, cls instanceof Global ? `${cls.name} (through NEWOBJ)` : "an object built through NEWOBJ");
        break;
      }
      case 0x62: // BUILD: object state (a state dict's _metadata); kept out of the result
        pop();
        top();
        break;
      case 0x51: {
        // BINPERSID: ('storage', storage class, key, location, numel)
        const pid = pop() as unknown[];
        if (!Array.isArray(pid) || pid[0] !== "storage" || !(pid[1] instanceof Global)) bad("has a persistent id that is not a storage");
        const cls = (pid[1] as Global).name.replace(/^torch\./, "");
        stack.push(new StorageRef(String(pid[2]), STORAGES[cls]));
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) bad(`reads memo ${k}, which was never stored`);
        stack.push(memo.get(k));
        break;
      }
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      default:
        bad(`has opcode 0x${op.toString(16)}, which a state dict never uses`);
    }
  }
}

/** The elements of a (possibly strided, possibly offset) view of a storage, as little-endian bytes. */
function viewBytes(storage: Uint8Array, t: TensorRef): Buffer {
  const width = t.storage.storage.bytes;
  const count = t.size.reduce((a, b) => a * b, 1);
  let contiguous = true;
  for (let d = t.size.length - 1, expect = 1; d >= 0; d--) {
    if (t.size[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.size[d];
  }
  if (contiguous) return Buffer.from(storage.subarray(t.offset * width, (t.offset + count) * width));
  const out = Buffer.alloc(count * width);
  const index = new Array(t.size.length).fill(0);
  for (let i = 0; i < count; i++) {
    let src = t.offset;
    for (let d = 0; d < index.length; d++) src += index[d] * t.stride[d];
    out.set(storage.subarray(src * width, (src + 1) * width), i * width);
    for (let d = index.length - 1; d >= 0 && ++index[d] === t.size[d]; d--) index[d] = 0;
  }
  return out;
}

/** Is this buffer a torch.save zip archive? (the legacy format starts with a pickle instead) */
function isZip(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && buf[2] === 0x03 && buf[3] === 0x04;
}

/** Read a pytorch_model.bin into named arrays (float weights widened to float32). */
export function readTorchBin(file: string): Map<string, NamedArray> {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    throw new TorchLoadError(`Cannot read ${file}; check the path.`);
  }
  if (!isZip(buf)) {
    throw new TorchLoadError(
      buf[0] === 0x80
        ? `${file} uses torch's legacy (before 1.6) format, which this reader does not read; re-save it with torch.save in torch 1.6 or later, or convert it to model.safetensors.`
        : `${file} is not a PyTorch checkpoint (not a torch.save zip archive); the download may be incomplete.`,
    );
  }
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(buf);
  } catch (err) {
    throw new TorchLoadError(`${file} is not a valid PyTorch checkpoint: its zip does not unpack (${(err as Error).message}); the download may be incomplete.`);
  }
  const pkl = Object.keys(entries).find((n) => /(^|\/)data\.pkl$/.test(n));
  if (!pkl) throw new TorchLoadError(`${file} is a zip but holds no data.pkl; it is not a torch.save checkpoint.`);
  const prefix = pkl.slice(0, -"data.pkl".length);
  const root = unpickle(entries[pkl], file);
  if (!(root instanceof Map)) throw new TorchLoadError(`${file} holds a pickled ${Array.isArray(root) ? "list" : typeof root}, not a state dict; save model.state_dict().`);
  const out = new Map<string, NamedArray>();
  for (const [name, t] of root) {
    if (!(t instanceof TensorRef)) continue; // e.g. a saved step count
    if (!t.storage.storage) throw new TorchLoadError(`${file}: "${String(name)}" has a storage type this reader does not know.`);
    const data = entries[`${prefix}data/${t.storage.key}`];
    if (!data) throw new TorchLoadError(`${file} is not a valid PyTorch checkpoint: the storage of "${String(name)}" (data/${t.storage.key}) is missing.`);
    const count = t.size.reduce((a, b) => a * b, 1);
    const last = count === 0 ? 0 : t.offset + t.size.reduce((acc, s, d) => acc + (s - 1) * t.stride[d], 0) + 1;
    if (last * t.storage.storage.bytes > data.length) throw new TorchLoadError(`${file} is not a valid PyTorch checkpoint: "${String(name)}" reaches past the end of its storage; the file is corrupt.`);
    out.set(String(name), { shape: t.size, ...decodeArray(viewBytes(data, t), t.storage.storage.dtype, count, `${file}: "${String(name)}"`) });
  }
  return out;
}
