/**
 * The transport thread: owns every ZeroMQ socket, so the heartbeat, interrupts
 * and output keep flowing while the interpreter thread runs a long synchronous
 * computation.
 *
 * - shell, control, stdin: ROUTER; iopub: XPUB; heartbeat: REP.
 * - JEP 65 (protocol 5.4): iopub is an XPUB socket that answers each new
 *   subscription with an iopub_welcome message, so a client knows when its
 *   iopub is connected instead of guessing with kernel_info requests.
 * - Incoming frames are decoded and verified here; malformed or badly signed
 *   messages are dropped and logged, never passed on.
 * - interrupt_request is answered here: it raises the shared interrupt flag
 *   (read by loop guards in cell code) and tells the interpreter (which aborts
 *   the cell's pending awaits); a cell still running 150 ms later gets SIGINT,
 *   which breaks synchronous code run with breakOnSigint.
 * - Every send is queued and awaited in order: zeromq 6 allows one send in
 *   flight per socket, and an unawaited send is how output gets lost.
 */
import { MessagePort, parentPort, workerData } from "worker_threads";
import * as zmq from "zeromq";
import { Flag } from "./flags";
import { ConnectionInfo, decode, encode, endpoint, makeHeader, Message, Outgoing, Signer, WireError } from "./wire";

export type Channel = "shell" | "control" | "stdin" | "iopub";

/** thread messages: transport -> interpreter */
export type Inbound = { t: "ready" } | { t: "msg"; channel: Channel; msg: Message } | { t: "interrupt"; cell: number } | { t: "closed" };
/** thread messages: interpreter -> transport */
export type Outbound = { t: "send"; channel: Channel; msg: Outgoing } | { t: "close" };

export interface TransportData {
  info: ConnectionInfo;
  session: string;
  /** The interrupt flags (flags.ts). */
  flag: SharedArrayBuffer;
}

class SendQueue {
  private queue: Buffer[][] = [];
  private running = false;
  private idleWaiters: (() => void)[] = [];
  constructor(
    private readonly socket: zmq.Writable,
    private readonly name: string,
  ) {}

  push(frames: Buffer[]): void {
    this.queue.push(frames);
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length) {
      const frames = this.queue.shift()!;
      try {
        await this.socket.send(frames);
      } catch (err) {
        log(`could not send on ${this.name}: ${(err as Error).message}`);
      }
    }
    this.running = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  drained(): Promise<void> {
    return this.running || this.queue.length ? new Promise((r) => this.idleWaiters.push(r)) : Promise.resolve();
  }
}

/** How long an interrupted cell may take to stop on the flag or the message before SIGINT is raised. */
const SIGNAL_AFTER_MS = 150;

function log(line: string): void {
  process.stderr.write(`[retromae kernel] ${line}\n`);
}

