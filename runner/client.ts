/**
 * A Jupyter client over ZeroMQ, in TypeScript: starts a kernel from its
 * kernelspec, connects shell/control (DEALER) and iopub (SUB), and runs
 * execute requests to idle. Used by `retromae run`; needs no Python.
 */
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import * as zmq from "zeromq";
import { DEFAULT_NAME, kernelSpec, searchDirs } from "../kernel/install";
import { ConnectionInfo, decode, encode, makeHeader, Message, Signer } from "../kernel/protocol/wire";

export interface KernelSpecFile {
  argv: string[];
  display_name: string;
  language: string;
  env?: Record<string, string>;
}

/** The kernelspec named `name`: installed ones first; this package's own kernel needs no install. */
export function findKernelSpec(name: string): { spec: KernelSpecFile; dir: string | null } {
  for (const dir of searchDirs()) {
    const file = path.join(dir, name, "kernel.json");
    if (fs.existsSync(file)) return { spec: JSON.parse(fs.readFileSync(file, "utf8")), dir: path.dirname(file) };
  }
  if (name === DEFAULT_NAME) return { spec: kernelSpec() as unknown as KernelSpecFile, dir: null };
  throw new Error(`No kernel named "${name}" is installed (looked in ${searchDirs().join(", ")}); see jupyter kernelspec list.`);
}

