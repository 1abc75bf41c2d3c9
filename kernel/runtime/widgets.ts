/**
 * The kernel's widget host: lib's widgets (lib/widgets) reach the front
 * ends through comms (comms.ts), under the widget messaging protocol 2.1.0
 * (ipywidgets' packages/schema/messages.md):
 * - each model opens a comm to `jupyter.widget` with `{ state, buffer_paths }`
 *   and `metadata.version` 2.1.0, its buffers as the message's buffers;
 * - its comm_msg (update, request_state, custom) go to the model, which
 *   answers (echo_update with the front end's message as parent);
 * - `jupyter.widget.control`: `request_states` is answered with one
 *   `update_states` holding every model's state, buffers at
 *   [model id, ...path], so a front end restores all widgets in one round trip;
 * - a model a front end opens on `jupyter.widget` is kept with its state, so
 *   it answers request_state and appears in update_states.
 */
import type { Library } from "./bridge";
import { Comm, CommManager } from "./comms";

type HostedModel = Parameters<Library["setWidgetHost"]>[0] extends { open(m: infer M): unknown } ? M : never;
type BufferPath = (string | number)[];

export const WIDGET_TARGET = "jupyter.widget";
export const CONTROL_TARGET = "jupyter.widget.control";
export const WIDGET_PROTOCOL_VERSION = "2.1.0";

/** A model the front end created: its state, kept here, updated from its messages. */
class FrontEndModel implements HostedModel {
  constructor(
    private readonly comm: Comm,
    private state: Record<string, unknown>,
    private bufferPaths: BufferPath[],
    private buffers: Uint8Array[],
  ) {}
  fullState() {
    return { state: this.state, bufferPaths: this.bufferPaths, buffers: this.buffers };
  }
  receive(data: Record<string, unknown>, buffers: Uint8Array[], parent: unknown): void {
    if (data.method === "update" && data.state && typeof data.state === "object") {
      const paths = (Array.isArray(data.buffer_paths) ? data.buffer_paths : []) as BufferPath[];
      const changed = new Set(Object.keys(data.state));
      const keep = this.bufferPaths.map((p, i) => [p, this.buffers[i]] as const).filter(([p]) => !changed.has(String(p[0])));
      this.state = { ...this.state, ...(data.state as Record<string, unknown>) };
      this.bufferPaths = [...keep.map(([p]) => p), ...paths];
      this.buffers = [...keep.map(([, b]) => b), ...buffers];
      this.comm.send({ method: "echo_update", state: data.state, buffer_paths: paths }, {}, buffers, parent as never);
    } else if (data.method === "request_state") {
      this.comm.send({ method: "update", state: this.state, buffer_paths: this.bufferPaths }, {}, this.buffers, parent as never);
    }
  }
  closedByFrontEnd(): void {}
}

export class KernelWidgetHost {
  readonly connected = true;
  private readonly models = new Map<string, HostedModel>();

  constructor(private readonly comms: CommManager) {
    comms.register(CONTROL_TARGET, (comm) => {
      comm.onMsg((msg) => {
        if (msg.data.method === "request_states") this.sendStates(comm, msg.header);
      });
    });
    comms.register(WIDGET_TARGET, (comm, open) => {
      const state = (open.data.state && typeof open.data.state === "object" ? open.data.state : {}) as Record<string, unknown>;
      const model = new FrontEndModel(comm, state, (Array.isArray(open.data.buffer_paths) ? open.data.buffer_paths : []) as BufferPath[], open.buffers);
      this.adopt(comm, model);
    });
  }

  /** Open a lib widget on the front ends. */
  open(model: HostedModel): { id: string; send(data: Record<string, unknown>, buffers?: Uint8Array[], parent?: unknown): void; close(): void } {
    const full = model.fullState();
    const comm = this.comms.open(WIDGET_TARGET, { state: full.state, buffer_paths: full.bufferPaths }, { version: WIDGET_PROTOCOL_VERSION }, full.buffers);
    this.adopt(comm, model);
    return {
      id: comm.commId,
      send: (data, buffers = [], parent) => {
        if (!comm.isClosed) comm.send(data, {}, buffers, parent as never);
      },
      close: () => comm.close(),
    };
  }

  /** Every model's state, for update_states and saved notebooks. */
  states(): { states: Record<string, Record<string, unknown>>; bufferPaths: BufferPath[]; buffers: Uint8Array[] } {
    const states: Record<string, Record<string, unknown>> = {};
    const bufferPaths: BufferPath[] = [];
    const buffers: Uint8Array[] = [];
    for (const [id, m] of this.models) {
      const full = m.fullState();
      states[id] = full.state;
      full.bufferPaths.forEach((p, i) => {
        bufferPaths.push([id, ...p]);
        buffers.push(full.buffers[i]);
      });
    }
    return { states, bufferPaths, buffers };
  }

  private adopt(comm: Comm, model: HostedModel): void {
    this.models.set(comm.commId, model);
    comm.onMsg((msg) => model.receive(msg.data, msg.buffers, msg.header));
    comm.onClose(() => {
      this.models.delete(comm.commId);
      model.closedByFrontEnd();
    });
  }

  private sendStates(comm: Comm, parent: unknown): void {
    const { states, bufferPaths, buffers } = this.states();
    comm.send({ method: "update_states", states, buffer_paths: bufferPaths }, {}, buffers, parent as never);
  }
}
