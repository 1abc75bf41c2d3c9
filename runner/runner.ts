/**
 * `retromae run NOTEBOOK.ipynb`: run a notebook headless, as nbclient and
 * papermill do, with a TypeScript Jupyter client.
 * - Cells run in order; progress and stream output go to the terminal.
 * - Outputs are written into the notebook (display updates applied in place,
 *   execution counts, timing metadata), atomically, also when a cell fails.
 * - `-p name=value` values go into a new cell after the one tagged
 *   `parameters`, as papermill does.
 * - An error gives a nonzero exit with the cell number and the traceback.
 */
import * as path from "path";
import { CellReporter } from "./cell-reporter";
import { CellTimeout, KernelClient, KernelDied } from "./client";
import { writeFileAtomic } from "../lib/util";
import { notebookHtml } from "./html";
import { WidgetStateCollector, WIDGET_STATE_MIME } from "./widgets";
import { Notebook, NotebookCell, Output, readNotebook, RunError, source } from "./notebook";
import type { Message } from "../kernel/protocol/wire";

export { readNotebook, RunError, source };
export type { Notebook, NotebookCell, Output };

export interface RunOptions {
  out?: string;
  html?: string;
  timeoutS?: number;
  parameters?: Record<string, string>;
  kernel?: string;
  log?: (line: string) => void;
  /** Stream text from cells, as it arrives. */
  echo?: (text: string) => void;
  /** Where progress and "still running" lines go (see CellReporter); none: not printed. */
  report?: (text: string) => void;
  /** Progress overwritten in place (a terminal) rather than one line per 10%. */
  tty?: boolean;
}

export interface RunResult {
  notebook: Notebook;
  out: string;
  html: string | null;
  failedCell: number | null;
  error: string | null;
}