async function main(port: MessagePort, data: TransportData): Promise<void> {
  const { info, session } = data;
  const flag = new Int32Array(data.flag);
  const signer = new Signer(info.key);
  const shell = new zmq.Router({ linger: 1000 });
  const control = new zmq.Router({ linger: 1000 });
  const stdin = new zmq.Router({ linger: 1000 });
  // verbosity "allSubs": every subscriber's subscription reaches us (not only the first of each topic), so each gets a welcome.
  const iopub = new zmq.XPublisher({ linger: 1000, sendHighWaterMark: 0, verbosity: "allSubs" });
  const hb = new zmq.Reply({ linger: 0 });
  await Promise.all([
    shell.bind(endpoint(info, info.shell_port, "shell")),
    control.bind(endpoint(info, info.control_port, "control")),
    stdin.bind(endpoint(info, info.stdin_port, "stdin")),
    iopub.bind(endpoint(info, info.iopub_port, "iopub")),
    hb.bind(endpoint(info, info.hb_port, "hb")),
  ]);
  const queues: Record<Channel, SendQueue> = {
    shell: new SendQueue(shell, "shell"),
    control: new SendQueue(control, "control"),
    stdin: new SendQueue(stdin, "stdin"),
    iopub: new SendQueue(iopub, "iopub"),
  };
  /**
   * Set when the kernel closes. Nothing is sent after: a send on a closed socket throws, and one that throws while
   * the process exits tears down this thread aborts the whole process from inside zeromq (its C++ exception finds
   * no JavaScript to throw into): messages the cell runtime posts after "close" are dropped.
   */
  let closed = false;
  const send = (channel: Channel, msg: Outgoing) => {
    if (!closed) queues[channel].push(encode(msg, signer));
  };

  void (async () => {
    for await (const [ping] of hb) if (!closed) await hb.send(ping);
  })().catch(() => undefined);

  void (async () => {
    for await (const [sub] of iopub) {
      // A subscription is byte 1 and the topic; byte 0 is an unsubscription.
      if (sub.length && sub[0] === 1) send("iopub", { header: makeHeader("iopub_welcome", session), parent_header: {}, content: { subscription: sub.subarray(1).toString("utf8") } });
    }
  })().catch(() => undefined);

  const interrupt = (request: Message) => {
    const parent = request.header;
    send("iopub", { header: makeHeader("status", session), parent_header: parent, content: { execution_state: "busy" } });
    const cell = Atomics.load(flag, Flag.Cell);
    Atomics.store(flag, Flag.Requested, 1);
    if (cell) {
      port.postMessage({ t: "interrupt", cell } satisfies Inbound);
      void signalIfStuck(cell);
    }
    send("control", { identities: request.identities, header: makeHeader("interrupt_reply", session), parent_header: parent, content: { status: "ok" } });
    send("iopub", { header: makeHeader("status", session), parent_header: parent, content: { execution_state: "idle" } });
  };

  /**
   * A cell stops on the flag (its loop guards) or on the message above (its
   * pending awaits). Only a cell still running after SIGNAL_AFTER_MS is in
   * synchronous code without guards (a library's loop), which only SIGINT
   * breaks. Raising it at once for every interrupt let the signal arrive after
   * the cell had stopped on the flag, and interrupt the next cell.
   */
  const signalIfStuck = async (cell: number) => {
    const until = Date.now() + SIGNAL_AFTER_MS;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
      if (Atomics.load(flag, Flag.Cell) !== cell) return;
    }
    // Tagged with the cell, so a signal that reaches the listener after the cell ended is dropped (Runtime.signal).
    Atomics.store(flag, Flag.SignalFor, cell + 1);
    process.kill(process.pid, "SIGINT");
  };

  const listen = async (socket: zmq.Router, channel: Channel) => {
    for await (const frames of socket) {
      let msg: Message;
      try {
        msg = decode(frames as Buffer[], signer);
      } catch (err) {
        log(`dropped a message on ${channel}: ${err instanceof WireError ? err.message : String(err)}`);
        continue;
      }
      if (channel === "control" && msg.header.msg_type === "interrupt_request") interrupt(msg);
      else port.postMessage({ t: "msg", channel, msg } satisfies Inbound);
    }
  };
  void listen(shell, "shell").catch(() => undefined);
  void listen(control, "control").catch(() => undefined);
  void listen(stdin, "stdin").catch(() => undefined);

  port.on("message", async (m: Outbound) => {
    if (m.t === "send") {
      const msg = m.msg;
      if (msg.identities) msg.identities = msg.identities.map((b) => Buffer.from(b));
      send(m.channel, msg);
    } else if (m.t === "close") {
      closed = true;
      await Promise.all(Object.values(queues).map((q) => q.drained()));
      for (const s of [shell, control, stdin, iopub, hb]) s.close();
      port.postMessage({ t: "closed" } satisfies Inbound);
    }
  });
  port.postMessage({ t: "ready" } satisfies Inbound);
}

if (parentPort && workerData?.info) {
  const port = parentPort;
  main(port, workerData as TransportData).catch((err: Error) => {
    log(`transport failed: ${err.message}`);
    process.exit(1);
  });
}
