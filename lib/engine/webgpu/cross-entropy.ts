/**
 * The masked cross-entropy's pieces (lib/engine/fused.ts): log Σ exp per
 * row with each row's argmax, and softmax − onehot(labels) with its column
 * sums (the tied decoder's bias gradient), written straight into their
 * outputs: no [N, vocab] temporaries beyond the gradient itself; the label's
 * logit per row; and the mean loss and accuracy over the rows in one
 * workgroup.
 */
import { LOG_SUM_EXP_ARG_MAX, LOG_SUM_EXP_ROWS, MEAN_NLL_ACCURACY, PICK_LABELS, SOFTMAX_MINUS_ONE_HOT, SOFTMAX_MINUS_ONE_HOT_COL_SUM } from "../fused";
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { rawBindings, record as recordDispatch } from "./raw";
import { flatProgram, packUniforms, product, rawOf, ROW_SUM_WGSL, rowMaxAndSumWgsl, rowWorkgroupProgram, ROWS_WG, WebGPUBackendLike } from "./program";
import { columnSum } from "./reduce";

/** log Σⱼ exp(z[r, j]) per row (and the first index of the row's max, with `argMax`). z [N, V] */
function logSumExpProgram(rows: number, V: number) {
  return rowWorkgroupProgram("LogSumExp", rows, 1, ["z"], "V : i32,", `
    let V = uniforms.V;
    let zb = row * V;
${rowMaxAndSumWgsl((c) => `z[zb + ${c}]`, "V")}
    if (live && tid == 0) { result[row] = rowMax + log(total); }`);
}

/** The first column of each row's maximum, as tf.argMax gives it. z [N, V] -> [N] int32 */
function argMaxProgram(rows: number, V: number) {
  const code = `
  var<workgroup> bestValue : array<f32, ${ROWS_WG}>;
  var<workgroup> bestIndex : array<i32, ${ROWS_WG}>;
  fn main(index : i32) {
    let live = index / ${ROWS_WG} < uniforms.outShape; // as rowWorkgroupProgram's
    let row = min(index / ${ROWS_WG}, uniforms.outShape - 1);
    let tid = index - (index / ${ROWS_WG}) * ${ROWS_WG};
    let V = uniforms.V;
    let zb = row * V;
    var bv = z[zb];
    var bi = 0;
    for (var c = tid; c < V; c = c + ${ROWS_WG}) { let v = z[zb + c]; if (v > bv || (v == bv && c < bi)) { bv = v; bi = c; } }
    bestValue[tid] = bv;
    bestIndex[tid] = bi;
    workgroupBarrier();
    for (var half = ${ROWS_WG / 2}; half > 0; half = half / 2) {
      if (tid < half) {
        let v = bestValue[tid + half];
        let i = bestIndex[tid + half];
        if (v > bestValue[tid] || (v == bestValue[tid] && i < bestIndex[tid])) { bestValue[tid] = v; bestIndex[tid] = i; }
      }
      workgroupBarrier();
    }
    if (live && tid == 0) { result[row] = bestIndex[0]; }
  }`;
  return {
    outputShape: [rows],
    variableNames: ["z"],
    uniforms: "V : i32,",
    shaderKey: "retromaeArgMax",
    workgroupSize: [ROWS_WG, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0] },
    dispatch: [rows, 1, 1] as [number, number, number],
    getUserCode: () => code,
  };
}

/** softmax(z) − onehot(y) per row, times the row's weight where weighted. z [N, V], y [N] int32, w [N] -> [N, V] */
function softmaxMinusOneHotProgram(rows: number, V: number, weighted: boolean) {
  return rowWorkgroupProgram(weighted ? "SoftmaxMinusOneHotWeighted" : "SoftmaxMinusOneHot", rows, V, weighted ? ["z", "labels", "weights"] : ["z", "labels"], "", `
${rowMaxAndSumWgsl((c) => `z[base + ${c}]`)}
    let y = labels[row];
    let w = ${weighted ? "weights[row]" : "1.0"};
    if (live) { for (var c = tid; c < n; c = c + ${ROWS_WG}) { result[base + c] = w * (exp(z[base + c] - rowMax) / total - select(0.0, 1.0, c == y)); } }`);
}

function crossEntropyKernel(kernelName: string, outputs: ("lse" | "argmax" | "dz" | "colsum")[]): KernelConfig {
  return {
    kernelName,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { x, labels, weights } = inputs as { x: TensorInfo; labels?: TensorInfo; weights?: TensorInfo };
      const b = backend as unknown as WebGPUBackendLike;
      const [N, V] = x.shape;
      const out: TensorInfo[] = [];
      const u = [{ type: "int32", data: [1] }, { type: "int32", data: [V] }];
      let dz: TensorInfo | null = null;
      for (const o of outputs) {
        if (o === "lse") out.push({ ...b.runWebGPUProgram(logSumExpProgram(N, V), [x], "float32", u), shape: [N] });
        if (o === "argmax") out.push(b.runWebGPUProgram(argMaxProgram(N, V), [x], "int32", [{ type: "int32", data: [V] }]));
        if (o === "dz") out.push((dz = b.runWebGPUProgram(softmaxMinusOneHotProgram(N, V, !!weights), [x, labels!, ...(weights ? [weights] : [])], "float32", [{ type: "int32", data: [V] }])));
        if (o === "colsum") out.push(columnSum(b, [dz!], ["dz"], "dz[at]", N, V));
      }
      return out.length === 1 ? out[0] : out;
    },
  };
}

