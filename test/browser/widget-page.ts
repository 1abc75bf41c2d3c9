/**
 * A page for test/browser/widgets.test.ts: the widget manager JupyterLab
 * uses (@jupyter-widgets/jupyterlab-manager 5's KernelWidgetManager, with
 * @jupyter-widgets/base 6 and controls 5) on a live kernel, reached through
 * @jupyterlab/services 7 and a real Jupyter server. Bundled by esbuild when
 * the test runs. The test drives it through `window.widgetPage`.
 */
import { KernelManager, ServerConnection, KernelMessage, Kernel } from "@jupyterlab/services";
import { KernelWidgetManager } from "@jupyter-widgets/jupyterlab-manager";
import { RenderMimeRegistry, standardRendererFactories } from "@jupyterlab/rendermime";
import * as base from "@jupyter-widgets/base";
import * as controls from "@jupyter-widgets/controls";
import { Widget } from "@lumino/widgets";
import "@jupyter-widgets/controls/css/widgets-base.css";
import { anywidgetModule } from "./anywidget-shim";
// plotly.js-dist has no types; the page calls Plotly.react only
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Plotly = require("plotly.js-dist") as { react(el: HTMLElement, data: unknown[], layout: unknown): Promise<unknown> };
import "anywidget";

interface Seen {
  type: string;
  method?: string;
  parent?: string;
  state?: unknown;
  buffers?: number[][];
  content?: unknown;
}

const seen: Seen[] = [];
const sent: { id: string; data: unknown }[] = [];
const customs: { model: string; content: unknown; buffers: number[][] }[] = [];
let kernel: Kernel.IKernelConnection;
let manager: KernelWidgetManager;

async function start(baseUrl: string, token: string, kernelName: string): Promise<string> {
  const serverSettings = ServerConnection.makeSettings({ baseUrl, wsUrl: baseUrl.replace(/^http/, "ws"), token, appendToken: true });
  kernel = await new KernelManager({ serverSettings }).startNew({ name: kernelName });
  const rendermime = new RenderMimeRegistry({ initialFactories: standardRendererFactories });
  manager = new KernelWidgetManager(kernel, rendermime);
  manager.register({ name: "@jupyter-widgets/base", version: base.JUPYTER_WIDGETS_VERSION, exports: base as never });
  manager.register({ name: "@jupyter-widgets/controls", version: controls.JUPYTER_CONTROLS_VERSION, exports: controls as never });
  manager.register({ name: "anywidget", version: "0.11.0", exports: anywidgetModule.exports as never });
  // the page's own comm messages, to match the kernel's echoes to them
  kernel.anyMessage.connect((_, args) => {
    if (args.direction === "send" && args.msg.header.msg_type === "comm_msg") sent.push({ id: args.msg.header.msg_id, data: (args.msg.content as { data: unknown }).data });
  });
  // every comm message the page gets, to check echoes and buffers
  kernel.iopubMessage.connect((_, msg) => {
    if (msg.header.msg_type !== "comm_msg") return;
    const c = msg.content as { data: { method?: string; state?: unknown; content?: unknown } };
    seen.push({ type: "comm_msg", method: c.data.method, parent: (msg.parent_header as { msg_id?: string }).msg_id, state: c.data.state, content: c.data.content, buffers: (msg.buffers ?? []).map((b) => Array.from(new Uint8Array((b as ArrayBufferView).buffer ?? (b as ArrayBuffer)))) });
  });
  await kernel.info;
  return kernel.id;
}

/** Run code; show each widget view it displays in #area; resolve with the reply status and the text results. */
async function run(code: string): Promise<{ status: string; results: string[] }> {
  const future = kernel.requestExecute({ code });
  const results: string[] = [];
  const shown: Promise<void>[] = [];
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    if (KernelMessage.isDisplayDataMsg(msg) || KernelMessage.isExecuteResultMsg(msg) || type === "update_display_data") {
      const content = msg.content as { data: Record<string, unknown>; transient?: { display_id?: string } };
      const data = content.data;
      const view = data["application/vnd.jupyter.widget-view+json"] as { model_id: string } | undefined;
      if (view) shown.push(show(view.model_id));
      else if (data[PLOTLY] || (typeof data["text/html"] === "string" && content.transient?.display_id)) output(content.transient?.display_id ?? String(Math.random()), data);
      else if (typeof data["text/plain"] === "string") results.push(data["text/plain"] as string);
    }
  };
  const reply = await future.done;
  await Promise.all(shown);
  return { status: reply.content.status, results };
}

const listening = new Set<string>();

/** Record the custom messages the kernel sends to a model (once per model). */
async function listen(modelId: string): Promise<void> {
  if (listening.has(modelId)) return;
  listening.add(modelId);
  const model = await manager.get_model(modelId);
  model.on("msg:custom", (content: unknown, buffers: (ArrayBuffer | DataView)[]) => {
    customs.push({ model: modelId, content, buffers: (buffers ?? []).map((b) => Array.from(new Uint8Array(b instanceof DataView ? b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) : b))) });
  });
}

const PLOTLY = "application/vnd.plotly.v1+json";
const outputs = new Map<string, HTMLElement>();

/** Rich output a notebook shows beside the widgets: a Plotly chart (drawn and updated in place) or HTML (the progress bar). */
function output(displayId: string, data: Record<string, unknown>): void {
  let el = outputs.get(displayId);
  if (!el) {
    el = document.createElement("div");
    el.className = "output";
    document.getElementById("outputs")!.appendChild(el);
    outputs.set(displayId, el);
  }
  const fig = data[PLOTLY] as { data: unknown[]; layout: Record<string, unknown> } | undefined;
  if (fig) void Plotly.react(el, fig.data, { ...fig.layout, width: 640 });
  else el.innerHTML = data["text/html"] as string;
}

const shownModels = new Set<string>();

/** One view per model in this page (the test reads each widget's single view). */
async function show(modelId: string): Promise<void> {
  if (shownModels.has(modelId)) return;
  shownModels.add(modelId);
  await listen(modelId);
  const model = await manager.get_model(modelId);
  const view = await manager.create_view(model);
  const holder = document.createElement("div");
  holder.dataset.modelId = modelId;
  document.getElementById("area")!.appendChild(holder);
  Widget.attach(view.luminoWidget, holder);
}

/** A custom message with buffers from the page to a model's kernel side (what a view's model.send does). */
async function sendCustom(modelId: string, content: unknown, buffers: number[][]): Promise<void> {
  await listen(modelId);
  const model = await manager.get_model(modelId);
  model.send(content as never, {}, buffers.map((b) => new Uint8Array(b).buffer));
}

/** The page's own value of a model attribute. */
async function get(modelId: string, name: string): Promise<unknown> {
  return (await manager.get_model(modelId)).get(name);
}

/** Start a cell without waiting for it (a long fit the page steers); `run` waits. */
function launch(code: string): void {
  void run(code).then((r) => (launched.push(r), r));
}
const launched: { status: string; results: string[] }[] = [];

(window as unknown as { widgetPage: unknown }).widgetPage = { start, run, launch, launched, sendCustom, get, seen, sent, customs };
