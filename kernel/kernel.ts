/**
 * The kernel process, put together. Three threads, as ipykernel and xeus
 * split transport from interpreter:
 * - transport (transport.ts): all ZeroMQ sockets, signing, heartbeat, interrupts;
 * - language (language-worker.ts, through workers.ts): TypeScript checking, compiling, completion;
 * - this one: the request loop (protocol.ts), what requests mean
 *   (interpreter.ts), and what cells run in (runtime.ts: globals, modules,
 *   display, tracebacks), with output on iopub (iopub.ts).
 * Each piece gets callbacks (publish, send), not a reference back to this class.
 */
import type { Worker } from "worker_threads";
import { DisplayPublisher } from "./runtime/display";
import { Interpreter } from "./interpreter";
import { Iopub } from "./protocol/iopub";
import { log } from "./log";
import { CommManager } from "./runtime/comms";
import type { CommInfoRequest, CompleteRequest, ErrorContent, HistoryRequest, InspectRequest, ShutdownRequest } from "./protocol/messages";
import { Protocol, reply } from "./protocol/protocol";
import { Runtime } from "./runtime/runtime";
import type { Channel, Inbound, Outbound, TransportData } from "./protocol/transport";
import { ConnectionInfo, makeHeader, Message, Outgoing } from "./protocol/wire";
import { LanguageClient, startWorker } from "./workers";

export { KeyboardInterrupt } from "./runtime/runtime";
export { KERNEL_VERSION } from "./interpreter";

/** The real process.exit (cells get one that shuts the kernel down first). */
const exitProcess = process.exit.bind(process);

export class Kernel {
  private readonly session = `${process.pid}-${Date.now().toString(36)}`;
  private transport!: Worker;
  private language!: LanguageClient;
  private iopub!: Iopub;
  private runtime!: Runtime;
  private protocol!: Protocol;
  private closing = false;
  private exitCode = 0;

  constructor(private readonly info: ConnectionInfo) {}

  async start(): Promise<void> {
    // The type checker's thread first: its warm-up is the longest part of a start.
    this.language = new LanguageClient(process.cwd());
    const post = (channel: Channel, msg: Outgoing) => this.transport.postMessage({ t: "send", channel, msg } satisfies Outbound);
    this.iopub = new Iopub((msg) => post("iopub", msg), this.session);
    const publish = this.iopub.publish;
    const display = new DisplayPublisher(publish, this.session);
    const comms = new CommManager(publish, (err) => process.stderr.write(`Error in a comm handler:\n${this.runtime.tracebacks.describe(err).traceback.join("\n")}\n`));
    this.runtime = new Runtime(
      {
        publish,
        display,
        comms,
        requestInput: (request, prompt, password) => {
          this.iopub.flush();
          post("stdin", { identities: request.identities, header: makeHeader("input_request", this.session), parent_header: request.header, content: { prompt, password } });
        },
        exit: (code) => this.close(code, 3000),
      },
      process.cwd(),
    );
    this.transport = startWorker("transport", { info: this.info, session: this.session, flag: this.runtime.flag } satisfies TransportData);
    const interpreter = new Interpreter(publish, this.language, this.runtime, display);

    this.protocol = new Protocol(
      this.session,
      {
        kernel_info_request: () => reply("kernel_info_reply", interpreter.kernelInfo()),
        execute_request: async (msg) => {
          this.iopub.parent = msg.header;
          const r = await interpreter.execute(msg);
          return { type: "execute_reply", content: r.reply, metadata: r.metadata, abortQueued: r.abortQueued };
        },
        complete_request: async (msg) => reply("complete_reply", await interpreter.complete(msg.content as unknown as CompleteRequest)),
        inspect_request: async (msg) => reply("inspect_reply", await interpreter.inspect(msg.content as unknown as InspectRequest)),
        is_complete_request: async (msg) => reply("is_complete_reply", await interpreter.isComplete(String(msg.content.code ?? ""))),
        history_request: (msg) => reply("history_reply", interpreter.historyReply(msg.content as HistoryRequest)),
        comm_info_request: (msg) => reply("comm_info_reply", { status: "ok", comms: comms.info((msg.content as CommInfoRequest).target_name) }),
        comm_open: (msg, _channel, concurrent) => this.comm(comms, msg, concurrent),
        comm_msg: (msg, _channel, concurrent) => this.comm(comms, msg, concurrent),
        comm_close: (msg, _channel, concurrent) => this.comm(comms, msg, concurrent),
        shutdown_request: (msg, channel) => {
          const restart = !!(msg.content as ShutdownRequest).restart;
          this.protocol.send(channel, msg, "shutdown_reply", { status: "ok", restart });
          publish("status", { execution_state: "idle" }, msg.header);
          this.close(0, 2000);
        },
      },
      { send: post, publish, flush: () => this.iopub.flush(), inputReply: (v) => this.runtime.inputReply(v) },
      () => interpreter.count,
    );

    this.transport.on("error", (e) => {
      log(`transport thread failed: ${e?.stack ?? e}`);
      exitProcess(1);
    });
    await new Promise<void>((resolve) => {
      this.transport.on("message", (m: Inbound) => {
        if (m.t === "ready") resolve();
        else if (m.t === "msg") this.protocol.receive(m.channel, reviveMessage(m.msg));
        else if (m.t === "interrupt") this.runtime.interruptCell(m.cell);
        else if (m.t === "closed") exitProcess(this.exitCode);
      });
    });
    this.runtime.install();
    this.iopub.captureProcessOutput();
    process.on("SIGINT", () => this.runtime.signal());
    publish("status", { execution_state: "starting" }, {});
    publish("status", { execution_state: "idle" }, {});
  }

  /**
   * A comm message from the front end: its output belongs to it, as ipykernel
   * sets the parent; while a cell runs (concurrent), output stays the cell's,
   * and replies that answer the message (echo_update) name it themselves.
   */
  private async comm(comms: CommManager, msg: Message, concurrent = false): Promise<void> {
    if (!concurrent) this.iopub.parent = msg.header;
    await comms.handle(msg);
  }

  /**
   * Shut down: no more requests, output flushed, the language thread ended,
   * then the transport closes its sockets and says "closed" (a worker
   * terminated with open sockets aborts); exit anyway after `graceMs`.
   */
  private close(code: number, graceMs: number): void {
    if (this.closing) return;
    this.closing = true;
    this.exitCode = code;
    this.protocol.close();
    this.iopub.flush();
    this.language.terminate();
    this.transport.postMessage({ t: "close" } satisfies Outbound);
    setTimeout(() => exitProcess(this.exitCode), graceMs).unref();
  }

  /** ename/evalue/traceback for an error outside a cell's run (unhandled rejections), mapped to cell lines. */
  describeError(err: unknown): ErrorContent {
    return this.runtime.tracebacks.describe(err);
  }
}

/** Messages crossing threads arrive with Uint8Array identities; make them Buffers again. */
function reviveMessage(m: Message): Message {
  return { ...m, identities: m.identities.map((b) => Buffer.from(b)), buffers: (m.buffers ?? []).map((b) => Buffer.from(b)) };
}
