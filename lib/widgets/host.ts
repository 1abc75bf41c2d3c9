/**
 * The seam between widgets (lib) and whatever carries them to front ends
 * (the kernel), as lib/display.ts is for output: lib never imports the
 * kernel. The kernel installs a host that opens one `jupyter.widget` comm
 * per model; without one (a plain Node script, a test) widgets live on
 * their own, their state and observers working, nothing sent.
 */

/** Where binary buffers sit in a state: ["x"] or ["y", "z", 0]. */
export type BufferPath = (string | number)[];

/** What a model gives its host: its full state for a request_state or update_states, and what to do with messages. */
export interface HostedModel {
  /** The whole state, serialised: references as "IPY_MODEL_<id>", buffers pulled out at their paths. */
  fullState(): { state: Record<string, unknown>; bufferPaths: BufferPath[]; buffers: Uint8Array[] };
  /** A comm_msg from a front end (update, request_state, custom); `parent` is its header, for echo_update. */
  receive(data: Record<string, unknown>, buffers: Uint8Array[], parent: unknown): void;
  /** The front end closed the comm. */
  closedByFrontEnd(): void;
}

/** One model's end of its channel. */
export interface WidgetEndpoint {
  readonly id: string;
  /** A message to the front ends (update, echo_update, custom), optionally answering `parent`. */
  send(data: Record<string, unknown>, buffers?: Uint8Array[], parent?: unknown): void;
  close(): void;
}

export interface WidgetHost {
  /** Open the model on the front ends (comm_open with its state); returns its endpoint. */
  open(model: HostedModel): WidgetEndpoint;
  /** True when messages reach front ends (a kernel); false for the local host. */
  readonly connected: boolean;
}

let counter = 0;

/** No front end: ids are made here, messages go nowhere. */
export const localWidgetHost: WidgetHost = {
  connected: false,
  open(): WidgetEndpoint {
    const id = `local-${process.pid}-${++counter}`;
    return { id, send() {}, close() {} };
  },
};

let active: WidgetHost = localWidgetHost;

/** The kernel calls this once (tests may too). Returns the previous host. */
export function setWidgetHost(host: WidgetHost): WidgetHost {
  const previous = active;
  active = host;
  return previous;
}

export function widgetHost(): WidgetHost {
  return active;
}
