/// <reference types="@webgpu/types" />
/**
 * Raw dispatches: this project's own WGSL shaders recorded into tfjs-webgpu's
 * command encoder, in order with its programs, where a tfjs program (one
 * output per dispatch) cannot do the work: a shader that writes several
 * buffers (AdamW's weight and moments, a LayerNorm's output with the
 * statistics its gradient keeps) or writes a buffer in place.
 *
 * This reaches into tfjs-backend-webgpu 4.22's backend (its command
 * encoder, tensor map and buffer pool; the package is pinned), in the same
 * way its own `recordAndSubmit` does. Recorded steps (./replay.ts) see these
 * dispatches as they see tfjs's, by their pipelines' labels.
 */
import * as tf from "../tf";
import type { TensorInfo } from "@tensorflow/tfjs-core";
import { BufferManagerLike, isBufferManager } from "./pool";

/** The parts of tfjs-webgpu's WebGPUBackend (4.22) that this project's raw dispatches and recorded steps (./replay.ts) use. */
export interface RawBackend {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: {
    has(dataId: object): boolean;
    get(dataId: object): { refCount: number; dtype: string; shape: number[]; values: unknown; resource: unknown } | undefined;
  };
  bufferManager: BufferManagerLike;
  uniformPendingDisposal: GPUBuffer[];
  commandQueueOwnedIds: WeakSet<object>;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): TensorInfo;
}

/** The current backend's internals, or null off webgpu (or on a tfjs-webgpu of another shape). */
export function rawBackend(): RawBackend | null {
  if (tf.getBackend() !== "webgpu") return null;
  const b = tf.backend() as unknown as Partial<RawBackend>;
  const ok =
    !!b.device && !!b.queue && !!b.tensorMap && isBufferManager(b.bufferManager) && Array.isArray(b.uniformPendingDisposal) &&
    typeof b.ensureCommandEncoderReady === "function" && typeof b.endComputePassEncoder === "function" && typeof b.submitQueue === "function" &&
    typeof b.uploadToGPU === "function" && typeof b.makeTensorInfo === "function" && "computePassEncoder" in b && typeof b.dispatchCountInPass === "number";
  return ok ? (b as RawBackend) : null;
}

/** Workgroups per dimension that every adapter takes (WebGPU's minimum maxComputeWorkgroupsPerDimension). */
export const MAX_GROUPS = 65535;

/** Pipelines by device and shader; a pipeline's bind group layout is asked for once. */
const pipelines = new WeakMap<GPUDevice, Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>>();

function pipelineFor(device: GPUDevice, key: string, code: () => string) {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  let entry = cache.get(key);
  if (!entry) {
    const pipeline = device.createComputePipeline({ label: key, layout: "auto", compute: { module: device.createShaderModule({ code: code() }), entryPoint: "main" } });
    entry = { pipeline, layout: pipeline.getBindGroupLayout(0) };
    cache.set(key, entry);
  }
  return entry;
}

/** The GPU buffer of a tensor, uploaded if its values are still on the CPU. */
function bufferOf(b: RawBackend, t: TensorInfo): GPUBuffer {
  b.uploadToGPU(t.dataId);
  return b.tensorMap.get(t.dataId)!.resource as GPUBuffer;
}

/** The raw dispatch being encoded, while it is. */
let dispatching: { kernel: string; flops?: number } | null = null;

/** The label of the raw dispatch being encoded (its key and, for a matmul, its flops), for a recording's profile (./replay.ts); null outside one. */
export function rawDispatchLabel(): { kernel: string; flops?: number } | null {
  return dispatching;
}

/**
 * Record one dispatch into tfjs's command encoder, as its recordAndSubmit
 * does: bindings 0.. are `tensors` (in order), the last is a uniform buffer
 * from tfjs's pool (released when the commands are submitted); the tensors
 * are held until then. `groups`: a count of workgroups, spread over x and y
 * past MAX_GROUPS (the shader finds its index with GROUP_INDEX), or a grid
 * of x, y and z (each at most MAX_GROUPS). `flops`, for a matmul: its
 * floating-point operations, for a profile's GFLOP/s (rawDispatchLabel).
 */
export function record(b: RawBackend, key: string, code: () => string, tensors: TensorInfo[], uniforms: ArrayBuffer, groups: number | [number, number, number], flops?: number): void {
  const { pipeline, layout } = pipelineFor(b.device, key, code);
  const buffers = tensors.map((t) => bufferOf(b, t));
  const size = Math.max(16, Math.ceil(uniforms.byteLength / 16) * 16);
  const uniform = b.bufferManager.acquireBuffer(size, GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM);
  b.queue.writeBuffer(uniform, 0, uniforms, 0, uniforms.byteLength);
  b.uniformPendingDisposal.push(uniform);
  const bindGroup = b.device.createBindGroup({
    layout,
    entries: [...buffers.map((buffer, i) => ({ binding: i, resource: { buffer } })), { binding: buffers.length, resource: { buffer: uniform } }],
  });
  for (const t of tensors) b.commandQueueOwnedIds.add(t.dataId);
  b.ensureCommandEncoderReady();
  if (!b.computePassEncoder) b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  b.computePassEncoder.setPipeline(pipeline);
  b.computePassEncoder.setBindGroup(0, bindGroup);
  dispatching = { kernel: key, ...(flops ? { flops } : {}) };
  try {
    if (typeof groups === "number") b.computePassEncoder.dispatchWorkgroups(Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1);
    else b.computePassEncoder.dispatchWorkgroups(...groups);
  } finally {
    dispatching = null;
  }
  b.dispatchCountInPass++;
  if ((tf.env().get("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE") as number) <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
}

/** A new tensor with a buffer of its own (from tfjs's pool) and no values yet, for a raw dispatch or copy to fill. */
export function deviceTensor(b: RawBackend, shape: number[], dtype: tf.DataType = "float32"): tf.Tensor {
  const info = b.makeTensorInfo(shape, dtype);
  b.uploadToGPU(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * The bindings of a raw shader: `outs` (read_write) from binding 0, then
 * `ins` (read), each an array<f32>, then the uniform struct of `fields`
 * (WGSL members, e.g. "rows : i32, eps : f32") as `uniforms`: the order
 * `record` binds its tensors and uniforms in.
 */
export function rawBindings(outs: string[], ins: string[], fields: string): string {
  return [
    ...outs.map((o, j) => `@group(0) @binding(${j}) var<storage, read_write> ${o} : array<f32>;`),
    ...ins.map((n, i) => `@group(0) @binding(${outs.length + i}) var<storage, read> ${n} : array<f32>;`),
    `struct Uniforms { ${fields} };`,
    `@group(0) @binding(${outs.length + ins.length}) var<uniform> uniforms : Uniforms;`,
  ].join("\n");
}

/** The workgroup index, across the two dimensions a large dispatch is split into. */
export const GROUP_INDEX = `let group = wid.x + wid.y * ${MAX_GROUPS}u;`;