/** n distinct free ports: all held open at once while they are chosen, so none is handed out twice. */
async function freePorts(ip: string, n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const srv = net.createServer();
          srv.unref();
          srv.on("error", reject);
          srv.listen(0, ip, () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export class KernelDied extends Error {}

export class KernelClient {
  private readonly session = crypto.randomUUID();
  private readonly signer: Signer;
  private shell!: zmq.Dealer;
  private control!: zmq.Dealer;
  private iopub!: zmq.Subscriber;
  private proc!: ChildProcess;
  private connectionFile = "";
  private readonly shellWaiters = new Map<string, (m: Message) => void>();
  private readonly iopubHandlers = new Map<string, (m: Message) => void>();
  private readonly onAnyIopub: ((m: Message) => void)[] = [];
  private died: ((e: Error) => void)[] = [];
  exitCode: number | null = null;
  stderrTail = "";

  private constructor(private readonly info: ConnectionInfo) {
    this.signer = new Signer(info.key);
  }

  static async start(name: string, cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<KernelClient> {
    const { spec } = findKernelSpec(name);
    const ip = "127.0.0.1";
    const ports = await freePorts(ip, 5);
    const info: ConnectionInfo = {
      transport: "tcp",
      ip,
      key: crypto.randomBytes(16).toString("hex"),
      signature_scheme: "hmac-sha256",
      shell_port: ports[0],
      control_port: ports[1],
      stdin_port: ports[2],
      iopub_port: ports[3],
      hb_port: ports[4],
      kernel_name: name,
    };
    const client = new KernelClient(info);
    client.connectionFile = path.join(os.tmpdir(), `retromae-run-${process.pid}-${Date.now()}.json`);
    fs.writeFileSync(client.connectionFile, JSON.stringify(info), { mode: 0o600 });
    const argv = spec.argv.map((a) => a.replace("{connection_file}", client.connectionFile));
    client.proc = spawn(argv[0], argv.slice(1), { cwd, env: { ...env, ...(spec.env ?? {}) }, stdio: ["ignore", "ignore", "pipe"] });
    client.proc.stderr!.on("data", (d: Buffer) => (client.stderrTail = (client.stderrTail + d.toString()).slice(-4000)));
    client.proc.on("exit", (code, signal) => {
      client.exitCode = code ?? (signal ? 128 : -1);
      const err = new KernelDied(`The kernel exited (${signal ?? `code ${code}`})${client.stderrTail.trim() ? `: ${client.stderrTail.trim().split("\n").slice(-3).join(" / ")}` : ""}.`);
      for (const d of client.died.splice(0)) d(err);
    });
    await client.connect();
    return client;
  }

  private async connect(): Promise<void> {
    const url = (p: number) => `tcp://${this.info.ip}:${p}`;
    this.shell = new zmq.Dealer({ linger: 0 });
    this.control = new zmq.Dealer({ linger: 0 });
    this.iopub = new zmq.Subscriber({ linger: 0 });
    this.iopub.subscribe();
    this.shell.connect(url(this.info.shell_port));
    this.control.connect(url(this.info.control_port));
    this.iopub.connect(url(this.info.iopub_port));
    const pump = async (socket: zmq.Dealer | zmq.Subscriber, onMessage: (m: Message) => void) => {
      for await (const frames of socket) {
        try {
          onMessage(decode(frames as Buffer[], this.signer));
        } catch {
          /* not ours */
        }
      }
    };
    const reply = (m: Message) => {
      const id = (m.parent_header as { msg_id?: string }).msg_id ?? "";
      const w = this.shellWaiters.get(id);
      if (w) {
        this.shellWaiters.delete(id);
        w(m);
      }
    };
    void pump(this.shell, reply).catch(() => undefined);
    void pump(this.control, reply).catch(() => undefined);
    void pump(this.iopub, (m) => {
      for (const h of this.onAnyIopub) h(m);
      this.iopubHandlers.get((m.parent_header as { msg_id?: string }).msg_id ?? "")?.(m);
    }).catch(() => undefined);
  }

  /** A promise that rejects when the kernel process exits. */
  private dying(): Promise<never> {
    if (this.exitCode !== null) return Promise.reject(new KernelDied(`The kernel exited (code ${this.exitCode}).`));
    return new Promise((_, reject) => this.died.push(reject));
  }

  async send(channel: "shell" | "control", type: string, content: Record<string, unknown>): Promise<string> {
    const header = makeHeader(type, this.session, "retromae-run");
    const frames = encode({ header, parent_header: {}, content }, this.signer);
    await (channel === "shell" ? this.shell : this.control).send(frames);
    return header.msg_id;
  }

  private replyTo(msgId: string): Promise<Message> {
    return new Promise((resolve) => this.shellWaiters.set(msgId, resolve));
  }

  /** Until the kernel answers kernel_info and its iopub reaches us (ZeroMQ's slow joiner). */
  async waitReady(timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let iopubSeen = false;
    const seen = () => (iopubSeen = true);
    this.onAnyIopub.push(seen);
    try {
      while (Date.now() < deadline) {
        const id = await this.send("shell", "kernel_info_request", {});
        const reply = await Promise.race([this.replyTo(id), this.dying(), sleep(500).then(() => null)]);
        if (reply && iopubSeen) return reply.content;
        if (reply) await sleep(50);
      }
    } finally {
      this.onAnyIopub.splice(this.onAnyIopub.indexOf(seen), 1);
    }
    throw new Error(`The kernel did not answer within ${Math.round(timeoutMs / 1000)} s.${this.stderrTail ? ` Its log: ${this.stderrTail.trim().split("\n").slice(-3).join(" / ")}` : ""}`);
  }

  /**
   * Execute code; `onOutput` sees every iopub message of it. Resolves with the
   * execute_reply once the reply and the idle status have both arrived.
   */
  async execute(code: string, onOutput: (m: Message) => void, options: { timeoutMs?: number } = {}): Promise<Message> {
    const header = makeHeader("execute_request", this.session, "retromae-run");
    let idle!: () => void;
    const idleSeen = new Promise<void>((r) => (idle = r));
    this.iopubHandlers.set(header.msg_id, (m) => {
      if (m.header.msg_type === "status") {
        if (m.content.execution_state === "idle") idle();
      } else onOutput(m);
    });
    const reply = this.replyTo(header.msg_id);
    const content = { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true };
    await this.shell.send(encode({ header, parent_header: {}, content }, this.signer));
    const done = Promise.all([reply, idleSeen]).then(([r]) => r);
    try {
      if (!options.timeoutMs) return await Promise.race([done, this.dying()]);
      const timer = sleep(options.timeoutMs).then(() => "timeout" as const);
      const r = await Promise.race([done, this.dying(), timer]);
      if (r !== "timeout") return r;
      await this.send("control", "interrupt_request", {});
      await Promise.race([done, this.dying(), sleep(5000)]);
      throw new CellTimeout(`The cell did not finish within ${options.timeoutMs / 1000} s; it was interrupted. Raise --timeout or make the cell shorter.`);
    } finally {
      this.iopubHandlers.delete(header.msg_id);
    }
  }

  async shutdown(): Promise<void> {
    if (this.exitCode === null) {
      try {
        const id = await this.send("control", "shutdown_request", { restart: false });
        await Promise.race([this.replyTo(id), this.dying(), sleep(3000)]).catch(() => undefined);
        await Promise.race([new Promise((r) => this.proc.once("exit", r)), sleep(3000)]);
      } catch {
        /* already gone */
      }
      if (this.exitCode === null) this.proc.kill("SIGKILL");
    }
    for (const s of [this.shell, this.control, this.iopub]) s?.close();
    fs.rmSync(this.connectionFile, { force: true });
  }
}

export class CellTimeout extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref?.());
}