const DECLARATION = /^\s*(?:export\s+)?(const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=/;

/** The parameter cell's names, and a new cell setting the given values (papermill's injected-parameters). */
export function injectParameters(nb: Notebook, values: Record<string, string>): void {
  const names = Object.keys(values);
  if (!names.length) return;
  const index = nb.cells.findIndex((c) => c.cell_type === "code" && (c.metadata.tags ?? []).includes("parameters"));
  if (index < 0) throw new RunError(`-p ${names[0]}=… given, but no cell is tagged "parameters"; tag the cell that sets the defaults.`);
  const declared = new Map<string, string>();
  for (const line of source(nb.cells[index]).split("\n")) {
    const m = DECLARATION.exec(line);
    if (m) declared.set(m[2], m[1]);
  }
  for (const n of names) {
    if (!declared.has(n)) throw new RunError(`Unknown parameter "${n}"; the parameters cell declares ${[...declared.keys()].join(", ") || "nothing"}.`);
  }
  const lines = names.map((n) => `${declared.get(n) === "const" ? "const" : "let"} ${n} = ${literal(values[n])};`);
  // An earlier injected cell (from a previous run) is replaced.
  if (nb.cells[index + 1] && (nb.cells[index + 1].metadata.tags ?? []).includes("injected-parameters")) nb.cells.splice(index + 1, 1);
  nb.cells.splice(index + 1, 0, {
    cell_type: "code",
    id: `injected-parameters-${Date.now().toString(36)}`,
    source: `// Parameters set from the command line\n${lines.join("\n")}`,
    metadata: { tags: ["injected-parameters"] },
    execution_count: null,
    outputs: [],
  });
}

/** A -p value as a TypeScript literal: numbers, booleans, null and JSON stay as they are; anything else is a string. */
function literal(v: string): string {
  try {
    JSON.parse(v);
    return v;
  } catch {
    return JSON.stringify(v);
  }
}

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

/** Outputs of one cell, built from its iopub messages; display updates reach outputs of any cell. */
class OutputCollector {
  private readonly displays = new Map<string, Output[]>();
  private clearPending = false;

  apply(cell: NotebookCell, m: Message, echo?: (t: string) => void): void {
    const outputs = cell.outputs!;
    const c = m.content;
    const type = m.header.msg_type;
    if (type === "clear_output") {
      if (c.wait) this.clearPending = true;
      else outputs.length = 0;
      return;
    }
    if (type === "update_display_data") {
      const id = (c.transient as { display_id?: string } | undefined)?.display_id;
      for (const o of (id && this.displays.get(id)) || []) {
        o.data = c.data;
        o.metadata = c.metadata ?? {};
      }
      return;
    }
    if (!["stream", "display_data", "execute_result", "error"].includes(type)) return;
    if (this.clearPending) {
      outputs.length = 0;
      this.clearPending = false;
    }
    if (type === "stream") {
      echo?.(String(c.text));
      const last = outputs[outputs.length - 1];
      if (last && last.output_type === "stream" && last.name === c.name) last.text = String(last.text) + String(c.text);
      else outputs.push({ output_type: "stream", name: c.name, text: String(c.text) });
      return;
    }
    if (type === "error") {
      outputs.push({ output_type: "error", ename: c.ename, evalue: c.evalue, traceback: c.traceback });
      return;
    }
    const out: Output = { output_type: type, data: c.data, metadata: c.metadata ?? {} };
    if (type === "execute_result") out.execution_count = c.execution_count;
    outputs.push(out);
    const id = (c.transient as { display_id?: string } | undefined)?.display_id;
    if (id) this.displays.set(id, [...(this.displays.get(id) ?? []), out]);
  }
}

/** Stream text in a notebook is stored as a list of lines, as Jupyter writes it. */
function lines(text: string): string[] {
  return text.split(/(?<=\n)/);
}

function normalise(nb: Notebook): Notebook {
  for (const c of nb.cells) {
    for (const o of c.outputs ?? []) {
      if (o.output_type === "stream") o.text = lines(String(o.text));
      const data = o.data as Record<string, unknown> | undefined;
      if (data) for (const [k, v] of Object.entries(data)) if (typeof v === "string" && (k.startsWith("text/") || k === "image/svg+xml")) data[k] = lines(v);
    }
  }
  return nb;
}

/**
 * Start the kernel and wait until it answers. A kernel that dies while starting
 * (another process took one of its ports between choosing and binding) is
 * started once more on new ports.
 */
async function startKernel(name: string, cwd: string, log: (l: string) => void): Promise<{ client: KernelClient; info: Record<string, unknown> }> {
  for (let attempt = 1; ; attempt++) {
    const client = await KernelClient.start(name, cwd);
    try {
      return { client, info: await client.waitReady(60_000) };
    } catch (e) {
      await client.shutdown();
      if (!(e instanceof KernelDied) || attempt === 2) throw e;
      log(`the kernel exited while starting (${e.message}); starting it again`);
    }
  }
}

export async function runNotebook(file: string, options: RunOptions = {}): Promise<RunResult> {
  const log = options.log ?? (() => undefined);
  const nb = readNotebook(file);
  injectParameters(nb, options.parameters ?? {});
  const out = options.out ?? file.replace(/\.ipynb$/, "") + ".out.ipynb";
  const kernelName = options.kernel ?? ((nb.metadata.kernelspec as { name?: string } | undefined)?.name || "retromae");
  const codeCells = nb.cells.filter((c) => c.cell_type === "code");
  for (const c of codeCells) {
    c.outputs = [];
    c.execution_count = null;
  }
  const started = Date.now();
  log(`starting kernel ${kernelName}`);
  const { client, info } = await startKernel(kernelName, path.dirname(path.resolve(file)), log);
  let failedCell: number | null = null;
  let error: string | null = null;
  const collector = new OutputCollector();
  const widgets = new WidgetStateCollector();
  const reporter = options.report ? new CellReporter({ tty: options.tty ?? false, write: options.report }) : null;
  const echo = (t: string) => {
    reporter?.sawOutput();
    options.echo?.(t);
  };
  try {
    nb.metadata.language_info = info.language_info;
    let n = 0;
    for (const cell of nb.cells) {
      if (cell.cell_type !== "code") continue;
      n++;
      const code = source(cell);
      if (!code.trim()) continue;
      const t0 = Date.now();
      const startedAt = new Date().toISOString();
      log(`[${n}/${codeCells.length}] running cell ${nb.cells.indexOf(cell) + 1}`);
      reporter?.begin();
      try {
        const reply = await client.execute(
          code,
          (m) => {
            collector.apply(cell, m, echo);
            widgets.apply(m);
            reporter?.message(m);
          },
          { timeoutMs: options.timeoutS ? options.timeoutS * 1000 : undefined },
        );
        reporter?.end();
        cell.execution_count = (reply.content.execution_count as number) ?? null;
        cell.metadata.execution = { "iopub.execute_input": startedAt, "shell.execute_reply": new Date().toISOString() };
        if (reply.content.status !== "ok") {
          failedCell = nb.cells.indexOf(cell) + 1;
          const tb = ((reply.content.traceback as string[]) ?? []).map(stripAnsi).join("\n");
          error = `Cell ${failedCell} failed: ${reply.content.ename}: ${reply.content.evalue}\n${tb}`;
          break;
        }
        log(`[${n}/${codeCells.length}] ok in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      } catch (e) {
        reporter?.end();
        failedCell = nb.cells.indexOf(cell) + 1;
        if (e instanceof KernelDied) error = `The kernel died while running cell ${failedCell}: ${e.message}`;
        else if (e instanceof CellTimeout) error = `Cell ${failedCell}: ${e.message}`;
        else throw e;
        break;
      }
    }
  } finally {
    await client.shutdown();
  }
  const widgetState = widgets.state();
  if (widgetState) nb.metadata.widgets = { [WIDGET_STATE_MIME]: widgetState };
  else delete nb.metadata.widgets;
  nb.metadata.retromae_run = { started: new Date(started).toISOString(), seconds: Math.round((Date.now() - started) / 100) / 10, parameters: options.parameters ?? {}, failed_cell: failedCell };
  writeFileAtomic(out, JSON.stringify(normalise(nb), null, 1) + "\n");
  let html: string | null = null;
  if (options.html) {
    writeFileAtomic(options.html, notebookHtml(nb, path.basename(file)));
    html = options.html;
  }
  return { notebook: nb, out, html, failedCell, error };
}
