/// <reference types="@webgpu/types" />
/**
 * Record a step's GPU commands once, replay them for the next batches.
 *
 * Issuing a training step through tfjs costs the host about 60 µs per
 * dispatch (tfjs's ops and tape, shader keys, uniforms, a bind group each,
 * Dawn's validation): some 25 ms a step for a tiny model, five times
 * PyTorch's own host cost, and more than the GPU needs for the work. For a
 * step whose shapes do not change, the commands do not change either: the
 * same pipelines, on the same buffers, with the same uniforms. Only the
 * batch's data does. This is what CUDA graphs do for PyTorch.
 *
 * `recordCommands(fn, { inputs, state })` runs `fn` (tfjs ops) while every
 * WebGPU call it makes is captured: writes to buffers (uniforms, uploads),
 * bind groups, dispatches and copies, in queue order. `StepReplay.build`
 * compares two such recordings of consecutive steps, and accepts them only
 * if everything but the declared inputs is the same: the pipelines, the
 * dispatch sizes, the bindings' offsets and sizes, every uniform's bytes,
 * every other upload's bytes, and the state tensors' buffers (weights and
 * optimizer moments, updated in place). It then holds the second
 * recording's buffers, with every uniform in one buffer and every upload
 * copied from one buffer, bind groups made once. `run(inputs)` writes the
 * new inputs and encodes the whole step in one command buffer: three calls
 * per dispatch, with none of tfjs's work.
 *
 * What the step keeps between runs is its own: the buffers tfjs had
 * released to its pool are taken out of it, and those of the outputs are
 * kept when tfjs releases them. `dispose()` gives everything back.
 *
 * A recording is refused, with the reason, when the step reads the GPU,
 * uses anything but buffers and compute passes, keeps a tensor it made
 * alive besides its outputs, or reads a buffer that existed before it and
 * is not one of the state tensors'. Nothing is ever replayed that the
 * comparison did not check. While recording, tfjs's CPU forwarding of
 * small ops is off: it computes on the host from the inputs and uploads
 * the result, which a replay could not redo.
 *
 * `StepRecorder` is the policy a trainer uses: record, compare, replay,
 * record again when the step's key changes or a state tensor was replaced.
 *
 * This reaches into tfjs-backend-webgpu 4.22 (its pool, command encoder
 * and upload), pinned, as ./optimizer.ts and ./pool.ts do.
 */
import * as tf from "../tf";
import { copyInPlaceWebGPU } from "./optimizer";
import { deviceTensor, rawBackend, RawBackend, rawDispatchLabel } from "./raw";
import { takeFromPool } from "./pool";

function backendOf(): RawBackend {
  const b = rawBackend();
  if (!b) throw new Error("Recorded steps need the webgpu backend (tfjs-backend-webgpu 4.22); call backend.use(\"webgpu\") first.");
  return b;
}

/** Submit whatever tfjs has encoded, so a recording or a replay starts on an empty encoder. */
function flush(b: RawBackend): void {
  b.endComputePassEncoder();
  if (b.commandEncoder) b.submitQueue();
}

