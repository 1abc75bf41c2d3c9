/**
 * Broadcasting on iopub: every message gets the current request as its
 * parent unless told otherwise, and stdout/stderr writes are batched into
 * stream messages (flushed at 64 KB, after 5 ms, and before any other
 * broadcast, so output keeps its order).
 */
import type { IopubContent, IopubType, Metadata, ParentHeader, Publish } from "./messages";
import { makeHeader, Outgoing } from "./wire";

const STREAM_FLUSH_BYTES = 64 * 1024;
const STREAM_FLUSH_MS = 5;

export class Iopub {
  /** The request that output currently belongs to (the last execute, for late async output). */
  parent: ParentHeader = {};
  private pending: { name: "stdout" | "stderr"; text: string } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly send: (msg: Outgoing) => void,
    private readonly session: string,
  ) {}

  /** The publish callback the other parts of the kernel are given. */
  readonly publish: Publish = <T extends IopubType>(type: T, content: IopubContent[T], parent: ParentHeader = this.parent, metadata: Metadata = {}, buffers: Buffer[] = []) => {
    if (type !== "stream") this.flush();
    this.send({ header: makeHeader(type, this.session), parent_header: parent, metadata, content: content as unknown as Record<string, unknown>, buffers });
  };

  write(name: "stdout" | "stderr", text: string): void {
    if (!text) return;
    if (this.pending && this.pending.name !== name) this.flush();
    if (!this.pending) this.pending = { name, text: "" };
    this.pending.text += text;
    if (this.pending.text.length >= STREAM_FLUSH_BYTES) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), STREAM_FLUSH_MS);
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const s = this.pending;
    this.pending = null;
    if (s && s.text) this.send({ header: makeHeader("stream", this.session), parent_header: this.parent, content: { name: s.name, text: s.text } });
  }

  /** Route process.stdout and process.stderr writes here (cells' console.log included). */
  captureProcessOutput(): void {
    const capture = (name: "stdout" | "stderr") =>
      ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((e?: Error) => void), cb?: (e?: Error) => void): boolean => {
        const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString(typeof encoding === "string" ? encoding : "utf8");
        this.write(name, text);
        const done = typeof encoding === "function" ? encoding : cb;
        if (done) process.nextTick(done);
        return true;
      }) as typeof process.stdout.write;
    process.stdout.write = capture("stdout");
    process.stderr.write = capture("stderr");
  }
}
