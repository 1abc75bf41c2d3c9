/**
 * Comms (the messaging spec's custom messages), in both directions:
 * - the front end opens one to a target a cell registered
 *   (`comm.register(target, (comm, openMsg) => …)`), or
 * - a cell opens one to a front-end target (`comm.open(target, data)`).
 * Either side then sends comm_msg and closes with comm_close; binary
 * buffers travel both ways. A comm outlives the cell that opened it. A
 * comm_open for a target nobody registered is answered with comm_close.
 */
import * as crypto from "crypto";
import type { IopubContent, Metadata, ParentHeader, Publish } from "../protocol/messages";
import type { Message } from "../protocol/wire";

export type Buffers = (Uint8Array | ArrayBuffer | ArrayBufferView)[];

/** What a comm handler receives: the message's data, metadata and buffers, and its header. */
export interface CommMessage {
  data: Record<string, unknown>;
  metadata: Metadata;
  buffers: Uint8Array[];
  header: Message["header"] | null;
}

export type CommHandler = (msg: CommMessage) => void | Promise<void>;

/** Binary buffers as the wire sends them. */
export function toBytes(buffers: Buffers = []): Buffer[] {
  return buffers.map((b) => (b instanceof ArrayBuffer ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
}

function asObject(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export class Comm {
  private readonly msgHandlers: CommHandler[] = [];
  private readonly closeHandlers: CommHandler[] = [];
  private closed = false;

  constructor(
    readonly commId: string,
    readonly targetName: string,
    private readonly manager: CommManager,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Send a comm_msg to the front end (answering `parent`, a message's header, when given). */
  send(data: Record<string, unknown> = {}, metadata: Metadata = {}, buffers: Buffers = [], parent?: ParentHeader): void {
    if (this.closed) throw new Error(`Comm ${this.commId} (${this.targetName}) is closed; open a new one to send more.`);
    this.manager.publish("comm_msg", { comm_id: this.commId, data }, parent, metadata, toBytes(buffers));
  }

  /** Close the comm (comm_close to the front end); onClose handlers run. */
  close(data: Record<string, unknown> = {}, metadata: Metadata = {}, buffers: Buffers = []): void {
    if (this.closed) return;
    this.manager.publish("comm_close", { comm_id: this.commId, data }, undefined, metadata, toBytes(buffers));
    this.closed = true;
    this.manager.forget(this.commId);
    void this.manager.dispatch(this.closeHandlers, { data, metadata, buffers: toBytes(buffers), header: null });
  }

  /** Call `handler` for every comm_msg from the front end. */
  onMsg(handler: CommHandler): this {
    this.msgHandlers.push(handler);
    return this;
  }

  /** Call `handler` when the comm closes, from either side. */
  onClose(handler: CommHandler): this {
    this.closeHandlers.push(handler);
    return this;
  }

  /** A comm_msg or comm_close from the front end. */
  receive(kind: "msg" | "close", msg: CommMessage): Promise<void> {
    if (kind === "close") {
      this.closed = true;
      this.manager.forget(this.commId);
      return this.manager.dispatch(this.closeHandlers, msg);
    }
    return this.manager.dispatch(this.msgHandlers, msg);
  }
}

export class CommManager {
  private readonly targets = new Map<string, (comm: Comm, open: CommMessage) => void | Promise<void>>();
  private readonly comms = new Map<string, Comm>();

  constructor(
    private readonly publishMessage: Publish,
    /** Where an error thrown by a handler is reported (the notebook's stderr). */
    private readonly report: (err: unknown) => void,
  ) {}

  publish<T extends "comm_open" | "comm_msg" | "comm_close">(type: T, content: IopubContent[T], parent?: ParentHeader, metadata: Metadata = {}, buffers: Buffer[] = []): void {
    this.publishMessage(type, content, parent, metadata, buffers);
  }

  forget(commId: string): void {
    this.comms.delete(commId);
  }

  async dispatch(handlers: CommHandler[], msg: CommMessage): Promise<void> {
    for (const h of handlers) {
      try {
        await h(msg);
      } catch (err) {
        this.report(err);
      }
    }
  }

  /** `comm.register` in cells: handle comm_open from the front end for this target. */
  register(targetName: string, handler: (comm: Comm, open: CommMessage) => void | Promise<void>): void {
    if (typeof targetName !== "string" || !targetName) throw new TypeError("comm.register needs a target name, e.g. comm.register(\"my-target\", (comm, msg) => …).");
    if (typeof handler !== "function") throw new TypeError(`comm.register("${targetName}", …) needs a handler function (comm, openMsg) => ….`);
    this.targets.set(targetName, handler);
  }

  unregister(targetName: string): void {
    this.targets.delete(targetName);
  }

  /** `comm.open` in cells: open a comm to a front-end target. */
  open(targetName: string, data: Record<string, unknown> = {}, metadata: Metadata = {}, buffers: Buffers = []): Comm {
    if (typeof targetName !== "string" || !targetName) throw new TypeError("comm.open needs the front end's target name, e.g. comm.open(\"my-target\", { hello: 1 }).");
    const comm = new Comm(crypto.randomUUID().replace(/-/g, ""), targetName, this);
    this.comms.set(comm.commId, comm);
    this.publish("comm_open", { comm_id: comm.commId, target_name: targetName, data }, undefined, metadata, toBytes(buffers));
    return comm;
  }

  /** The open comms, for comm_info_request (only `targetName`'s when given). */
  info(targetName?: string): Record<string, { target_name: string }> {
    const out: Record<string, { target_name: string }> = {};
    for (const c of this.comms.values()) if (!targetName || c.targetName === targetName) out[c.commId] = { target_name: c.targetName };
    return out;
  }

  /** comm_open, comm_msg or comm_close from the front end. */
  async handle(msg: Message): Promise<void> {
    const c = msg.content;
    const commId = String(c.comm_id ?? "");
    const incoming: CommMessage = { data: asObject(c.data), metadata: msg.metadata, buffers: msg.buffers.map((b) => new Uint8Array(b)), header: msg.header };
    switch (msg.header.msg_type) {
      case "comm_open": {
        const target = String(c.target_name ?? "");
        const handler = this.targets.get(target);
        if (!commId || !handler) {
          // No such target: close it, as the protocol asks.
          this.publish("comm_close", { comm_id: commId, data: {} }, msg.header);
          return;
        }
        const comm = new Comm(commId, target, this);
        this.comms.set(commId, comm);
        try {
          await handler(comm, incoming);
        } catch (err) {
          this.report(err);
        }
        return;
      }
      case "comm_msg":
        await this.comms.get(commId)?.receive("msg", incoming);
        return;
      case "comm_close":
        await this.comms.get(commId)?.receive("close", incoming);
        return;
    }
  }
}
