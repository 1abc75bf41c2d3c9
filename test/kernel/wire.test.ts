import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { decode, DELIMITER, encode, makeHeader, readConnectionFile, Signer, WireError } from "../../kernel/protocol/wire";

const signer = new Signer("secret");

function frames(extra: Record<string, unknown> = {}) {
  const header = makeHeader("execute_request", "s1");
  return encode({ identities: [Buffer.from("client-1")], header, parent_header: {}, content: { code: "1", ...extra } }, signer);
}

test("encode then decode round-trips, identities kept", () => {
  const msg = decode(frames(), signer);
  assert.equal(msg.identities.map((b) => b.toString()), ["client-1"]);
  assert.is(msg.header.msg_type, "execute_request");
  assert.is(msg.content.code, "1");
  assert.is(msg.header.version, "5.5");
});

test("the signature is HMAC-SHA256 over header, parent, metadata and content only", () => {
  const f = frames();
  const i = f.findIndex((b) => b.toString() === DELIMITER);
  const expected = require("crypto").createHmac("sha256", "secret").update(f[i + 2]).update(f[i + 3]).update(f[i + 4]).update(f[i + 5]).digest("hex");
  assert.is(f[i + 1].toString(), expected);
  // Buffers after content are not signed: appending one still verifies.
  assert.ok(decode([...f, Buffer.from("buffer")], signer).buffers.length === 1);
});

test("a bad signature, a changed frame or missing frames are refused", () => {
  const f = frames();
  const i = f.findIndex((b) => b.toString() === DELIMITER);
  const bad = [...f];
  bad[i + 1] = Buffer.from("0".repeat(64));
  assert.throws(() => decode(bad, signer), (e: Error) => e instanceof WireError && /bad signature/.test(e.message));
  const changed = [...f];
  changed[i + 5] = Buffer.from(JSON.stringify({ code: "2" }));
  assert.throws(() => decode(changed, signer), /bad signature/);
  assert.throws(() => decode(f.slice(0, i + 3), signer), /expected 5 frames/);
  assert.throws(() => decode([Buffer.from("x")], signer), /delimiter/);
});

test("bad JSON and wrong shapes are WireErrors, not crashes", () => {
  const none = new Signer("");
  const base = [Buffer.from(DELIMITER), Buffer.from("")];
  assert.throws(() => decode([...base, Buffer.from("{"), Buffer.from("{}"), Buffer.from("{}"), Buffer.from("{}")], none), /header is not JSON/);
  assert.throws(() => decode([...base, Buffer.from("{}"), Buffer.from("{}"), Buffer.from("{}"), Buffer.from("{}")], none), /msg_id or msg_type/);
  assert.throws(() => decode([...base, Buffer.from('{"msg_id":"a","msg_type":"x"}'), Buffer.from("[]"), Buffer.from("{}"), Buffer.from("{}")], none), /must be objects/);
});

test("an empty key means no signing", () => {
  const none = new Signer("");
  const f = encode({ header: makeHeader("kernel_info_request", "s"), parent_header: {}, content: {} }, none);
  assert.is(f[1].toString(), "");
  assert.is(decode(f, none).header.msg_type, "kernel_info_request");
});

test("msg_ids are unique", () => {
  const ids = new Set(Array.from({ length: 1000 }, () => makeHeader("x", "s").msg_id));
  assert.is(ids.size, 1000);
});

test("connection files: read, and one sentence on what is wrong", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "conn-"));
  const good = path.join(dir, "good.json");
  fs.writeFileSync(good, JSON.stringify({ ip: "127.0.0.1", transport: "tcp", key: "k", signature_scheme: "hmac-sha256", shell_port: 1, control_port: 2, stdin_port: 3, iopub_port: 4, hb_port: 5 }));
  assert.is(readConnectionFile(good).hb_port, 5);
  assert.throws(() => readConnectionFile(path.join(dir, "missing.json")), /Cannot read the connection file/);
  const bad = path.join(dir, "bad.json");
  fs.writeFileSync(bad, "{");
  assert.throws(() => readConnectionFile(bad), /not valid JSON/);
  fs.writeFileSync(bad, JSON.stringify({ ip: "127.0.0.1", shell_port: 1 }));
  assert.throws(() => readConnectionFile(bad), /has no control_port/);
  fs.writeFileSync(bad, JSON.stringify({ ip: "127.0.0.1", key: "k", signature_scheme: "hmac-md5", shell_port: 1, control_port: 2, stdin_port: 3, iopub_port: 4, hb_port: 5 }));
  assert.throws(() => readConnectionFile(bad), /hmac-md5 is not supported/);
  fs.rmSync(dir, { recursive: true });
});

test.run();
