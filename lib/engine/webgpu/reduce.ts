/**
 * Sums in a fixed order: column sums over the rows (every bias gradient;
 * LayerNorm's γ and β; the tied decoder's bias; the parts of a matmul split
 * along K), in one pass or in runs of rows whose sums a second pass adds in
 * order, where tfjs's Sum over leading axes transposes the input and then
 * reduces; and AddN within the adapter's limits. tfjs binds every input of
 * AddN to one shader; a gradient sum over more inputs than
 * `maxStorageBuffersPerShaderStage` (8 on the smallest adapters) fails
 * pipeline validation. Here the inputs are summed in runs that fit, left to
 * right: the same additions in the same order, so the same bits. A sum over
 * no elements is zeros.
 */
import * as tf from "../tf";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { MAX_GROUPS, RawBackend, rawBindings, record as recordDispatch } from "./raw";
import { splitKEnabled } from "./matmul";
import { ints, product, takeOver, WebGPUBackendLike, zeros } from "./program";

/** Columns per workgroup of columnSumProgram, and lanes per column. */
const COLUMNS_PER_GROUP = 16;
const COLUMN_LANES = 256 / COLUMNS_PER_GROUP;

/**
 * `n` (a column sum's rows, a matmul's K) split into about `parts` runs of
 * `chunk`, a multiple of `step`: `used` runs, the last one shorter where
 * `n` is not a multiple. The same n and parts always split the same way.
 */
export function inRuns(n: number, parts: number, step: number): { chunk: number; used: number } {
  const chunk = Math.max(step, Math.ceil(n / parts / step) * step);
  return { chunk, used: Math.ceil(n / chunk) };
}

/**
 * How many runs of rows a column sum of [rows, cols] is split into (1: one
 * pass). A workgroup takes 16 columns, so a bias gradient is few workgroups
 * (tiny's 128 columns: 8; base's 768: 48), each walking every row, on a GPU
 * that holds about a thousand: runs of at least 128 rows (8 a lane) until
 * there are about 1,024 workgroups, then a second pass adds each column's
 * runs in order. The same shape always splits the same way: the same bits
 * run after run. RETROMAE_WEBGPU_SPLIT_K=0 turns it off, with the matmuls'
 * split.
 */
export function columnSumParts(rows: number, cols: number): number {
  if (!splitKEnabled()) return 1;
  const groups = Math.ceil(cols / COLUMNS_PER_GROUP);
  return Math.max(1, Math.min(Math.ceil(1024 / groups), Math.floor(rows / 128)));
}

/**
 * out[j] = Σ_r f(r, j) over the rows (columnSumProgram), always in the same
 * order: in one pass, or in runs of rows (columnSumParts) whose sums a second
 * pass adds in order.
 */
export function columnSum(b: WebGPUBackendLike, inputs: TensorInfo[], names: string[], term: string, rows: number, cols: number): TensorInfo {
  // (no rows: zeros. A pass would bind an empty buffer, which WebGPU rejects, and leave its output unwritten)
  if (rows === 0) return zeros(b, [cols], "float32");
  const key = term.replace(/[^a-z]+/gi, "");
  const { chunk, used } = inRuns(rows, columnSumParts(rows, cols), COLUMN_LANES);
  const sums = b.runWebGPUProgram(columnSumProgram(cols, used, names, key, term), inputs.map((t) => ({ ...t, shape: [rows, cols] })), "float32", ints(rows, cols, chunk, used));
  if (used === 1) return { ...sums, shape: [cols] };
  // (its own key, for a profile's categories: the runs of a LayerNorm's or a bias's sums)
  const total = b.runWebGPUProgram(columnSumProgram(cols, 1, ["p"], `${key}Runs`, "p[at]"), [sums], "float32", ints(used, cols, used, 1));
  b.disposeData(sums.dataId);
  return { ...total, shape: [cols] };
}

/**
 * The column sums of several terms of the same rows in one pass over them
 * (columnSumBody, unsplit), as a raw dispatch labelled `retromae${key}`: one
 * output [cols] per term. (LayerNorm's gradient adds its workgroups' partial
 * sums with it: at most 1,024 rows.)
 */
export function columnSums(rb: RawBackend, key: string, inputs: TensorInfo[], names: string[], terms: string[], rows: number, cols: number): TensorInfo[] {
  const outs = terms.map(() => rb.makeTensorInfo([cols], "float32"));
  recordDispatch(rb, `retromae${key}`, () => columnSumsShader(names, terms), [...outs, ...inputs], new Int32Array([rows, cols, rows, 1]).buffer, Math.ceil(cols / COLUMNS_PER_GROUP));
  return outs;
}

/**
 * Column sums of a [rows, cols] term, over runs of `chunk` rows: a workgroup
 * of 256 takes 16 columns of one run, each in 16 lanes that add the run's
 * rows lane, lane + 16, … in order, then the lanes by a fixed tree. `term`
 * reads the inputs at `at` (the element at row r, column col). Output
 * [parts, cols], row p the sums over rows [p·chunk, (p + 1)·chunk); one run
 * (chunk ≥ rows) is the whole sum. tfjs's Sum over leading axes (every bias
 * gradient: the sum of dy over the rows) transposes the whole input first and
 * then reduces: two dispatches and a copy of dy.
 */
