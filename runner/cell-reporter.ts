/**
 * What `retromae run` prints while a cell runs, so that no minute passes in
 * silence:
 * - a progress display (PROGRESS_MIME) prints its text form: on a TTY,
 *   overwritten in place at most every 2 s; otherwise one line per 10%
 *   crossed and a final line;
 * - a cell that prints nothing for 30 s gets a line: its latest progress
 *   (when a progress display moved in that time, between 10% lines), else
 *   "still running (N s)"; and another every 30 s of silence after that.
 */
import { PROGRESS_MIME, ProgressData } from "../lib/util";
import type { Message } from "../kernel/protocol/wire";

export interface ReporterOptions {
  /** Overwrite in place (a terminal) or print lines (a log). */
  tty: boolean;
  write: (text: string) => void;
  now?: () => number;
  /** Default 2,000 ms. */
  ttyIntervalMs?: number;
  /** Default 30,000 ms. */
  silenceMs?: number;
}

export class CellReporter {
  private readonly now: () => number;
  private readonly ttyIntervalMs: number;
  private readonly silenceMs: number;
  private started = 0;
  private lastOutput = 0;
  private lastTty = -Infinity;
  /** On a TTY: a progress line is on screen, not yet ended by a newline. */
  private open = false;
  /** Per display: the last 10% step printed, and whether its final line went out. */
  private readonly printed = new Map<string, { decile: number; final: boolean }>();
  private timer: NodeJS.Timeout | null = null;
  /** The latest progress text seen, and when. */
  private latest: { text: string; t: number } | null = null;

  constructor(private readonly options: ReporterOptions) {
    this.now = options.now ?? (() => Date.now());
    this.ttyIntervalMs = options.ttyIntervalMs ?? 2000;
    this.silenceMs = options.silenceMs ?? 30_000;
  }

  /** A cell starts: the silence clock starts, and (unless `tick` is driven by hand) a timer checks it. */
  begin(timer = true): void {
    this.started = this.lastOutput = this.now();
    this.printed.clear();
    this.latest = null;
    if (timer) this.timer = setInterval(() => this.tick(), 1000).unref();
  }

  /** Cell text went to the terminal (stream output): it counts as not silent. */
  sawOutput(): void {
    this.endLine();
    this.lastOutput = this.now();
  }

  /** One iopub message of the running cell. */
  message(m: Message): void {
    const type = m.header.msg_type;
    if (type !== "display_data" && type !== "update_display_data") return;
    const data = (m.content.data ?? {}) as Record<string, unknown>;
    const p = data[PROGRESS_MIME] as ProgressData | undefined;
    if (!p || typeof p.text !== "string") return;
    const id = (m.content.transient as { display_id?: string } | undefined)?.display_id ?? "progress";
    const t = this.now();
    this.latest = { text: p.text, t };
    const final = p.status !== "running" || (p.totalSteps > 0 && p.step >= p.totalSteps);
    if (this.options.tty) {
      if (!final && t - this.lastTty < this.ttyIntervalMs) return;
      this.lastTty = t;
      this.options.write(`\r\x1b[2K${p.text}`);
      this.open = true;
      if (final) this.endLine();
      this.lastOutput = t;
      return;
    }
    const seen = this.printed.get(id) ?? { decile: -1, final: false };
    if (seen.final) return;
    const decile = p.totalSteps > 0 ? Math.floor((10 * Math.min(p.step, p.totalSteps)) / p.totalSteps) : 0;
    if (final || decile > seen.decile) {
      this.options.write(`${p.text}\n`);
      this.printed.set(id, { decile, final });
      this.lastOutput = t;
    }
  }

  /** After each silence of silenceMs: the latest progress if it moved meanwhile, else "still running". */
  tick(): void {
    const t = this.now();
    if (t - this.lastOutput < this.silenceMs) return;
    this.endLine();
    const moving = this.latest && t - this.latest.t < this.silenceMs;
    this.options.write(moving ? `${this.latest!.text}\n` : `still running (${Math.round((t - this.started) / 1000)} s)\n`);
    this.lastOutput = t;
  }

  /** The cell ended. */
  end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.endLine();
  }

  private endLine(): void {
    if (this.open) this.options.write("\n");
    this.open = false;
  }
}
