/**
 * The widget state a notebook keeps, as nbclient keeps it: the runner
 * watches the `jupyter.widget` comms on iopub (comm_open, update and
 * echo_update, comm_close) and writes the live models into
 * metadata.widgets["application/vnd.jupyter.widget-state+json"], binary
 * buffers base64 at their paths. The HTML report renders them offline with
 * the embed manager (@jupyter-widgets/html-manager's embed.js, vendored in
 * runner/assets, gzipped, decompressed in the page as plotly.js is).
 */
import * as fs from "fs";
import * as path from "path";
import type { Message } from "../kernel/protocol/wire";

export const WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json";
export const WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json";

type BufferPath = (string | number)[];

interface SavedModel {
  model_name: string;
  model_module: string;
  model_module_version: string;
  state: Record<string, unknown>;
  buffers?: { encoding: "base64"; path: BufferPath; data: string }[];
}

export interface WidgetState {
  version_major: 2;
  version_minor: 0;
  state: Record<string, SavedModel>;
}

export class WidgetStateCollector {
  private readonly models = new Map<string, { model: SavedModel; buffers: Map<string, { path: BufferPath; data: string }> }>();

  /** One iopub message (any kind; only widget comms count). */
  apply(m: Message): void {
    const type = m.header.msg_type;
    const c = m.content as Record<string, unknown>;
    const id = String(c.comm_id ?? "");
    if (type === "comm_open" && c.target_name === "jupyter.widget") {
      const data = (c.data ?? {}) as { state?: Record<string, unknown>; buffer_paths?: BufferPath[] };
      const state = { ...(data.state ?? {}) };
      const model: SavedModel = {
        model_name: String(state._model_name ?? ""),
        model_module: String(state._model_module ?? ""),
        model_module_version: String(state._model_module_version ?? ""),
        state,
      };
      this.models.set(id, { model, buffers: new Map() });
      this.merge(id, {}, data.buffer_paths ?? [], m.buffers);
    } else if (type === "comm_msg" && this.models.has(id)) {
      const data = (c.data ?? {}) as { method?: string; state?: Record<string, unknown>; buffer_paths?: BufferPath[] };
      if (data.method === "update" || data.method === "echo_update") this.merge(id, data.state ?? {}, data.buffer_paths ?? [], m.buffers);
    } else if (type === "comm_close") {
      this.models.delete(id);
    }
  }

  private merge(id: string, state: Record<string, unknown>, paths: BufferPath[], buffers: Buffer[] | Uint8Array[] = []): void {
    const entry = this.models.get(id)!;
    Object.assign(entry.model.state, state);
    // a key set again replaces the buffers under it
    for (const key of Object.keys(state)) for (const k of [...entry.buffers.keys()]) if (JSON.parse(k)[0] === key) entry.buffers.delete(k);
    paths.forEach((p, i) => {
      if (i < buffers.length) entry.buffers.set(JSON.stringify(p), { path: p, data: Buffer.from(buffers[i] as Uint8Array).toString("base64") });
    });
  }

  /** The notebook metadata value, or null when no widget is live. */
  state(): WidgetState | null {
    if (this.models.size === 0) return null;
    const state: Record<string, SavedModel> = {};
    for (const [id, { model, buffers }] of this.models) state[id] = buffers.size ? { ...model, buffers: [...buffers.values()].map((b) => ({ encoding: "base64", ...b })) } : model;
    return { version_major: 2, version_minor: 0, state };
  }
}

const ASSETS = path.join(__dirname, "..", "..", "runner", "assets");
const assetsDir = (): string => {
  // from source (runner/) or from the build (dist/runner/): the assets stay in runner/assets
  for (const d of [path.join(__dirname, "assets"), ASSETS]) if (fs.existsSync(d)) return d;
  throw new Error(`The widget embed manager is missing (no runner/assets beside ${__dirname}); reinstall the package.`);
};

/** The vendored embed manager, gzipped and base64: its version and data. */
export function embedManager(): { version: string; gzipBase64: string } {
  const dir = assetsDir();
  const file = fs.readdirSync(dir).find((f) => /^html-manager-.*\.embed\.js\.gz$/.test(f));
  if (!file) throw new Error(`No html-manager embed.js in ${dir}; run node scripts/vendor-widgets-embed.js.`);
  return { version: file.replace(/^html-manager-|\.embed\.js\.gz$/g, ""), gzipBase64: fs.readFileSync(path.join(dir, file)).toString("base64") };
}

/** JSON inside a <script> element: "</" cannot end it early. */
export const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/<\//g, "<\\/");

/** The end of a report's body: the saved state, and the embed manager that renders every widget view from it. */
export function widgetScripts(state: WidgetState): string {
  const { version, gzipBase64 } = embedManager();
  return `<script type="${WIDGET_STATE_MIME}">${scriptJson(state)}</script>
<script>/* @jupyter-widgets/html-manager ${version} embed.js, gzipped */
(async () => {
  const bytes = Uint8Array.from(atob("${gzipBase64}"), (c) => c.charCodeAt(0));
  const js = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  // from a blob: URL, so webpack finds its public path (document.currentScript.src)
  const s = document.createElement("script");
  s.src = URL.createObjectURL(new Blob([js], { type: "text/javascript" }));
  // the embed manager renders on window load: when the page has loaded already, tell it again
  s.onload = () => {
    if (document.readyState === "complete") window.dispatchEvent(new Event("load"));
  };
  document.head.appendChild(s);
})();
</script>`;
}
