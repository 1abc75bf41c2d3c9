/**
 * The protocol side of the kernel, as ipykernel's kernelbase.py: the
 * message table, busy and idle around every request, the shell queue
 * (one request at a time, in order; control requests go first), and
 * answering queued executes "aborted" after a failed one with
 * stop_on_error. What a request means is the handler's business.
 *
 * One exception to the queue: comm messages (and comm_info_request) that
 * arrive while a request is running are handled at once, between the
 * running cell's awaits, without busy/idle of their own (the kernel is busy
 * with the cell). That is what lets a widget steer a running computation:
 * a slider moved during `fit` reaches the trainer at its next step.
 */
import type { Channel } from "./transport";
import type { Metadata, Publish, ReplyContent, ReplyType } from "./messages";
import { log, debug } from "../log";
import { makeHeader, type Message, type Outgoing } from "./wire";

/** A handler's answer: the reply to send, and whether to abort the queued executes after it. */
export interface Handled<T extends ReplyType = ReplyType> {
  type: T;
  content: ReplyContent[T];
  metadata?: Metadata;
  abortQueued?: boolean;
}

/** `concurrent`: handled while another request runs (comm messages only); its output must not take over the running request's. */
export type Handler = (msg: Message, channel: Channel, concurrent?: boolean) => Promise<Handled | void> | Handled | void;

/** Shell messages handled at once even while a request runs. */
export const CONCURRENT_WHILE_BUSY: ReadonlySet<string> = new Set(["comm_open", "comm_msg", "comm_close", "comm_info_request"]);

export interface ProtocolHooks {
  send(channel: Channel, msg: Outgoing): void;
  publish: Publish;
  /** Called before each reply, so output published before it goes out first. */
  flush(): void;
  /** An input_reply on stdin. */
  inputReply(value: string): void;
}

export function reply<T extends ReplyType>(type: T, content: ReplyContent[T], metadata?: Metadata): Handled<T> {
  return { type, content, metadata };
}

export class Protocol {
  private readonly queue: Message[] = [];
  private busy = false;
  private closed = false;

  constructor(
    private readonly session: string,
    private readonly handlers: Partial<Record<string, Handler>>,
    private readonly hooks: ProtocolHooks,
    /** The execution count an aborted execute reports. */
    private readonly executionCount: () => number,
  ) {}

  /** A message from the transport. */
  receive(channel: Channel, msg: Message): void {
    if (this.closed) return;
    if (channel === "stdin") {
      if (msg.header.msg_type === "input_reply") this.hooks.inputReply(String(msg.content.value ?? ""));
      return;
    }
    if (channel === "control") {
      void this.handle(channel, msg);
      return;
    }
    if (this.busy && CONCURRENT_WHILE_BUSY.has(msg.header.msg_type)) {
      void this.handle(channel, msg, true);
      return;
    }
    this.queue.push(msg);
    void this.drain();
  }

  /** Stop taking requests (the kernel is shutting down). */
  close(): void {
    this.closed = true;
  }

  send<T extends ReplyType>(channel: Channel, request: Message, type: T, content: ReplyContent[T], metadata: Metadata = {}): void {
    this.hooks.flush();
    this.hooks.send(channel, { identities: request.identities, header: makeHeader(type, this.session), parent_header: request.header, metadata, content: content as unknown as Record<string, unknown> });
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length) {
        const abort = await this.handle("shell", this.queue.shift()!);
        if (abort) this.abortQueued();
      }
    } finally {
      this.busy = false;
    }
  }

  /** Busy, the handler, its reply, idle. Returns whether the queued executes are to be aborted. */
  private async handle(channel: Channel, msg: Message, concurrent = false): Promise<boolean> {
    const type = msg.header.msg_type;
    debug(`${channel} ${type} ${msg.header.msg_id}${concurrent ? " (while busy)" : ""}`);
    if (!concurrent) this.hooks.publish("status", { execution_state: "busy" }, msg.header);
    let abort = false;
    try {
      const handler = this.handlers[type];
      if (handler) {
        const r = await handler(msg, channel, concurrent);
        if (r) {
          this.send(channel, msg, r.type, r.content, r.metadata);
          abort = !!r.abortQueued;
        }
      } else if (type.endsWith("_request")) {
        log(`unsupported request ${type}`);
        this.hooks.flush();
        this.hooks.send(channel, {
          identities: msg.identities,
          header: makeHeader(type.replace(/_request$/, "_reply"), this.session),
          parent_header: msg.header,
          content: { status: "error", ename: "NotImplemented", evalue: `${type} is not supported by this kernel.`, traceback: [] },
        });
      } else log(`ignored ${type} on ${channel}`);
    } catch (err) {
      log(`error handling ${type}: ${(err as Error).stack}`);
    }
    if (!concurrent) this.hooks.publish("status", { execution_state: "idle" }, msg.header);
    return abort;
  }

  /** After an error with stop_on_error, the execute requests already queued are answered "aborted". */
  private abortQueued(): void {
    const keep: Message[] = [];
    for (const m of this.queue.splice(0)) {
      if (m.header.msg_type !== "execute_request") {
        keep.push(m);
        continue;
      }
      this.hooks.publish("status", { execution_state: "busy" }, m.header);
      this.send("shell", m, "execute_reply", { status: "aborted", execution_count: this.executionCount() });
      this.hooks.publish("status", { execution_state: "idle" }, m.header);
    }
    this.queue.push(...keep);
  }
}
