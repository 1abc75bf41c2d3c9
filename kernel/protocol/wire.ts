/**
 * The Jupyter wire format (messaging protocol 5.5): connection files, message
 * headers, HMAC-SHA256 signing and the multipart frame layout
 *
 *   [identities..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]
 *
 * Pure functions, no sockets: the transport thread uses them, and tests drive
 * them directly.
 */
import * as crypto from "crypto";
import * as fs from "fs";

/** 5.4: iopub_welcome on an XPUB iopub (JEP 65); 5.5: supported_features (JEP 92). */
export const PROTOCOL_VERSION = "5.5";
export const DELIMITER = "<IDS|MSG>";

export interface ConnectionInfo {
  transport: "tcp" | "ipc";
  ip: string;
  key: string;
  signature_scheme: string;
  shell_port: number;
  control_port: number;
  stdin_port: number;
  iopub_port: number;
  hb_port: number;
  kernel_name?: string;
}

export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  [k: string]: unknown;
}

export interface Message {
  identities: Buffer[];
  header: Header;
  parent_header: Header | Record<string, never>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  buffers: Buffer[];
}

/** Read and check a connection file; one sentence on what is wrong. */
export function readConnectionFile(file: string): ConnectionInfo {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new Error(`Cannot read the connection file ${file}; Jupyter passes its path as the kernel's argument.`);
  }
  let info: Partial<ConnectionInfo>;
  try {
    info = JSON.parse(text);
  } catch {
    throw new Error(`The connection file ${file} is not valid JSON.`);
  }
  for (const k of ["shell_port", "control_port", "stdin_port", "iopub_port", "hb_port"] as const) {
    if (info.transport !== "ipc" && !Number.isInteger(info[k])) throw new Error(`The connection file ${file} has no ${k}.`);
  }
  if (typeof info.ip !== "string") throw new Error(`The connection file ${file} has no ip.`);
  const scheme = info.signature_scheme ?? "hmac-sha256";
  if (info.key && scheme !== "hmac-sha256") throw new Error(`Signature scheme ${scheme} is not supported; use hmac-sha256.`);
  return { transport: "tcp", key: "", signature_scheme: scheme, ...info } as ConnectionInfo;
}

export function endpoint(info: ConnectionInfo, port: number, channel: string): string {
  return info.transport === "ipc" ? `ipc://${info.ip}-${port || channel}` : `tcp://${info.ip}:${port}`;
}

export class Signer {
  private readonly key: Buffer;
  constructor(key: string) {
    this.key = Buffer.from(key, "utf8");
  }
  get enabled(): boolean {
    return this.key.length > 0;
  }
  sign(frames: Buffer[]): string {
    if (!this.enabled) return "";
    const h = crypto.createHmac("sha256", this.key);
    for (const f of frames) h.update(f);
    return h.digest("hex");
  }
  /** Constant-time comparison; an empty key accepts everything. */
  verify(signature: Buffer, frames: Buffer[]): boolean {
    if (!this.enabled) return true;
    const expected = Buffer.from(this.sign(frames), "utf8");
    return signature.length === expected.length && crypto.timingSafeEqual(signature, expected);
  }
}

export class WireError extends Error {}

/** Split and check incoming frames. Throws WireError for anything malformed. */
export function decode(frames: Buffer[], signer: Signer): Message {
  const d = frames.findIndex((f) => f.length === DELIMITER.length && f.toString("latin1") === DELIMITER);
  if (d < 0) throw new WireError("no <IDS|MSG> delimiter");
  if (frames.length < d + 6) throw new WireError(`expected 5 frames after the delimiter, got ${frames.length - d - 1}`);
  const identities = frames.slice(0, d);
  const signature = frames[d + 1];
  const parts = frames.slice(d + 2, d + 6);
  if (!signer.verify(signature, parts)) throw new WireError("bad signature");
  const json = parts.map((p, i) => {
    try {
      return JSON.parse(p.toString("utf8"));
    } catch {
      throw new WireError(`frame ${["header", "parent_header", "metadata", "content"][i]} is not JSON`);
    }
  });
  const [header, parent, metadata, content] = json;
  const isObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(header) || typeof header.msg_type !== "string" || typeof header.msg_id !== "string") throw new WireError("header lacks msg_id or msg_type");
  if (!isObject(parent) || !isObject(metadata) || !isObject(content)) throw new WireError("parent_header, metadata and content must be objects");
  return { identities, header, parent_header: parent, metadata, content, buffers: frames.slice(d + 6) };
}

let counter = 0;
const instance = crypto.randomBytes(8).toString("hex");

export function newMsgId(): string {
  counter++;
  return `${instance}_${process.pid}_${counter}`;
}

export function makeHeader(msgType: string, session: string, username = "kernel"): Header {
  return { msg_id: newMsgId(), session, username, date: new Date().toISOString(), msg_type: msgType, version: PROTOCOL_VERSION };
}

export interface Outgoing {
  identities?: Buffer[];
  header: Header;
  parent_header: Header | Record<string, never>;
  metadata?: Record<string, unknown>;
  content: Record<string, unknown>;
  buffers?: Buffer[];
}

/** The frames of an outgoing message, signed. */
export function encode(msg: Outgoing, signer: Signer): Buffer[] {
  const parts = [msg.header, msg.parent_header, msg.metadata ?? {}, msg.content].map((p) => Buffer.from(JSON.stringify(p), "utf8"));
  return [...(msg.identities ?? []), Buffer.from(DELIMITER), Buffer.from(signer.sign(parts)), ...parts, ...(msg.buffers ?? [])];
}