/** A binding of a buffer range. */
interface Binding {
  binding: number;
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** Bytes written to a buffer by the host; `input` when they are one of the declared inputs. */
interface Write {
  buffer: GPUBuffer;
  offset: number;
  bytes: Uint8Array;
  input?: number;
  /** Where the upload was made (its stack, formatted only for a refusal's reason: callerOf). */
  from?: Error;
}

/**
 * What a dispatch ran: one of tfjs's programs (its shader key, its inputs'
 * and output's shapes, and for a matmul its floating-point operations), or
 * one of this project's raw shaders (its pipeline's label).
 */
export interface KernelLabel {
  kernel: string;
  inputs?: number[][];
  output?: number[];
  /** 2·M·N·K for a matmul program, else absent. */
  flops?: number;
}

/** A tfjs program's label, as runWebGPUProgram is given it (this project's programs may state their `flops`). */
function programLabel(program: { shaderKey?: string; outputShape?: number[]; flops?: number }, inputs: { shape: number[] }[]): KernelLabel {
  const kernel = String(program.shaderKey ?? "unnamed program");
  const output = [...(program.outputShape ?? [])];
  const shapes = inputs.map((t) => [...t.shape]);
  const label: KernelLabel = { kernel, inputs: shapes, output };
  // tfjs's matmul programs take a as [batch, M, K] or [batch, K, M] and write [batch, M, N]
  const a = shapes[0];
  if (typeof program.flops === "number") label.flops = program.flops;
  else if (/^matMul/.test(kernel) && a?.length === 3 && output.length === 3 && a[0] * output[1] > 0) {
    label.flops = (2 * output.reduce((x, y) => x * y, 1) * a.reduce((x, y) => x * y, 1)) / (a[0] * output[1]);
  }
  return label;
}

type Command =
  | { kind: "dispatch"; pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; bindings: Binding[]; x: number; y: number; z: number; label: KernelLabel }
  | { kind: "copy"; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  /** A copy from a staging buffer the host filled: the bytes, in stream order. */
  | { kind: "upload"; bytes: Uint8Array; input?: number; from?: Error; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: "clear"; buffer: GPUBuffer; offset: number; size: number };

/**
 * One submitted command buffer: the host's writes issued while it was being
 * encoded (the queue applies them before it runs), then its commands.
 */
interface Block {
  writes: Write[];
  commands: Command[];
}

/** What a recording captured. */
export interface Recording<T> {
  /** What fn returned (its tensors are the recorded step's outputs). */
  result: T;
  blocks: Block[];
  /** Why it cannot be replayed, or null. */
  refused: string | null;
  /** Outputs: their buffers, shapes and dtypes. */
  outputs: { buffer: GPUBuffer; size: number; shape: number[]; dtype: tf.DataType }[];
  /** State tensors and their buffers when recorded. */
  state: { dataId: object; buffer: GPUBuffer }[];
  /** Buffers the pool handed out, or the device made, during the recording. */
  acquired: Set<GPUBuffer>;
  /** The declared inputs' dtypes and byte lengths. */
  inputs: { dtype: string; bytes: number }[];
}

export interface RecordOptions {
  /** Host arrays the step uploads (tensors made from them, the same objects) and whose values change from step to step. */
  inputs?: readonly ArrayBufferView[];
  /**
   * Tensors that exist before the step and that it reads or updates in place
   * (weights, optimizer moments). Those still on the host after the step
   * (none of its commands read them) are left out of the recording.
   */
  state?: readonly tf.Tensor[];
}

function bytesOf(data: ArrayBuffer | ArrayBufferView, offset = 0, size?: number): Uint8Array {
  if (ArrayBuffer.isView(data)) {
    const per = (data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    const start = data.byteOffset + offset * per;
    const length = size !== undefined ? size * per : data.byteLength - offset * per;
    return new Uint8Array(data.buffer.slice(start, start + length));
  }
  const ab = data as ArrayBuffer;
  return new Uint8Array(ab.slice(offset, size !== undefined ? offset + size : undefined));
}

/** The bytes tfjs uploads for an input array of a dtype (bool goes up as int32). */
function inputBytes(values: ArrayBufferView, dtype: string): Uint8Array {
  if (dtype === "bool" && !(values instanceof Int32Array)) return new Uint8Array(Int32Array.from(values as unknown as ArrayLike<number>).buffer);
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

const outputTensors = (result: unknown): tf.Tensor[] =>
  result instanceof tf.Tensor ? [result] : Array.isArray(result) ? (result.filter((t) => t instanceof tf.Tensor) as tf.Tensor[]) : result && typeof result === "object" ? (Object.values(result).filter((t) => t instanceof tf.Tensor) as tf.Tensor[]) : [];

/**
 * Run fn, capturing every WebGPU command it issues. fn's tensors (returned
 * directly, in an array, or as an object's values) are the outputs; it must
 * dispose everything else it makes (run it in a tidy).
 */
export function recordCommands<T>(fn: () => T, options: RecordOptions = {}): Recording<T> {
  const b = backendOf();
  const device = b.device;
  flush(b);
  const inputIndex = new Map<unknown, number>();
  (options.inputs ?? []).forEach((a, i) => inputIndex.set(a, i));
  const inputDtypes: string[] = [];
  const blocks: Block[] = [{ writes: [], commands: [] }];
  const acquired = new Set<GPUBuffer>();
  const staged = new Map<GPUBuffer, { bytes: Uint8Array; input?: number; from?: Error }>();
  const groups = new WeakMap<GPUBindGroup, { layout: GPUBindGroupLayout; bindings: Binding[] }>();
  let refused: string | null = null;
  const refuse = (why: string) => {
    refused ??= why;
  };
  const current = () => blocks[blocks.length - 1];

  // what the running upload is: a declared input's index, or none
  let uploading: { input?: number; from?: Error } | null = null;
  const mapped = new Map<GPUBuffer, ArrayBuffer>();
  const pass = { pipeline: null as GPUComputePipeline | null, group: null as GPUBindGroup | null };
  // the tfjs program being run, if any: the label of the dispatch it makes
  let program: KernelLabel | null = null;

  const encoder = device.createCommandEncoder();
  const passEncoder = encoder.beginComputePass();
  const encoderProto = Object.getPrototypeOf(encoder) as GPUCommandEncoder;
  const passProto = Object.getPrototypeOf(passEncoder) as GPUComputePassEncoder;
  passEncoder.end();
  encoder.finish();
  const queueProto = Object.getPrototypeOf(device.queue) as GPUQueue;
  const deviceProto = Object.getPrototypeOf(device) as GPUDevice;
  const bufferProto = GPUBuffer.prototype;

  const patches: [object, string, unknown][] = [];
  const patch = <O extends object>(target: O, name: string, wrap: (original: (...args: unknown[]) => unknown) => (...args: unknown[]) => unknown) => {
    const original = (target as Record<string, unknown>)[name] as (...args: unknown[]) => unknown;
    patches.push([target, name, original]);
    (target as Record<string, unknown>)[name] = wrap(original);
  };

  /** Calls that a replayable step never makes: each one refuses the recording. */
  const refusing = (target: object, name: string, why: string) =>
    patch(target, name, (orig) =>
      function (this: unknown, ...args: unknown[]) {
        refuse(why);
        return orig.apply(this, args);
      },
    );
  // the buffers the step gets, from the device or from tfjs's pool
  for (const [target, name] of [[deviceProto, "createBuffer"], [b.bufferManager, "acquireBuffer"]] as const) {
    patch(target, name, (orig) =>
      function (this: unknown, ...args: unknown[]) {
        const buffer = orig.apply(this, args) as GPUBuffer;
        acquired.add(buffer);
        return buffer;
      },
    );
  }
  patch(deviceProto, "createBindGroup", (orig) =>
    function (this: GPUDevice, ...args: unknown[]) {
      const desc = args[0] as GPUBindGroupDescriptor;
      const group = orig.apply(this, args) as GPUBindGroup;
      const bindings: Binding[] = [];
      for (const e of desc.entries as Iterable<GPUBindGroupEntry>) {
        const r = e.resource as GPUBufferBinding;
        if (!r || !(r.buffer instanceof GPUBuffer)) {
          refuse("a step binds something other than a buffer");
          continue;
        }
        const offset = r.offset ?? 0;
        bindings.push({ binding: e.binding, buffer: r.buffer, offset, size: r.size ?? r.buffer.size - offset });
      }
      groups.set(group, { layout: desc.layout, bindings });
      return group;
    },
  );
  patch(queueProto, "writeBuffer", (orig) =>
    function (this: GPUQueue, ...args: unknown[]) {
      const [buffer, offset, data, dataOffset, size] = args as [GPUBuffer, number, ArrayBuffer | ArrayBufferView, number | undefined, number | undefined];
      current().writes.push({ buffer, offset, bytes: bytesOf(data, dataOffset ?? 0, size) });
      return orig.apply(this, args);
    },
  );
  patch(queueProto, "submit", (orig) =>
    function (this: GPUQueue, ...args: unknown[]) {
      blocks.push({ writes: [], commands: [] });
      return orig.apply(this, args);
    },
  );
  for (const name of ["writeTexture", "copyExternalImageToTexture"]) refusing(queueProto, name, `a step calls queue.${name}`);
  patch(bufferProto, "getMappedRange", (orig) =>
    function (this: GPUBuffer, ...args: unknown[]) {
      const range = orig.apply(this, args) as ArrayBuffer;
      if (args.length > 0 && (args[0] as number) !== 0) refuse("a step maps part of a buffer");
      mapped.set(this, range);
      return range;
    },
  );
  patch(bufferProto, "unmap", (orig) =>
    function (this: GPUBuffer, ...args: unknown[]) {
      const range = mapped.get(this);
      if (range) {
        const bytes = new Uint8Array(range.slice(0));
        const { input, from } = uploading ?? {};
        if (this.usage & GPUBufferUsage.MAP_WRITE) staged.set(this, { bytes, input, from });
        else if (isUniform(this)) current().writes.push({ buffer: this, offset: 0, bytes, input, from });
        // A buffer mapped at creation (tfjs uploads into a new buffer so, and into a pooled one through a
        // staging copy): an upload where it happens, just before the dispatch that reads it, as the staged
        // path's copy is. So a step that found a free buffer and one that had to make it record alike.
        else current().commands.push({ kind: "upload", bytes, input, from, dst: this, dstOffset: 0, size: bytes.byteLength });
        mapped.delete(this);
      }
      return orig.apply(this, args);
    },
  );
  refusing(bufferProto, "mapAsync", "a step reads the GPU (mapAsync)");
  patch(encoderProto, "copyBufferToBuffer", (orig) =>
    function (this: GPUCommandEncoder, ...args: unknown[]) {
      const [src, srcOffset, dst, dstOffset, size] = args as [GPUBuffer, number, GPUBuffer, number, number];
      const s = staged.get(src);
      if (s) current().commands.push({ kind: "upload", bytes: s.bytes.slice(srcOffset, srcOffset + size), input: s.input, from: s.from, dst, dstOffset, size });
      else current().commands.push({ kind: "copy", src, srcOffset, dst, dstOffset, size });
      return orig.apply(this, args);
    },
  );
  patch(encoderProto, "clearBuffer", (orig) =>
    function (this: GPUCommandEncoder, ...args: unknown[]) {
      const [buffer, offset, size] = args as [GPUBuffer, number | undefined, number | undefined];
      current().commands.push({ kind: "clear", buffer, offset: offset ?? 0, size: size ?? buffer.size - (offset ?? 0) });
      return orig.apply(this, args);
    },
  );
  for (const name of ["beginRenderPass", "copyBufferToTexture", "copyTextureToBuffer", "copyTextureToTexture", "resolveQuerySet", "writeTimestamp"]) {
    refusing(encoderProto, name, `a step calls ${name}`);
  }
  patch(passProto, "setPipeline", (orig) =>
    function (this: GPUComputePassEncoder, ...args: unknown[]) {
      pass.pipeline = args[0] as GPUComputePipeline;
      return orig.apply(this, args);
    },
  );
  patch(passProto, "setBindGroup", (orig) =>
    function (this: GPUComputePassEncoder, ...args: unknown[]) {
      if (args[0] !== 0 || (args.length > 2 && args[2] != null && (args[2] as ArrayLike<number>).length > 0)) refuse("a step uses a bind group other than group 0, or dynamic offsets");
      pass.group = args[1] as GPUBindGroup;
      return orig.apply(this, args);
    },
  );
  patch(passProto, "dispatchWorkgroups", (orig) =>
    function (this: GPUComputePassEncoder, ...args: unknown[]) {
      const [x, y, z] = args as [number, number | undefined, number | undefined];
      const group = pass.group ? groups.get(pass.group) : undefined;
      if (!pass.pipeline || !group) refuse("a step dispatches with a pipeline or bind group made before the recording");
      else {
        const label = program ?? rawDispatchLabel() ?? { kernel: pass.pipeline.label || "unlabelled shader" };
        current().commands.push({ kind: "dispatch", pipeline: pass.pipeline, layout: group.layout, bindings: group.bindings, x, y: y ?? 1, z: z ?? 1, label });
      }
      return orig.apply(this, args);
    },
  );
  refusing(passProto, "dispatchWorkgroupsIndirect", "a step dispatches indirectly");
  patch(b, "runWebGPUProgram", (orig) =>
    function (this: RawBackend, ...args: unknown[]) {
      const outer = program;
      program = programLabel(args[0] as { shaderKey?: string; outputShape?: number[] }, (args[1] ?? []) as { shape: number[] }[]);
      try {
        return orig.apply(this, args);
      } finally {
        program = outer;
      }
    },
  );
  patch(b, "uploadToGPU", (orig) =>
    function (this: RawBackend, ...args: unknown[]) {
      const data = b.tensorMap.get(args[0] as object);
      const input = data && data.resource == null && data.values != null ? inputIndex.get(data.values) : undefined;
      if (input !== undefined) inputDtypes[input] = data!.dtype;
      uploading = { input, from: input === undefined ? deepStack() : undefined };
      try {
        return orig.apply(this, args);
      } finally {
        uploading = null;
      }
    },
  );

  const tensorsBefore = tf.memory().numTensors;
  let result: T;
  try {
    result = withoutCpuForwarding(fn);
    flush(b);
  } finally {
    for (let i = patches.length - 1; i >= 0; i--) {
      const [target, name, original] = patches[i];
      (target as Record<string, unknown>)[name] = original;
    }
  }
  if (blocks[blocks.length - 1].writes.length === 0 && blocks[blocks.length - 1].commands.length === 0) blocks.pop();

  const outputs: Recording<T>["outputs"] = [];
  for (const t of outputTensors(result)) {
    const data = b.tensorMap.get(t.dataId);
    if (!data || !(data.resource instanceof GPUBuffer)) {
      refuse("an output of the step is not on the GPU");
      continue;
    }
    outputs.push({ buffer: data.resource, size: data.resource.size, shape: t.shape, dtype: t.dtype });
  }
  const made = tf.memory().numTensors - tensorsBefore;
  if (made !== outputs.length) refuse(`the step left ${made} new tensors alive and returned ${outputs.length}; dispose everything but the outputs`);
  // A state tensor still on the host after the step was read by none of its commands (tfjs uploads a
  // tensor a program reads): not the step's state (MLM-only's decoder weights' moments, never updated).
  const state = (options.state ?? []).flatMap((t) => {
    const data = b.tensorMap.get(t.dataId);
    return data?.resource instanceof GPUBuffer ? [{ dataId: t.dataId as object, buffer: data.resource }] : [];
  });
  const inputs = (options.inputs ?? []).map((a, i) => ({ dtype: inputDtypes[i] ?? "float32", bytes: inputBytes(a, inputDtypes[i] ?? "float32").byteLength }));
  return { result: result!, blocks, refused, outputs, state, acquired, inputs };
}

/** A stack of up to 60 frames, captured now and formatted (`.stack`) only when read: formatting costs far more. */
function deepStack(): Error {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 60;
  const at = new Error();
  Error.stackTraceLimit = limit;
  return at;
}

/** The first frame of a stack outside tfjs, this file and the backend's wrapper of runWebGPUProgram: where a tensor was made from host values. */
function callerOf(stack: string | undefined): string | undefined {
  for (const line of (stack ?? "").split("\n").slice(1)) {
    if (/node_modules|tfjs-[a-z-]+\/src|replay\.ts|webgpu\/backend\.ts|node:internal|<anonymous>/.test(line)) continue;
    return line.trim().replace(/^at /, "");
  }
  return undefined;
}

/**
 * fn with tfjs-webgpu's CPU forwarding off: it computes small ops whose
 * inputs are still on the host on the CPU, and uploads the result, values
 * derived from a step's inputs that a replay could not recompute.
 */
function withoutCpuForwarding<T>(fn: () => T): T {
  const forward = tf.env().getBool("WEBGPU_CPU_FORWARD");
  tf.env().set("WEBGPU_CPU_FORWARD", false);
  try {
    return fn();
  } finally {
    tf.env().set("WEBGPU_CPU_FORWARD", forward);
  }
}

/** Every buffer a recording's commands bind, copy to or from, or clear. */
function* buffersOf(blocks: Block[]): Generator<GPUBuffer> {
  for (const block of blocks) {
    for (const w of block.writes) yield w.buffer;
    for (const c of block.commands) {
      if (c.kind === "dispatch") for (const x of c.bindings) yield x.buffer;
      else if (c.kind === "copy") {
        yield c.src;
        yield c.dst;
      } else if (c.kind === "upload") yield c.dst;
      else yield c.buffer;
    }
  }
}

const isUniform = (buffer: GPUBuffer) => (buffer.usage & GPUBufferUsage.UNIFORM) !== 0;

/**
 * The recording's commands with their effective data: each uniform binding
 * with the bytes it reads (the last write to its buffer before its command
 * buffer ran), each host write to a storage buffer as an upload at the start
 * of its block.
 */
type Op =
  | { kind: "dispatch"; pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; bindings: (Binding & { uniform?: Uint8Array })[]; x: number; y: number; z: number; label: KernelLabel }
  | { kind: "copy"; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: "upload"; bytes: Uint8Array; input?: number; from?: Error; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: "clear"; buffer: GPUBuffer; offset: number; size: number };

function resolve(blocks: Block[]): Op[] {
  const latest = new Map<GPUBuffer, Uint8Array>();
  const ops: Op[] = [];
  for (const block of blocks) {
    for (const w of block.writes) {
      if (isUniform(w.buffer)) {
        const prev = latest.get(w.buffer) ?? new Uint8Array(w.buffer.size);
        const next = prev.slice();
        next.set(w.bytes, w.offset);
        latest.set(w.buffer, next);
      } else {
        ops.push({ kind: "upload", bytes: w.bytes, input: w.input, from: w.from, dst: w.buffer, dstOffset: w.offset, size: w.bytes.byteLength });
      }
    }
    for (const c of block.commands) {
      if (c.kind !== "dispatch") {
        ops.push(c);
        continue;
      }
      const bindings = c.bindings.map((x) => {
        if (!isUniform(x.buffer)) return x;
        const bytes = latest.get(x.buffer);
        if (!bytes) throw new Error("uniform never written");
        return { ...x, uniform: bytes.slice(x.offset, x.offset + x.size) };
      });
      ops.push({ ...c, bindings });
    }
  }
  return ops;
}

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);

/** Why two recordings of a step differ in anything but their inputs, or null when they do not. */
function difference(a: Op[], b: Op[], stateBuffers: Set<GPUBuffer>): string | null {
  if (a.length !== b.length) return `the steps issued ${a.length} and ${b.length} commands`;
  const sameBuffer = (x: GPUBuffer, y: GPUBuffer) => (stateBuffers.has(x) || stateBuffers.has(y) ? x === y : x.size === y.size && x.usage === y.usage);
  for (let i = 0; i < a.length; i++) {
    const [p, q] = [a[i], b[i]];
    const where = `command ${i} (${p.kind})`;
    if (p.kind !== q.kind) return `${where} differs in kind`;
    if (p.kind === "dispatch" && q.kind === "dispatch") {
      if (p.pipeline !== q.pipeline) return `${where} runs another pipeline`;
      if (p.x !== q.x || p.y !== q.y || p.z !== q.z) return `${where} dispatches another size`;
      if (p.bindings.length !== q.bindings.length) return `${where} binds another number of buffers`;
      for (let j = 0; j < p.bindings.length; j++) {
        const [u, v] = [p.bindings[j], q.bindings[j]];
        if (u.binding !== v.binding || u.offset !== v.offset || u.size !== v.size) return `${where} binds another range at ${j}`;
        if (u.uniform || v.uniform) {
          if (!u.uniform || !v.uniform || !equalBytes(u.uniform, v.uniform)) return `${where} has other uniforms (a value drawn or computed on the host each step)`;
        } else if (!sameBuffer(u.buffer, v.buffer)) return `${where} binds another buffer at ${j} (a state tensor was reallocated, or is missing from the state)`;
      }
    } else if (p.kind === "upload" && q.kind === "upload") {
      if (p.size !== q.size || p.dstOffset !== q.dstOffset || !sameBuffer(p.dst, q.dst)) return `${where} uploads another size`;
      if (p.input !== q.input) return `${where} uploads an input in one step only`;
      if (p.input === undefined && !equalBytes(p.bytes, q.bytes)) return `${where} uploads values that change from step to step and are not a declared input${q.from ? ` (made at ${callerOf(q.from.stack)})` : ""}`;
    } else if (p.kind === "copy" && q.kind === "copy") {
      if (p.size !== q.size || p.srcOffset !== q.srcOffset || p.dstOffset !== q.dstOffset || !sameBuffer(p.src, q.src) || !sameBuffer(p.dst, q.dst)) return `${where} copies another range`;
    } else if (p.kind === "clear" && q.kind === "clear") {
      if (p.size !== q.size || p.offset !== q.offset || !sameBuffer(p.buffer, q.buffer)) return `${where} clears another range`;
    }
  }
  return null;
}

type ReplayOp =
  | { kind: "dispatch"; pipeline: GPUComputePipeline; group: GPUBindGroup; x: number; y: number; z: number; label: KernelLabel }
  | { kind: "copy"; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: "clear"; buffer: GPUBuffer; offset: number; size: number };

/** A copy of t in a buffer of its own, recorded in order with tfjs's programs. */
function copyOnDevice(t: tf.Tensor): tf.Tensor {
  const copy = deviceTensor(backendOf(), t.shape, t.dtype);
  copyInPlaceWebGPU(copy, t);
  return copy;
}

/** Buffers the pool released that a replay now owns, and buffers of live tensors it takes when tfjs releases them. */
const claims = new WeakMap<object, Map<GPUBuffer, StepReplay>>();

/** Make tfjs's pool hand a claimed buffer to its replay when a tensor releases it. */
function claimsOf(b: RawBackend): Map<GPUBuffer, StepReplay> {
  let map = claims.get(b.bufferManager);
  if (map) return map;
  const m = new Map<GPUBuffer, StepReplay>();
  claims.set(b.bufferManager, m);
  const release = b.bufferManager.releaseBuffer.bind(b.bufferManager);
  b.bufferManager.releaseBuffer = (buffer: GPUBuffer, reuse?: boolean) => {
    const owner = m.get(buffer);
    release(buffer, owner ? true : reuse);
    if (owner && takeFromPool(b.bufferManager, buffer)) owner.adopt(buffer);
  };
  map = m;
  return map;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** Bytes of GPU memory the live replays hold outside tfjs's pool (tfjs's numBytesAllocatedInGPU no longer counts them). */
let replayBytes = 0;
export function bytesHeldByReplays(): number {
  return replayBytes;
}

/** The replays not yet disposed, whoever holds them. */
const liveReplays = new Set<StepReplay>();

/**
 * Give the GPU back the buffers of every held replay but `keep`'s, for work
 * with a working set of its own (encoding, fine-tuning, another trainer's
 * steps): a replay holds its step's whole working set, which nothing else
 * can use, where PyTorch's freed activations serve whatever runs next. Their
 * recorders record again at their next step (two steps through tfjs).
 * Returns the bytes released.
 */
export function releaseReplays(keep: StepRecorder | null = null): number {
  const before = replayBytes;
  for (const replay of [...liveReplays]) if (replay !== keep?.holding) replay.dispose();
  return before - replayBytes;
}

/** A step's commands, held and replayed. */
export class StepReplay {
  private disposed = false;
  private readonly owned = new Set<GPUBuffer>();
  private readonly claimed = new Set<GPUBuffer>();

  private constructor(
    private readonly b: RawBackend,
    private readonly ops: ReplayOp[],
    private readonly data: GPUBuffer,
    private readonly uniforms: GPUBuffer,
    private readonly inputAt: { input: number; offset: number; bytes: number; dtype: string }[],
    private readonly outputs: Recording<unknown>["outputs"],
    private readonly state: Recording<unknown>["state"],
    /** How many dispatches one run encodes. */
    readonly dispatches: number,
  ) {}

  /**
   * A replay of `second`, when it and `first` (two recordings of one step
   * function on batches of the same shapes) differ only in their inputs.
   * Otherwise `{ refused }` with the reason.
   */
  static build(first: Recording<unknown>, second: Recording<unknown>): StepReplay | { refused: string } {
    const refused = first.refused ?? second.refused;
    if (refused) return { refused };
    const b = backendOf();
    if (second.state.length !== first.state.length || second.state.some((s, i) => s.buffer !== first.state[i].buffer)) {
      return { refused: "a state tensor moved to another buffer between the two steps (it was replaced, not updated in place)" };
    }
    if (first.inputs.length !== second.inputs.length || first.inputs.some((x, i) => x.bytes !== second.inputs[i].bytes || x.dtype !== second.inputs[i].dtype)) {
      return { refused: "the inputs' sizes differ between the two steps" };
    }
    if (first.outputs.length !== second.outputs.length || first.outputs.some((o, i) => o.size !== second.outputs[i].size)) return { refused: "the outputs differ between the two steps" };
    let ops: [Op[], Op[]];
    try {
      ops = [resolve(first.blocks), resolve(second.blocks)];
    } catch {
      return { refused: "a dispatch reads a uniform buffer that the step never wrote" };
    }
    const stateBuffers = new Set(second.state.map((s) => s.buffer));
    const diff = difference(ops[0], ops[1], stateBuffers);
    if (diff) return { refused: diff };
    const outputBuffers = new Set(second.outputs.map((o) => o.buffer));
    for (const buffer of buffersOf(second.blocks)) {
      if (isUniform(buffer) && !(buffer.usage & GPUBufferUsage.STORAGE)) continue;
      if (!stateBuffers.has(buffer) && !second.acquired.has(buffer)) {
        return { refused: "the step reads a tensor that existed before it and is not in its state (pass it as state, or make it inside the step)" };
      }
    }

    // Arenas: every upload's bytes in one copy source, every uniform in one uniform buffer.
    const device = b.device;
    const uniformAlign = device.limits.minUniformBufferOffsetAlignment;
    let dataSize = 0;
    let uniformSize = 0;
    const steps = ops[1];
    for (const op of steps) {
      if (op.kind === "upload") dataSize += align(op.size, 4);
      if (op.kind === "dispatch") for (const x of op.bindings) if (x.uniform) uniformSize += align(x.size, uniformAlign);
    }
    const data = device.createBuffer({ size: Math.max(4, dataSize), usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    const uniforms = device.createBuffer({ size: Math.max(uniformAlign, uniformSize), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const dataBytes = new Uint8Array(Math.max(4, dataSize));
    const uniformBytes = new Uint8Array(Math.max(uniformAlign, uniformSize));
    const replayOps: ReplayOp[] = [];
    const inputAt: StepReplay["inputAt"] = [];
    let [d, u, dispatches] = [0, 0, 0];
    for (const op of steps) {
      if (op.kind === "upload") {
        if (op.size % 4 !== 0 || op.dstOffset % 4 !== 0) return { refused: "an upload is not a whole number of 4-byte words" };
        dataBytes.set(op.bytes, d);
        if (op.input !== undefined) inputAt.push({ input: op.input, offset: d, bytes: op.size, dtype: second.inputs[op.input].dtype });
        replayOps.push({ kind: "copy", src: data, srcOffset: d, dst: op.dst, dstOffset: op.dstOffset, size: op.size });
        d += align(op.size, 4);
      } else if (op.kind === "dispatch") {
        const entries: GPUBindGroupEntry[] = op.bindings.map((x) => {
          if (!x.uniform) return { binding: x.binding, resource: { buffer: x.buffer, offset: x.offset, size: x.size } };
          uniformBytes.set(x.uniform, u);
          const entry = { binding: x.binding, resource: { buffer: uniforms, offset: u, size: x.size } };
          u += align(x.size, uniformAlign);
          return entry;
        });
        replayOps.push({ kind: "dispatch", pipeline: op.pipeline, group: device.createBindGroup({ layout: op.layout, entries }), x: op.x, y: op.y, z: op.z, label: op.label });
        dispatches++;
      } else replayOps.push(op);
    }
    for (const x of second.inputs.keys()) {
      if (!inputAt.some((a) => a.input === x)) continue;
      if (inputAt.filter((a) => a.input === x).some((a) => a.bytes !== second.inputs[x].bytes)) return { refused: "an input was uploaded in part" };
    }
    b.queue.writeBuffer(data, 0, dataBytes);
    b.queue.writeBuffer(uniforms, 0, uniformBytes);
    const replay = new StepReplay(b, replayOps, data, uniforms, inputAt, second.outputs, second.state, dispatches);
    replayBytes += data.size + uniforms.size;
    liveReplays.add(replay);

    // The step's buffers become the replay's: out of the pool now, or when their tensors release them.
    const claimMap = claimsOf(b);
    for (const buffer of new Set(buffersOf(second.blocks))) {
      if (stateBuffers.has(buffer) || buffer === data || buffer === uniforms) continue;
      if (isUniform(buffer) && !(buffer.usage & GPUBufferUsage.STORAGE)) continue; // its bytes are in the arena
      if (takeFromPool(b.bufferManager, buffer)) replay.own(buffer);
      else if (outputBuffers.has(buffer) || second.acquired.has(buffer)) {
        claimMap.set(buffer, replay);
        replay.claimed.add(buffer);
      }
    }
    return replay;
  }

  /** A buffer tfjs released that this replay had claimed. */
  adopt(buffer: GPUBuffer): void {
    this.claimed.delete(buffer);
    claims.get(this.b.bufferManager)?.delete(buffer);
    if (this.disposed) buffer.destroy();
    else this.own(buffer);
  }

  private own(buffer: GPUBuffer): void {
    this.owned.add(buffer);
    replayBytes += buffer.size;
  }

  /** Whether the state tensors are still in the buffers recorded (false after a tensor was replaced: record again). */
  valid(): boolean {
    return !this.disposed && this.state.every((s) => this.b.tensorMap.has(s.dataId) && this.b.tensorMap.get(s.dataId)?.resource === s.buffer);
  }

  /**
   * Run the step on new inputs (the same arrays, in the same order and of the
   * same sizes, as recorded). Returns new output tensors, as the recorded
   * step returned them (the caller disposes them). Nothing is read back.
   */
  run(inputs: readonly ArrayBufferView[]): tf.Tensor[] {
    return this.submit(inputs, null);
  }

  /**
   * Run the step as `run` does, with each dispatch in a compute pass of its
   * own that the GPU stamps with the time at its start and end (the
   * adapter's timestamp queries). `times` resolves, once the GPU has run the
   * step, to each dispatch's label and milliseconds, in order. The results
   * are the same as run's, bit for bit; the step takes longer (a pass and
   * two timestamps per dispatch).
   */
  profile(inputs: readonly ArrayBufferView[]): { outputs: tf.Tensor[]; times: Promise<(KernelLabel & { ms: number })[]> } {
    const device = this.b.device;
    if (!device.features.has("timestamp-query")) {
      throw new Error("This WebGPU device has no timestamp queries, so a step's dispatches cannot be timed; the adapter does not offer them (retromae doctor lists its features).");
    }
    const perSet = 4096; // WebGPU's largest query set
    const count = 2 * this.dispatches;
    const sets: GPUQuerySet[] = [];
    for (let left = count; left > 0; left -= perSet) sets.push(device.createQuerySet({ type: "timestamp", count: Math.min(perSet, left) }));
    const bytes = Math.max(8, count * 8);
    const resolved = device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const labels = this.ops.flatMap((op) => (op.kind === "dispatch" ? [op.label] : []));
    const outputs = this.submit(inputs, {
      sets,
      perSet,
      resolve: (encoder) => {
        // resolve offsets must be multiples of 256 bytes: each full set is 32 KiB
        sets.forEach((set, i) => encoder.resolveQuerySet(set, 0, set.count, resolved, i * perSet * 8));
        encoder.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
      },
    });
    const times = staging.mapAsync(GPUMapMode.READ).then(
      () => {
        const stamps = new BigUint64Array(staging.getMappedRange().slice(0));
        staging.unmap();
        return labels.map((label, i) => ({ ...label, ms: stamps[2 * i + 1] >= stamps[2 * i] ? Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6 : 0 }));
      },
    ).finally(() => {
      for (const set of sets) set.destroy();
      resolved.destroy();
      staging.destroy();
    });
    return { outputs, times };
  }

  /**
   * Write the inputs, encode the step and its outputs' copies, and submit.
   * With `timing`, each dispatch is a pass of its own, stamped into the query
   * sets (`perSet` queries each), and `resolve` encodes their readback last.
   */
  private submit(inputs: readonly ArrayBufferView[], timing: { sets: GPUQuerySet[]; perSet: number; resolve: (encoder: GPUCommandEncoder) => void } | null): tf.Tensor[] {
    if (!this.valid()) throw new Error("This recorded step no longer matches its model's tensors (a weight was replaced or disposed); record it again.");
    const b = this.b;
    flush(b);
    for (const at of this.inputAt) {
      const values = inputs[at.input];
      const bytes = values ? inputBytes(values, at.dtype) : null;
      if (!bytes || bytes.byteLength !== at.bytes) {
        throw new Error(`Input ${at.input} of a recorded step has ${bytes?.byteLength ?? 0} bytes where the recording had ${at.bytes}; batches must keep the shapes recorded.`);
      }
      b.queue.writeBuffer(this.data, at.offset, bytes as Uint8Array<ArrayBuffer>);
    }
    const encoder = b.device.createCommandEncoder();
    let pass: GPUComputePassEncoder | null = null;
    let timed = 0;
    for (const op of this.ops) {
      if (op.kind === "dispatch") {
        if (timing) {
          const [set, at] = [timing.sets[Math.floor((2 * timed) / timing.perSet)], (2 * timed) % timing.perSet];
          pass = encoder.beginComputePass({ timestampWrites: { querySet: set, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 } });
          timed++;
        } else pass ??= encoder.beginComputePass();
        pass.setPipeline(op.pipeline);
        pass.setBindGroup(0, op.group);
        pass.dispatchWorkgroups(op.x, op.y, op.z);
        if (timing) {
          pass.end();
          pass = null;
        }
        continue;
      }
      if (pass) {
        pass.end();
        pass = null;
      }
      if (op.kind === "copy") encoder.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
      else encoder.clearBuffer(op.buffer, op.offset, op.size);
    }
    if (pass) pass.end();
    const out = this.outputs.map((o) => {
      const t = deviceTensor(b, o.shape, o.dtype);
      const buffer = b.tensorMap.get(t.dataId)!.resource as GPUBuffer;
      encoder.copyBufferToBuffer(o.buffer, 0, buffer, 0, Math.min(o.size, buffer.size));
      return t;
    });
    timing?.resolve(encoder);
    b.queue.submit([encoder.finish()]);
    // values tfjs read back earlier stay cached on the CPU; the state changed under them
    for (const s of this.state) b.tensorMap.get(s.dataId)!.values = null;
    return out;
  }

  /** Give the step's buffers back to the device. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    liveReplays.delete(this);
    for (const buffer of this.owned) {
      replayBytes -= buffer.size;
      buffer.destroy();
    }
    this.owned.clear();
    replayBytes -= this.data.size + this.uniforms.size;
    const map = claims.get(this.b.bufferManager);
    for (const buffer of this.claimed) map?.delete(buffer);
    this.claimed.clear();
    this.data.destroy();
    this.uniforms.destroy();
  }
}

/** What a StepRecorder did (Trainer.recordedSteps, a fine-tune's result). */
export interface RecordedSteps {
  replayed: number;
  ran: number;
  dispatches: number | null;
  refused: string | null;
}

/**
 * Steps run through tfjs until two in a row with the same key record the
 * same commands; from then on the steps with that key are replayed. A key
 * names what the step's graph depends on besides its inputs (the inputs'
 * sizes, the loss weights, ...); a new key, or a state tensor replaced,
 * records again. After `maxRefusals` refused comparisons it stops
 * recording and runs every step through tfjs (`refused` says why).
 */
export class StepRecorder {
  private last: { key: string; recording: Recording<tf.Tensor[]> } | null = null;
  private held: { key: string; replay: StepReplay } | null = null;
  private refusals = 0;
  /** Why the last comparison of two recordings refused to replay, or null. */
  refused: string | null = null;
  /** Steps replayed, and steps run through tfjs, so far. */
  replayed = 0;
  ran = 0;
  /** Whether the next replayed step is timed (`profileNext`), and its times once it was. */
  private profileWanted = false;
  private profiled: Promise<(KernelLabel & { ms: number })[]> | null = null;

  /**
   * `replay: false` runs every step through tfjs as a recorded step runs (no
   * CPU forwarding of small ops), records nothing: the reference a replay
   * must equal, bit for bit.
   */
  constructor(private readonly options: { maxRefusals?: number; replay?: boolean } = {}) {}

  /** The replay held, or null. */
  get holding(): StepReplay | null {
    return this.held?.replay ?? null;
  }

  /** Dispatches one replayed step encodes, or null while nothing is replayed. */
  get dispatches(): number | null {
    return this.held?.replay.dispatches ?? null;
  }

  /** What recording did so far: steps replayed and run through tfjs, dispatches per replayed step, and why replaying was refused (null if it was not). */
  get counts(): RecordedSteps {
    return { replayed: this.replayed, ran: this.ran, dispatches: this.dispatches, refused: this.refused };
  }

  /**
   * One step: replayed with `inputs` where a replay of `key` is held, else
   * `fn()` run through tfjs (and recorded). `inputs` are the host arrays the
   * step's tensors are made from, `state()` the tensors it reads or updates
   * in place. Returns fn's tensors (or the replay's copies of them).
   */
  run(key: string, inputs: readonly ArrayBufferView[], state: () => tf.Tensor[], fn: () => tf.Tensor[]): tf.Tensor[] {
    if (this.held && (this.held.key !== key || !this.held.replay.valid())) {
      this.held.replay.dispose();
      this.held = null;
    }
    if (this.held) {
      this.replayed++;
      if (!this.profileWanted) return this.held.replay.run(inputs);
      this.profileWanted = false;
      const { outputs, times } = this.held.replay.profile(inputs);
      this.profiled = times;
      return outputs;
    }
    this.ran++;
    if (this.options.replay === false) return withoutCpuForwarding(fn);
    if (this.refusals >= (this.options.maxRefusals ?? 4)) return fn();
    const recording = recordCommands(fn, { inputs, state: state() });
    if (recording.refused) {
      this.refused = recording.refused;
      this.refusals++;
      this.last = null;
      return recording.result;
    }
    if (this.last?.key === key) {
      const replay = StepReplay.build(this.last.recording, recording);
      if (replay instanceof StepReplay) {
        this.held = { key, replay };
        this.last = null;
        this.refused = null;
        // the replay writes its outputs where this step's are: hand the caller copies
        const copies = recording.result.map(copyOnDevice);
        tf.dispose(recording.result);
        return copies;
      }
      this.refused = replay.refused;
      this.refusals++;
    }
    this.last = { key, recording };
    return recording.result;
  }

  /** Time the dispatches of the next step that is replayed (StepReplay.profile); `takeProfile` then gives the times. */
  profileNext(): void {
    this.profileWanted = true;
    this.profiled = null;
  }

  /**
   * The times of the step `profileNext` asked for, once it was replayed (null
   * before). Taken once; the request ends with it either way, so a step after
   * a caller that gave up is not timed.
   */
  takeProfile(): Promise<(KernelLabel & { ms: number })[]> | null {
    const p = this.profiled;
    this.profiled = null;
    this.profileWanted = false;
    return p;
  }

  dispose(): void {
    this.held?.replay.dispose();
    this.held = null;
    this.last = null;
  }
}
