/// <reference types="@webgpu/types" />
/**
 * What this project's webgpu kernels share: the part of tfjs-webgpu's
 * WebGPUBackend they use, the fields tfjs's program builder reads (a flat
 * dispatch, or a workgroup per row with a tree reduction in workgroup
 * memory), uniforms, zeros written on the device, and the row shaders of
 * raw dispatches (./raw.ts), which write several outputs where a tfjs
 * program writes one; and, in WGSL, GELU and its gradient and the dropout
 * mask's hash, which several kernels compute inside their own loops.
 */
import * as tf from "../tf";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { MAX_GROUPS, rawBackend, RawBackend, rawBindings } from "./raw";

/** What these kernels use of tfjs-backend-webgpu's WebGPUBackend. */
export interface WebGPUBackendLike {
  device: GPUDevice;
  tensorMap: { get(dataId: object): { refCount: number; values: unknown } | undefined };
  runWebGPUProgram(program: object, inputs: TensorInfo[], outputDtype: tf.DataType, uniforms?: { type: string; data: number[] }[], output?: TensorInfo): TensorInfo;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: ArrayLike<number>): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

const WORKGROUP = 64;

export function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Int32 uniforms for runWebGPUProgram, in the order a program declares them. */
export function ints(...values: number[]): { type: string; data: number[] }[] {
  return values.map((v) => ({ type: "int32", data: [v] }));
}

/** The fields tfjs-webgpu's program builder reads, for a flat 1-D dispatch over `size` invocations. */
export function flatProgram(size: number, outputShape: number[], variableNames: string[], shaderKey: string, uniforms: string, body: string) {
  return {
    outputShape,
    variableNames,
    uniforms,
    shaderKey,
    workgroupSize: [WORKGROUP, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0] },
    // One invocation per element of a virtual [size] shape; runWebGPUProgram reshapes
    // the dispatch to fit maxComputeWorkgroupsPerDimension.
    dispatch: [Math.ceil(size / WORKGROUP), 1, 1] as [number, number, number],
    getUserCode: () => body,
  };
}

/** A new [size] tensor of zeros, written on the device. */
export function zeros(backend: WebGPUBackendLike, shape: number[], dtype: "float32" | "int32"): TensorInfo {
  const size = product(shape);
  const body = `
  fn main(index : i32) {
    if (index < uniforms.count) { result[index] = ${dtype === "float32" ? "0.0" : "0"}; }
  }`;
  const program = flatProgram(size, shape, [], `retromaeZeros_${dtype}`, "count : i32,", body);
  return backend.runWebGPUProgram(program, [], dtype, [{ type: "int32", data: [size] }]);
}

/** Tree reduction (sum, or max) of one value per invocation across a workgroup of `wg`; every invocation gets the result. */
export const ROW_SUM_WGSL = (wg: number) => `
  var<workgroup> part : array<f32, ${wg}>;
  fn rowReduce(tid : i32, v : f32, isMax : bool) -> f32 {
    part[tid] = v;
    workgroupBarrier();
    for (var half = ${wg / 2}; half > 0; half = half / 2) {
      if (tid < half) { part[tid] = select(part[tid] + part[tid + half], max(part[tid], part[tid + half]), isMax); }
      workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
  }`;

/** Invocations per row: the raw row shaders' workgroup, and the row programs' where they take the default. */
export const ROWS_WG = 64;

/**
 * A row's maximum and Σ exp(v − max) in WGSL, for a row program
 * (rowWorkgroupProgram, rawRowsShader: `tid` and rowReduce in scope):
 * `at(c)` is the value at column c, of `n` columns, walked `wg` apart.
 * Declares `rowMax` and `total`; exp(at(c) − rowMax) / total is the
 * softmax at c. The max starts at column 0's value, not at -3.402823e38, so
 * a row all at -FLT_MAX (HF's mask value) is uniform, not 0 / 0.
 */
export function rowMaxAndSumWgsl(at: (c: string) => string, n = "n", wg = ROWS_WG): string {
  return `
    var m = ${at("0")};
    for (var c = tid; c < ${n}; c = c + ${wg}) { m = max(m, ${at("c")}); }
    let rowMax = rowReduce(tid, m, true);
    var acc = 0.0;
    for (var c = tid; c < ${n}; c = c + ${wg}) { acc = acc + exp(${at("c")} - rowMax); }
    let total = rowReduce(tid, acc, false);`;
}

/**
 * A program with one workgroup of `wg` invocations per row of a [rows, cols]
 * output: `body` runs with `row`, `tid` (0..wg-1), `n` (= cols) and `base`
 * (row · n) in scope, and `rowReduce` for sums and maxima across the row.
 * Past 65,535 rows tfjs spreads the dispatch over a square of workgroups,
 * which can be more than the rows: an extra workgroup computes the last row
 * again, and `live` (false there) keeps its writes out; the body writes only
 * where `live`. (It cannot return early: its barriers need every invocation.)
 * `prelude`: WGSL at module scope, for functions the body calls.
 */
export function rowWorkgroupProgram(key: string, rows: number, cols: number, variableNames: string[], uniforms: string, body: string, wg = ROWS_WG, prelude = "") {
  const code = `${ROW_SUM_WGSL(wg)}${prelude}
  fn main(index : i32) {
    let live = index / ${wg} < uniforms.outShape[0];
    let row = min(index / ${wg}, uniforms.outShape[0] - 1);
    let tid = index - (index / ${wg}) * ${wg};
    let n = uniforms.cols;
    let base = row * n;
${body}
  }`;
  return {
    outputShape: [rows, cols],
    variableNames,
    uniforms: `cols : i32, ${uniforms}`,
    shaderKey: `retromae${key}_${wg}`,
    workgroupSize: [wg, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0, 1] },
    dispatch: [rows, 1, 1] as [number, number, number],
    getUserCode: () => code,
  };
}

