/**
 * The display seam (DESIGN.md): lib shows rich output through this small
 * interface and never knows where it goes. Inside a notebook the kernel
 * installs a Display that sends display_data / update_display_data; in a
 * plain Node script the default prints the text/plain form.
 */
import { escapeHtml } from "./util/html";

/** A Jupyter MIME bundle: mime type -> data. */
export type MimeBundle = Record<string, unknown>;

/** Anything that can render itself as a MIME bundle. */
export interface Displayable {
  toMimeBundle(): MimeBundle;
}

/** Deno's and the kernel's hook for rich output. */
export const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");

export interface DisplayHandle {
  /** Replace what this handle shows (update_display_data in a notebook). */
  update(value: Displayable | MimeBundle): void;
}

export interface Display {
  show(value: Displayable | MimeBundle): DisplayHandle;
}

export function toBundle(value: Displayable | MimeBundle): MimeBundle {
  return typeof (value as Displayable).toMimeBundle === "function" ? (value as Displayable).toMimeBundle() : (value as MimeBundle);
}

/** Outside a notebook: print text/plain (updates print again). */
export const terminalDisplay: Display = {
  show(value) {
    const print = (v: Displayable | MimeBundle) => {
      const text = toBundle(v)["text/plain"];
      process.stdout.write(`${typeof text === "string" ? text : JSON.stringify(text)}\n`);
    };
    print(value);
    return { update: print };
  },
};

let active: Display = terminalDisplay;

/** The kernel calls this once; tests may too. Returns the previous display. */
export function setDisplay(display: Display): Display {
  const previous = active;
  active = display;
  return previous;
}

/**
 * Several displayables in one output, side by side in a notebook (they wrap
 * on a narrow page), one after another as text; each under its title.
 */
export function sideBySide(items: readonly { title: string; value: Displayable | MimeBundle }[]): Displayable {
  const text = (b: MimeBundle) => (typeof b["text/plain"] === "string" ? (b["text/plain"] as string) : JSON.stringify(b["text/plain"] ?? ""));
  const html = (b: MimeBundle) => (typeof b["text/html"] === "string" ? (b["text/html"] as string) : `<pre>${escapeHtml(text(b))}</pre>`);
  const bundle = (): MimeBundle => {
    const parts = items.map((i) => ({ title: i.title, bundle: toBundle(i.value) }));
    return {
      "text/html": `<div style="display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start">${parts.map((p) => `<div><div style="font-weight:bold;margin-bottom:4px">${escapeHtml(p.title)}</div>${html(p.bundle)}</div>`).join("")}</div>`,
      "text/plain": parts.map((p) => `${p.title}\n${text(p.bundle)}`).join("\n\n"),
    };
  };
  return { toMimeBundle: bundle, [JUPYTER_DISPLAY]: bundle } as Displayable;
}

export function display(value: Displayable | MimeBundle): DisplayHandle {
  return active.show(value);
}

/** True when output goes to a terminal rather than a notebook front end. */
export function isTerminal(): boolean {
  return active === terminalDisplay;
}