function columnSumProgram(cols: number, parts: number, variableNames: string[], key: string, term: string) {
  const groups = Math.ceil(cols / COLUMNS_PER_GROUP) * parts;
  return {
    outputShape: [parts, cols],
    variableNames,
    uniforms: "rows : i32, cols : i32, chunk : i32, parts : i32,",
    shaderKey: `retromaeColumnSum_${key}`,
    workgroupSize: [256, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0] },
    dispatch: [groups, 1, 1] as [number, number, number],
    getUserCode: () => `
  var<workgroup> lanes : array<f32, 256>;
  fn main(index : i32) {
    let group = index / 256;
    let tid = index - group * 256;
${columnSumBody([term], ["result"])}
  }`,
  };
}

/**
 * columnSumProgram's work, with `group` (the workgroup's index) and `tid` in
 * scope: the sums of several terms over the same rows in one pass, each
 * written to its own output (`outs`, in the order of `terms`), each term's
 * sum in the same order as a sum of that term alone.
 */
function columnSumBody(terms: string[], outs: string[]): string {
  const accs = terms.map((_, j) => `acc${j}`);
  return `
    let perRun = (uniforms.cols + ${COLUMNS_PER_GROUP - 1}) / ${COLUMNS_PER_GROUP};
    let part = group / perRun;
    let col = (group - part * perRun) * ${COLUMNS_PER_GROUP} + tid % ${COLUMNS_PER_GROUP};
    let lane = tid / ${COLUMNS_PER_GROUP};
    // (a spare workgroup of a dispatch spread over a square has part ≥ parts: it writes nothing)
    let live = col < uniforms.cols && part < uniforms.parts;
    ${accs.map((a) => `var ${a} = 0.0;`).join(" ")}
    if (live) {
      let end = min(part * uniforms.chunk + uniforms.chunk, uniforms.rows);
      for (var r = part * uniforms.chunk + lane; r < end; r = r + ${COLUMN_LANES}) { let at = r * uniforms.cols + col; ${terms.map((t, j) => `${accs[j]} = ${accs[j]} + ${t};`).join(" ")} }
    }
${accs.map((a, j) => `    lanes[tid] = ${a};
    workgroupBarrier();
    for (var half = ${COLUMN_LANES / 2}; half > 0; half = half / 2) {
      if (lane < half) { lanes[tid] = lanes[tid] + lanes[tid + half * ${COLUMNS_PER_GROUP}]; }
      workgroupBarrier();
    }
    if (lane == 0 && live) { ${outs[j]}[part * uniforms.cols + col] = lanes[tid]; }`).join("\n    workgroupBarrier();\n")}`;
}

/**
 * columnSumBody as a raw dispatch (./raw.ts) with an output per term: the
 * sums of several terms over one pass of the rows, where a tfjs program
 * writes one output.
 */
function columnSumsShader(names: string[], terms: string[]): string {
  const outs = terms.map((_, j) => `out${j}`);
  return `
${rawBindings(outs, names, "rows : i32, cols : i32, chunk : i32, parts : i32")}
var<workgroup> lanes : array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let group = i32(wid.x + wid.y * ${MAX_GROUPS}u);
  let tid = i32(lid);
${columnSumBody(terms, outs)}
}`;
}

/** Sum over the leading axes of a float32 tensor in one pass (columnSumProgram), and any sum of an empty tensor (zeros); tfjs's for every other sum. */
export const leadingAxesSum = (original: KernelFunc) =>
  takeOver<{ axis: number | number[] | null; keepDims: boolean }>(tf.Sum, original, (x, { axis, keepDims }, backend) => {
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(axis as number[], x.shape).sort((a, b) => a - b); // (null: every axis)
    const k = axes.length;
    if (product(x.shape) === 0 && k > 0) {
      // a sum over no elements is 0, as on the cpu (tfjs-webgpu's own reshapes an empty input to NaN rows and fails)
      const shape = x.shape.flatMap((d, i) => (!axes.includes(i) ? [d] : keepDims ? [1] : []));
      return zeros(backend as WebGPUBackendLike, shape, x.dtype === "float32" ? "float32" : "int32");
    }
    if (x.dtype !== "float32" || k === 0 || k >= rank || axes.some((a, i) => a !== i)) return null;
    const rows = product(x.shape.slice(0, k));
    const cols = product(x.shape.slice(k));
    const out = columnSum(backend as WebGPUBackendLike, [x], ["x"], "x[at]", rows, cols);
    return { dataId: out.dataId, shape: keepDims ? [...x.shape.slice(0, k).map(() => 1), ...x.shape.slice(k)] : x.shape.slice(k), dtype: "float32" };
  });

/** AddN in runs of at most `maxInputs` inputs (the first run's sum is the next run's first input). */
export function chunkedAddN(original: KernelFunc, maxInputs: number): KernelConfig {
  const per = Math.max(2, maxInputs);
  return {
    kernelName: tf.AddN,
    backendName: "webgpu",
    kernelFunc: (args) => {
      const tensors = args.inputs as unknown as TensorInfo[];
      if (tensors.length <= per) return original(args);
      const b = args.backend as unknown as WebGPUBackendLike;
      let acc = original({ ...args, inputs: tensors.slice(0, per) as unknown as typeof args.inputs }) as TensorInfo;
      for (let i = per; i < tensors.length; i += per - 1) {
        const next = original({ ...args, inputs: [acc, ...tensors.slice(i, i + per - 1)] as unknown as typeof args.inputs }) as TensorInfo;
        b.disposeData(acc.dataId);
        acc = next;
      }
      return acc;
    },
  };
}
