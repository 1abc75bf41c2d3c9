/**
 * Rich output: display_data and update_display_data with display ids, the
 * `display` global cells call, and the display the library is given.
 *
 * A Plotly bundle gets a text/html fallback. The first one of the session
 * also carries plotly.js (the loader), so a saved notebook or its HTML
 * export draws offline. Updates of that output leave the loader out while a
 * cell runs (the page already has plotly.js), and the loader is put back
 * when the cell ends, so the saved output keeps it.
 */
import type { Display as LibDisplay, Displayable } from "./bridge";
import { Bundle, inspect, toBundle } from "./format";
import type { Metadata, Publish } from "../protocol/messages";
import { PLOTLY_MIME, plotlyFigureHtml, plotlyLoaderHtml } from "./plotly";

/** Display handles are not shown as a cell's result (display() already showed the value). */
export const NO_RESULT = Symbol("retromae.noResult");

interface Handle<T> {
  [NO_RESULT]: true;
  id: string;
  update(value: T): void;
}

type Figure = { data?: unknown[]; layout?: unknown; toJSON?: () => unknown };

export class DisplayPublisher {
  private counter = 0;
  private loader: { displayId: string | null; data: Bundle; metadata: Metadata; dirty: boolean } | null = null;

  constructor(
    private readonly publish: Publish,
    private readonly session: string,
  ) {}

  nextId(): string {
    return `${this.session}-d${++this.counter}`;
  }

  /** Send a bundle as display_data, or as update_display_data of an existing id. */
  send(bundle: Bundle, displayId: string | null, update = false, metadata: Metadata = {}): void {
    const data = { ...bundle };
    const fig = data[PLOTLY_MIME] as { data?: unknown; layout?: unknown } | undefined;
    let withLoader = false;
    if (fig && !("text/html" in data)) {
      data["text/html"] = plotlyFigureHtml(fig);
      if (!this.loader) {
        this.loader = { displayId, data, metadata, dirty: false };
        withLoader = true;
      } else if (displayId !== null && this.loader.displayId === displayId) {
        this.loader = { displayId, data, metadata, dirty: true };
      }
    }
    const sent = withLoader ? { ...data, "text/html": plotlyLoaderHtml() + data["text/html"] } : data;
    this.publish(update ? "update_display_data" : "display_data", { data: sent, metadata, transient: displayId ? { display_id: displayId } : {} });
  }

  /** A cell's result that is a Plotly figure is shown as display_data (it carries the loader's script). */
  isPlotly(bundle: Bundle): boolean {
    return PLOTLY_MIME in bundle && !("text/html" in bundle);
  }

  /** At the end of a cell: put plotly.js back into its output if an update left it out. */
  restoreLoader(): void {
    const l = this.loader;
    if (!l || !l.dirty || l.displayId === null) return;
    l.dirty = false;
    const data = { ...l.data, "text/html": plotlyLoaderHtml() + String(l.data["text/html"]) };
    this.publish("update_display_data", { data, metadata: l.metadata, transient: { display_id: l.displayId } });
  }

  /** The display the library shows LiveReport charts and progress bars through. */
  forLibrary(): LibDisplay {
    const bundleOf = (v: Displayable | Bundle): Bundle => (typeof (v as Displayable).toMimeBundle === "function" ? (v as Displayable).toMimeBundle() : (v as Bundle));
    return {
      show: (value) => {
        const id = this.nextId();
        this.send(bundleOf(value), id);
        return { update: (v) => this.send(bundleOf(v), id, true) };
      },
    };
  }

  /** The `display` global of cells: display(value) and its html, markdown, json, png, svg, plotly and bundle forms. */
  cellApi() {
    const show = (bundle: Bundle | null, id?: string, metadata: Metadata = {}): Handle<unknown> => {
      const displayId = id ?? this.nextId();
      if (bundle) this.send(bundle, displayId, false, metadata);
      return {
        [NO_RESULT]: true,
        id: displayId,
        update: (value: unknown) => {
          const b = toBundle(value);
          if (b) this.send(b, displayId, true);
        },
      };
    };
    const display = (value: unknown, options: { id?: string } = {}) => show(toBundle(value), options.id);
    const kind =
      (mime: string, toText: (v: string) => string) =>
      (value: string): Handle<string> => {
        const h = show({ [mime]: value, "text/plain": toText(value) });
        return { [NO_RESULT]: true, id: h.id, update: (v: string) => this.send({ [mime]: v, "text/plain": toText(v) }, h.id, true) };
      };
    return Object.assign(display, {
      html: kind("text/html", () => "<HTML>"),
      markdown: kind("text/markdown", (v) => v),
      svg: kind("image/svg+xml", () => "<SVG image>"),
      json: (value: unknown) => show({ "application/json": value, "text/plain": inspect(value) }),
      png: (data: Uint8Array | string, options: { width?: number; height?: number } = {}) => {
        const b64 = typeof data === "string" ? data : Buffer.from(data).toString("base64");
        const size = Object.fromEntries(Object.entries(options).filter(([k, v]) => (k === "width" || k === "height") && typeof v === "number"));
        return show({ "image/png": b64, "text/plain": "<PNG image>" }, undefined, Object.keys(size).length ? { "image/png": size } : {});
      },
      plotly: (figure: Figure): Handle<Figure> => {
        const spec = (typeof figure.toJSON === "function" ? figure.toJSON() : figure) as Figure;
        if (!spec || !Array.isArray(spec.data)) throw new TypeError("display.plotly needs a figure with a data array, e.g. { data: [{ y: [1, 2, 3] }], layout: {} }.");
        const bundle = { [PLOTLY_MIME]: spec, "text/plain": `Plotly figure (${spec.data.length} trace${spec.data.length === 1 ? "" : "s"})` };
        const h = show(bundle);
        return { [NO_RESULT]: true, id: h.id, update: (f: Figure) => this.send({ ...bundle, [PLOTLY_MIME]: typeof f.toJSON === "function" ? f.toJSON() : f }, h.id, true) };
      },
      bundle: (b: Bundle) => show(b),
    });
  }
}