export const logSumExpRowsWebGPU = crossEntropyKernel(LOG_SUM_EXP_ROWS, ["lse"]);
export const logSumExpArgMaxWebGPU = crossEntropyKernel(LOG_SUM_EXP_ARG_MAX, ["lse", "argmax"]);
export const softmaxMinusOneHotWebGPU = crossEntropyKernel(SOFTMAX_MINUS_ONE_HOT, ["dz"]);
export const softmaxMinusOneHotColSumWebGPU = crossEntropyKernel(SOFTMAX_MINUS_ONE_HOT_COL_SUM, ["dz", "colsum"]);

/**
 * MEAN_NLL_ACCURACY (lib/engine/fused.ts's meanNllAndAccuracy) in one raw
 * dispatch of one workgroup: each invocation adds its rows (tid, tid + 256,
 * …) of w · (lse − picked), w · hit and w in order, then a fixed tree adds
 * the invocations'. Outputs loss and accuracy, and with weights the divisor
 * max(Σ w, 1). lse, picked [N] float32, predicted, labels [N] int32, weights [N]
 */
const NLL_WG = 256;
function meanNllShader(weighted: boolean): string {
  const w = weighted ? "weights[i]" : "1.0";
  return `
${rawBindings(["loss", "accuracy", ...(weighted ? ["rowCount"] : [])], ["lse", "picked", "predicted", "labels", ...(weighted ? ["weights"] : [])], "n : i32")}
${ROW_SUM_WGSL(NLL_WG)}
@compute @workgroup_size(${NLL_WG})
fn main(@builtin(local_invocation_index) lid : u32) {
  let tid = i32(lid);
  var nll = 0.0;
  var hits = 0.0;
  var count = 0.0;
  for (var i = tid; i < uniforms.n; i = i + ${NLL_WG}) {
    let w = ${w};
    nll = nll + (lse[i] - picked[i]) * w;
    hits = hits + select(0.0, w, bitcast<i32>(predicted[i]) == bitcast<i32>(labels[i]));
    count = count + w;
  }
  let totalNll = rowReduce(tid, nll, false);
  let totalHits = rowReduce(tid, hits, false);
  let rows = ${weighted ? "max(rowReduce(tid, count, false), 1.0)" : "f32(uniforms.n)"};
  if (tid == 0) {
    loss[0] = totalNll / rows;
    accuracy[0] = totalHits / rows;${weighted ? "\n    rowCount[0] = rows;" : ""}
  }
}`;
}

export const meanNllAccuracyWebGPU: KernelConfig = {
  kernelName: MEAN_NLL_ACCURACY,
  backendName: "webgpu",
  kernelFunc: ({ inputs }) => {
    const { lse, picked, predicted, labels, weights } = inputs as Record<string, TensorInfo | undefined>;
    const n = product(lse!.shape);
    if ([lse, picked, weights].some((t) => t && t.dtype !== "float32") || [predicted, labels].some((t) => t!.dtype !== "int32") || [picked, predicted, labels, weights].some((t) => t && product(t.shape) !== n) || n === 0) {
      throw new Error(`${MEAN_NLL_ACCURACY} on webgpu takes float32 lse and picked, int32 predicted and labels, and float32 weights, all [N] with N > 0.`);
    }
    const rb = rawOf("The mean cross-entropy");
    const outs = (weights ? [0, 1, 2] : [0, 1]).map(() => rb.makeTensorInfo([], "float32"));
    recordDispatch(rb, `retromaeMeanNllAccuracy_${weights ? "weighted" : "plain"}`, () => meanNllShader(!!weights), [...outs, lse!, picked!, predicted!, labels!, ...(weights ? [weights] : [])], packUniforms([[n, "i32"]]), 1);
    return outs;
  },
};

/**
 * PICK_LABELS (lib/engine/fused.ts): z[i, y[i]] per row, with the index in
 * i32 (tfjs's gather reads indices as f32: exact only up to 2²⁴).
 * z [N, V], labels [N] int32 -> [N]
 */
export const pickLabelsWebGPU: KernelConfig = {
  kernelName: PICK_LABELS,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend }) => {
    const { x, labels } = inputs as { x: TensorInfo; labels: TensorInfo };
    const [N, V] = x.shape;
    if (x.dtype !== "float32" || labels.dtype !== "int32" || x.shape.length !== 2 || product(labels.shape) !== N) throw new Error(`${PICK_LABELS} on webgpu takes float32 z [N, V] and int32 labels [N].`);
    const program = flatProgram(N, [N], ["z", "labels"], "retromaePickLabels", "count : i32, V : i32,", `
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let label = clamp(i32(labels[index]), 0, uniforms.V - 1);
    result[index] = z[index * uniforms.V + label];
  }`);
    return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program, [x, labels], "float32", [{ type: "int32", data: [N] }, { type: "int32", data: [V] }]);
  },
};
