/**
 * A standalone HTML report of an executed notebook: markdown cells rendered,
 * code and its outputs, Plotly charts kept (their text/html fallback carries
 * plotly.js once, so the page works offline), images inline.
 */
import { escapeHtml as escape } from "../lib/util";
import type { Notebook, NotebookCell, Output } from "./notebook";
import { scriptJson, widgetScripts, WidgetState, WIDGET_STATE_MIME, WIDGET_VIEW_MIME } from "./widgets";

const text = (v: unknown): string => (Array.isArray(v) ? v.join("") : String(v ?? ""));
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

/** A small markdown renderer: headings, paragraphs, lists, code blocks, inline code, bold, italics, links. */
export function markdown(md: string): string {
  const inline = (s: string) =>
    escape(s)
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
      .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>');
  const out: string[] = [];
  const blocks = md.replace(/\r\n/g, "\n").split("\n");
  let para: string[] = [];
  let list: { tag: string; items: string[] } | null = null;
  const flush = () => {
    if (para.length) out.push(`<p>${inline(para.join(" "))}</p>`);
    para = [];
    if (list) out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`);
    list = null;
  };
  for (let i = 0; i < blocks.length; i++) {
    const line = blocks[i];
    if (line.startsWith("```")) {
      flush();
      const code: string[] = [];
      for (i++; i < blocks.length && !blocks[i].startsWith("```"); i++) code.push(blocks[i]);
      out.push(`<pre><code>${escape(code.join("\n"))}</code></pre>`);
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (h) {
      flush();
      out.push(`<h${h[1].length}>${inline(h[2])}</h${h[1].length}>`);
      continue;
    }
    const li = /^\s*(?:([-*])|(\d+)\.)\s+(.*)$/.exec(line);
    if (li) {
      if (para.length) flush();
      const tag = li[1] ? "ul" : "ol";
      if (!list || list.tag !== tag) {
        flush();
        list = { tag, items: [] };
      }
      list.items.push(li[3]);
      continue;
    }
    if (!line.trim()) {
      flush();
      continue;
    }
    if (list) list.items[list.items.length - 1] += " " + line.trim();
    else para.push(line.trim());
  }
  flush();
  return out.join("\n");
}

/** The widget modules the embed manager carries; others (anywidget, third-party) show their text/plain. */
const EMBEDDED = new Set(["@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"]);

function output(o: Output, widgets: WidgetState | null): string {
  const view = (o.data as Record<string, unknown> | undefined)?.[WIDGET_VIEW_MIME] as { model_id?: string } | undefined;
  // a widget whose model the notebook saved: the embed manager renders it in place of this script
  if (view && widgets && view.model_id && EMBEDDED.has(widgets.state[view.model_id]?.model_module)) return `<div class="widget"><script type="${WIDGET_VIEW_MIME}">${scriptJson(view)}</script></div>`;
  if (o.output_type === "stream") return `<pre class="stream ${o.name}">${escape(text(o.text))}</pre>`;
  if (o.output_type === "error") return `<pre class="error">${escape(stripAnsi((o.traceback as string[] | undefined)?.join("\n") ?? `${o.ename}: ${o.evalue}`))}</pre>`;
  const data = (o.data ?? {}) as Record<string, unknown>;
  if (data["text/html"] !== undefined) return `<div class="html">${text(data["text/html"])}</div>`;
  if (data["image/svg+xml"] !== undefined) return `<div class="svg">${text(data["image/svg+xml"])}</div>`;
  if (data["image/png"] !== undefined) return `<img src="data:image/png;base64,${text(data["image/png"]).replace(/\s/g, "")}">`;
  if (data["text/markdown"] !== undefined) return `<div class="markdown">${markdown(text(data["text/markdown"]))}</div>`;
  if (data["application/json"] !== undefined) return `<pre>${escape(JSON.stringify(data["application/json"], null, 2))}</pre>`;
  if (data["text/plain"] !== undefined) return `<pre>${escape(text(data["text/plain"]))}</pre>`;
  return "";
}

function cell(c: NotebookCell, widgets: WidgetState | null): string {
  if (c.cell_type === "markdown") return `<section class="md">${markdown(text(c.source))}</section>`;
  if (c.cell_type !== "code") return `<pre>${escape(text(c.source))}</pre>`;
  const count = c.execution_count ?? " ";
  return `<section class="code"><div class="prompt">In [${count}]:</div><pre class="input">${escape(text(c.source))}</pre>${(c.outputs ?? []).map((o) => output(o, widgets)).join("\n")}</section>`;
}

export function notebookHtml(nb: Notebook, title: string): string {
  const run = nb.metadata.retromae_run as { started?: string; seconds?: number; failed_cell?: number | null } | undefined;
  const widgets = ((nb.metadata.widgets as Record<string, unknown> | undefined)?.[WIDGET_STATE_MIME] as WidgetState | undefined) ?? null;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}
pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:13px}
pre.input{border-left:3px solid #2563eb}
pre.stderr{background:#fff5f5}
pre.error{background:#fff0f0;color:#a00}
.prompt{color:#666;font:12px monospace;margin-top:1.2em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em}
</style></head><body>
<header><h1>${escape(title)}</h1><p>Run ${escape(run?.started ?? "")} in ${run?.seconds ?? "?"} s${run?.failed_cell ? `; <strong>cell ${run.failed_cell} failed</strong>` : ""}.</p></header>
${nb.cells.map((c) => cell(c, widgets)).join("\n")}
${widgets ? widgetScripts(widgets) : ""}
</body></html>
`;
}
