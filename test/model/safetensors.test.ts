import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { floatToHalf, NamedArray, parseSafetensors, readSafetensors, serializeSafetensors, writeSafetensors } from "../../lib/model/safetensors";

function rawFile(header: object, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

test("round trip keeps names, shapes, values, order and metadata; data starts 8-aligned", () => {
  const tensors = new Map<string, NamedArray>([
    ["bert.embeddings.word_embeddings.weight", { dtype: "F32", shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-8, -0]) }],
    ["ids", { dtype: "I32", shape: [3], data: Int32Array.from([101, -100, 102]) }],
    ["bert.embeddings.position_ids", { dtype: "I64", shape: [1, 2], data: BigInt64Array.from([0n, 1n]) }],
    ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const buf = serializeSafetensors(tensors, { format: "pt" });
  const headerLen = Number(buf.readBigUInt64LE(0));
  assert.is((8 + headerLen) % 8, 0);
  const { tensors: back, metadata } = parseSafetensors(buf);
  assert.equal([...back.keys()], [...tensors.keys()]);
  assert.equal(metadata, { format: "pt" });
  for (const [k, t] of tensors) {
    assert.equal(back.get(k)!.shape, t.shape);
    assert.equal(Array.from(back.get(k)!.data as ArrayLike<number | bigint>), Array.from(t.data as ArrayLike<number | bigint>));
  }
});

test("F16 and BF16 are widened to float32", () => {
  const data = Buffer.alloc(8);
  data.writeUInt16LE(0x3c00, 0); // f16 1.0
  data.writeUInt16LE(0xc000, 2); // f16 -2.0
  data.writeUInt16LE(0x3f80, 4); // bf16 1.0
  data.writeUInt16LE(0x4049, 6); // bf16 3.140625
  const buf = rawFile({ h: { dtype: "F16", shape: [2], data_offsets: [0, 4] }, b: { dtype: "BF16", shape: [2], data_offsets: [4, 8] } }, data);
  const { tensors } = parseSafetensors(buf);
  assert.equal(Array.from(tensors.get("h")!.data as Float32Array), [1, -2]);
  assert.equal(Array.from(tensors.get("b")!.data as Float32Array), [1, 3.140625]);
});

test("F16 writing rounds to nearest even, as torch's .half(), and every half survives a round trip", () => {
  const cases: [number, number][] = [[1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [1e5, 0x7c00], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1 / 3, 0x3555], [0.1, 0x2e66], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [-0, 0x8000], [Infinity, 0x7c00]];
  for (const [x, bits] of cases) assert.is(floatToHalf(x), bits, `${x} -> 0x${floatToHalf(x).toString(16)}`);
  assert.is(floatToHalf(NaN) & 0x7c00, 0x7c00);
  // all 63,488 non-NaN halves: widen on read, narrow on write, same bits
  const halves = Array.from({ length: 65536 }, (_, h) => h).filter((h) => (h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0);
  const raw = Buffer.alloc(2 * halves.length);
  halves.forEach((h, i) => raw.writeUInt16LE(h, 2 * i));
  const wide = parseSafetensors(rawFile({ h: { dtype: "F16", shape: [halves.length], data_offsets: [0, raw.length] } }, raw)).tensors;
  const narrow = serializeSafetensors(wide, {}, "F16");
  const back = parseSafetensors(narrow).tensors.get("h")!;
  assert.is(JSON.parse(narrow.subarray(8, 8 + Number(narrow.readBigUInt64LE(0))).toString()).h.dtype, "F16");
  assert.equal(Array.from(back.data as Float32Array), Array.from(wide.get("h")!.data as Float32Array));
  const start = narrow.length - raw.length;
  assert.ok(narrow.subarray(start).equals(raw), "bit for bit");
  // integer tensors are left as they are
  const mixed = parseSafetensors(serializeSafetensors(new Map<string, NamedArray>([["ids", { dtype: "I32", shape: [2], data: Int32Array.from([101, 102]) }]]), {}, "F16")).tensors;
  assert.equal(Array.from(mixed.get("ids")!.data as Int32Array), [101, 102]);
});

test("corrupt, truncated, unknown-dtype and mis-sized files get one clear sentence naming the problem", () => {
  assert.throws(() => parseSafetensors(Buffer.alloc(4), "m.safetensors"), /^m.safetensors is not a valid safetensors file: it is 4 bytes/);
  const good = serializeSafetensors(new Map([["w", { dtype: "F32", shape: [4], data: new Float32Array(4) } as NamedArray]]));
  assert.throws(() => parseSafetensors(good.subarray(0, 20), "m.safetensors"), /the header claims \d+ bytes but only 12 follow \(truncated\?\)/);
  assert.throws(() => parseSafetensors(good.subarray(0, good.length - 4), "m.safetensors"), /tensor "w" has data offsets \[0,16\] that do not fit/);
  const bad = Buffer.from(good);
  bad.write("#", 8);
  assert.throws(() => parseSafetensors(bad, "m.safetensors"), /JSON header does not parse/);
  assert.throws(() => parseSafetensors(rawFile({ w: { dtype: "C64", shape: [1], data_offsets: [0, 8] } }, Buffer.alloc(8)), "m"), /tensor "w" has dtype C64, which this reader does not support/);
  assert.throws(() => parseSafetensors(rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)), "m"), /do not fit its shape \[3\] of F32/);
  assert.throws(() => readSafetensors("/no/such/model.safetensors"), /^Checkpoint file "\/no\/such\/model.safetensors" does not exist/);
});

test("writes are atomic: the file appears whole, and a failed write leaves nothing behind", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "st-"));
  const file = path.join(dir, "model.safetensors");
  const t = new Map<string, NamedArray>([["w", { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) }]]);
  writeSafetensors(file, t);
  assert.equal(fs.readdirSync(dir), ["model.safetensors"]);
  assert.equal(Array.from(readSafetensors(file).tensors.get("w")!.data as Float32Array), [1, 2]);
  const bad = new Map<string, NamedArray>([["w", { dtype: "F32", shape: [3], data: Float32Array.from([1, 2]) }]]);
  assert.throws(() => writeSafetensors(file, bad), /has 2 values but shape \[3\] needs 3/);
  assert.equal(fs.readdirSync(dir), ["model.safetensors"]);
  assert.equal(Array.from(readSafetensors(file).tensors.get("w")!.data as Float32Array), [1, 2], "old file intact");
  // written in pieces (no buffer of the whole file): the bytes serializeSafetensors gives, in F32 and F16
  const mixed = new Map<string, NamedArray>([
    ["a", { dtype: "F32", shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => i / 7 - 1) }],
    ["ids", { dtype: "I32", shape: [3], data: Int32Array.from([101, -100, 102]) }],
    ["pos", { dtype: "I64", shape: [2], data: BigInt64Array.from([0n, 1n]) }],
    ["b", { dtype: "F32", shape: [1], data: Float32Array.of(65504) }],
  ]);
  for (const floats of ["F32", "F16"] as const) {
    writeSafetensors(file, mixed, { format: "pt" }, floats);
    assert.ok(fs.readFileSync(file).equals(serializeSafetensors(mixed, { format: "pt" }, floats)), floats);
  }
});

test.run();