/** A raw shader's uniforms, four bytes each, of the types given. */
export function packUniforms(values: [number, "i32" | "u32" | "f32"][]): ArrayBuffer {
  const u = new ArrayBuffer(4 * values.length);
  const view = new DataView(u);
  values.forEach(([v, type], i) => (type === "f32" ? view.setFloat32(4 * i, v, true) : type === "u32" ? view.setUint32(4 * i, v >>> 0, true) : view.setInt32(4 * i, v, true)));
  return u;
}

/** Typed uniform values as runWebGPUProgram takes them. */
export function programUniforms(values: [number, "i32" | "u32" | "f32"][]): { type: string; data: number[] }[] {
  return values.map(([v, type]) => ({ type: type === "i32" ? "int32" : type === "u32" ? "uint32" : "float32", data: [v] }));
}

/** tfjs-webgpu's backend internals for a raw dispatch, or a sentence that names the fix. */
export function rawOf(kernel: string): RawBackend {
  const rb = rawBackend();
  if (!rb) throw new Error(`${kernel} on webgpu needs tfjs-backend-webgpu 4.22's internals, which this install lacks; reinstall the pinned @tensorflow/tfjs-backend-webgpu with npm ci.`);
  return rb;
}

/** erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the formula tfjs's cpu and webgpu Erf use, in WGSL as retromaeErf. */
const ERF_WGSL = `
fn retromaeErf(x : f32) -> f32 {
  let v = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * v);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-v * v);
  return select(-y, y, x >= 0.0);
}`;

/** GELU and dy · GELU′ as the WGSL functions retromaeGelu(x) and retromaeGeluGrad(x, dy) (with retromaeErf): the one definition of both, which elementwise.ts's GELU and GELU_GRAD programs, dense.ts's swapped matmul activations, layer-norm.ts's kernels and matmul.ts's tiled epilogue call. */
export const GELU_FUNCTIONS_WGSL = `${ERF_WGSL}
fn retromaeGelu(x : f32) -> f32 { return 0.5 * x * (1.0 + retromaeErf(x * 0.7071067811865476)); }
fn retromaeGeluGrad(x : f32, dy : f32) -> f32 { return dy * (0.5 * (1.0 + retromaeErf(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x)); }`;

/** fused.ts's hash32 (lowbias32) in WGSL. */
export const HASH_WGSL = `
  fn retromaeHash(v : u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
  }`;

/**
 * A dropout call inside a raw shader (fused.ts's DropoutCall): its uniforms,
 * after the shader's own, and `dropped(i, v)`, v (element i of the tensor
 * dropped out) kept and scaled or 0, as DROPOUT computes it. `dropSeed` is
 * the call's seed, from the step's base (an int32 [1] input `dropBase`) and
 * the call's hashed index: DROP_SEED_WGSL, in the shader's main, computes it.
 */
export const DROPOUT_FIELDS = "dropSeed : u32, dropThreshold : u32, dropScale : f32";
export const DROPPED_WGSL = `${HASH_WGSL}
  fn dropped(seed : u32, i : i32, v : f32) -> f32 {
    return select(0.0, v * uniforms.dropScale, retromaeHash(seed ^ u32(i)) >= uniforms.dropThreshold);
  }`;
export const DROP_SEED_WGSL = "let dropSeed = retromaeHash(bitcast<u32>(dropBase[0]) ^ uniforms.dropSeed);";

/** A dropout call's attributes (fused.ts's DropoutCall). */
export type DropoutAttrs = { dropSeed: number; dropThreshold: number; dropScale: number };

/** A dropout call's uniforms (DROPOUT_FIELDS), from its attributes. */
export function dropoutUniforms(attrs: DropoutAttrs): [number, "u32" | "f32"][] {
  return [[attrs.dropSeed, "u32"], [attrs.dropThreshold, "u32"], [attrs.dropScale, "f32"]];
}

/**
 * A raw shader with a workgroup of ROWS_WG invocations per row: `body` runs
 * with `row`, `tid` (0..ROWS_WG-1), `live` and rowReduce in scope. Past
 * MAX_GROUPS rows the dispatch spreads over two dimensions; a spare
 * workgroup computes the last row again, and `live`, false there, keeps its
 * writes out (the body cannot return early: its barriers need every
 * invocation). The uniforms begin with `rows : i32`, then `fields`; with
 * `dropout`, then DROPOUT_FIELDS, and `dropped` and `dropSeed` in scope.
 */
export function rawRowsShader(outs: string[], ins: string[], fields: string, body: string, dropout: boolean): string {
  return `
${rawBindings(outs, ins, `rows : i32, ${fields}${dropout ? `, ${DROPOUT_FIELDS}` : ""}`)}
${ROW_SUM_WGSL(ROWS_WG)}
${dropout ? DROPPED_WGSL : ""}
@compute @workgroup_size(${ROWS_WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let group = i32(wid.x + wid.y * ${MAX_GROUPS}u);
  let live = group < uniforms.rows;
  let row = min(group, uniforms.rows - 1);
  let tid = i32(lid);
  ${dropout ? DROP_SEED_WGSL : ""}
${body}
}`;
}

/** A webgpu kernel that takes the calls `take` answers and leaves the rest (null) to tfjs's own. */
export function takeOver<A>(kernelName: string, original: KernelFunc, take: (x: TensorInfo, attrs: A, backend: unknown) => TensorInfo | null): KernelConfig {
  return {
    kernelName,
    backendName: "webgpu",
    kernelFunc: (args) => take((args.inputs as { x: TensorInfo }).x, args.attrs as unknown as A, args.backend) ?? original(args),
  };
}
