/**
 * The display seam (DESIGN.md): lib shows rich output through this small
 * interface and never knows where it goes. Inside a notebook the kernel
 * installs a Display that sends display_data / update_display_data; in a
 * plain Node script the default prints the text/plain form.
 */

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

export function display(value: Displayable | MimeBundle): DisplayHandle {
  return active.show(value);
}

/** True when output goes to a terminal rather than a notebook front end. */
export function isTerminal(): boolean {
  return active === terminalDisplay;
}
