/**
 * Add & LayerNorm forward in one raw dispatch (./raw.ts), a workgroup per
 * row, that writes the output and, when the tape records, the normalized
 * rows and 1/σ its gradient keeps; and its gradient in two: the input's,
 * each workgroup a run of rows whose dy · x̂ and dy it also sums per column,
 * in order, and one pass adding the runs' sums in order for γ's and β's.
 * tfjs composes eleven ops each way (as tfjs programs, which write one
 * output each, this took three dispatches forward and three backward, five
 * where the column sums were split along the rows). The same kernels take a
 * step's dropout of x (a sub-layer's output) or of y (the embeddings'),
 * BertEmbeddings' sum with the position and token type rows read from their
 * tables in place (their gradients: one pass per table), and, in the MLM
 * heads' transform, GELU applied as the LayerNorm reads its input and GELU′
 * as its gradient is written (GELU_LAYER_NORM).
 */
import {
  ADD_LAYER_NORM,
  DROPOUT_ADD_LAYER_NORM,
  EMBEDDING_TABLES_GRAD,
  EMBEDDINGS_LAYER_NORM,
  EMBEDDINGS_LAYER_NORM_DROPOUT,
  GELU_LAYER_NORM,
  LAYER_NORM_DROPOUT,
  LAYER_NORM_GRAD,
} from "../fused";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { MAX_GROUPS, rawBindings, record as recordDispatch } from "./raw";
import { DROP_SEED_WGSL, DROPOUT_FIELDS, DropoutAttrs, DROPPED_WGSL, dropoutUniforms, GELU_FUNCTIONS_WGSL, packUniforms, product, rawOf, rawRowsShader, ROW_SUM_WGSL, ROWS_WG, WebGPUBackendLike, zeros } from "./program";
import { columnSums } from "./reduce";

/** What a LayerNorm kernel normalizes: x; x + residual; BertEmbeddings' sum, x + the position table's row (row mod L) + the token type table's row 0; or GELU(x) (the MLM head's transform). */
type LayerNormSum = "plain" | "residual" | "embeddings" | "gelu";

/** Where a LayerNorm kernel's dropout applies: to x as it is read (BertSelfOutput, BertOutput) or to y as it is written (BertEmbeddings). */
type DropAt = "x" | "y" | null;

/**
 * Add & LayerNorm forward in one raw dispatch, a workgroup of 64 per row of
 * s = x (+ residual) [rows, H]: mean and variance by tree reduction, then
 * y = x̂ · γ + β and, with `stats`, x̂ and 1/σ kept for the gradient. (As
 * tfjs programs, which write one output each, this took three dispatches,
 * two of them computing the statistics.) With dropout at x, s = dropout(x)
 * + residual, the mask drawn as x is read: no dropped copy is written; at
 * y, y is written dropped out (x̂ kept as it was).
 */
function layerNormShader(sum: LayerNormSum, stats: boolean, dropAt: DropAt): string {
  const outs = ["y", ...(stats ? ["xhat", "rstdOut"] : [])];
  const ins = ["x", ...{ plain: [], residual: ["residual"], embeddings: ["positions", "types"], gelu: [] }[sum], "gamma", "beta", ...(dropAt ? ["dropBase"] : [])];
  const xAt = dropAt === "x" ? "dropped(dropSeed, ib + c, x[ib + c])" : "x[ib + c]";
  const sAt = { plain: xAt, residual: `(${xAt} + residual[ib + c])`, embeddings: `(${xAt} + positions[(row % uniforms.L) * H + c] + types[c])`, gelu: `retromaeGelu(${xAt})` }[sum];
  const yAt = dropAt === "y" ? "dropped(dropSeed, ib + c, xh * gamma[c] + beta[c])" : "xh * gamma[c] + beta[c]";
  return (sum === "gelu" ? GELU_FUNCTIONS_WGSL : "") + rawRowsShader(outs, ins, `H : i32, eps : f32${sum === "embeddings" ? ", L : i32" : ""}`, `
  let H = uniforms.H;
  let ib = row * H;
  var acc = 0.0;
  for (var c = tid; c < H; c = c + ${ROWS_WG}) { acc = acc + ${sAt}; }
  let mean = rowReduce(tid, acc, false) / f32(H);
  var sq = 0.0;
  for (var c = tid; c < H; c = c + ${ROWS_WG}) { let d = ${sAt} - mean; sq = sq + d * d; }
  let rstd = inverseSqrt(rowReduce(tid, sq, false) / f32(H) + uniforms.eps);
  if (live) {
    for (var c = tid; c < H; c = c + ${ROWS_WG}) {
      let xh = (${sAt} - mean) * rstd;
      y[ib + c] = ${yAt};${stats ? "\n      xhat[ib + c] = xh;" : ""}
    }${stats ? "\n    if (tid == 0) { rstdOut[row] = rstd; }" : ""}
  }`, dropAt !== null);
}

/** The name suffix of a LayerNorm kernel's dispatches with dropout at x or y. */
const dropSuffix = (dropAt: DropAt) => (dropAt === "x" ? "_dropout" : dropAt === "y" ? "_dropoutY" : "");

/** ADD_LAYER_NORM, DROPOUT_ADD_LAYER_NORM (x dropped out), LAYER_NORM_DROPOUT (y dropped out), the EMBEDDINGS_LAYER_NORM pair (`positions` and `types` inputs) and GELU_LAYER_NORM (`gelu`); with dropout, `base` an input and the call's attributes. */
const layerNormKernel = (dropAt: DropAt, gelu = false): KernelFunc => ({ inputs, attrs }) => {
  const { x, residual, positions, types, gamma, beta, base } = inputs as Record<string, TensorInfo | undefined>;
  const sum: LayerNormSum = gelu ? "gelu" : positions ? "embeddings" : residual ? "residual" : "plain";
  const rb = rawOf("Add & LayerNorm");
  const H = x!.shape[x!.shape.length - 1];
  const rows = product(x!.shape) / H;
  const { eps, stats } = attrs as unknown as { eps: number; stats?: boolean };
  const keep = stats !== false;
  const outs = [[...x!.shape], ...(keep ? [[...x!.shape], [rows]] : [])];
  if (rows * H === 0) return outs.map((shape) => (rb as unknown as WebGPUBackendLike).makeTensorInfo(shape, "float32", new Float32Array(0)));
  const outputs = outs.map((shape) => rb.makeTensorInfo(shape, "float32"));
  // (the embeddings' x is [B, L, H]: row r is position r mod L)
  const L = sum === "embeddings" ? x!.shape[x!.shape.length - 2] : 0;
  const u = packUniforms([[rows, "i32"], [H, "i32"], [eps, "f32"], ...(sum === "embeddings" ? [[L, "i32"] as [number, "i32"]] : []), ...(dropAt ? dropoutUniforms(attrs as unknown as DropoutAttrs) : [])]);
  const ins = [x!, ...(residual ? [residual] : []), ...(positions ? [positions, types!] : []), gamma!, beta!, ...(dropAt ? [base!] : [])];
  const key = `retromaeAddLayerNorm_${sum}_${keep ? "stats" : "y"}${dropSuffix(dropAt)}`;
  recordDispatch(rb, key, () => layerNormShader(sum, keep, dropAt), [...outputs, ...ins], u, rows);
  return outputs;
};

export const addLayerNormWebGPU: KernelConfig = { kernelName: ADD_LAYER_NORM, backendName: "webgpu", kernelFunc: layerNormKernel(null) };
export const dropoutAddLayerNormWebGPU: KernelConfig = { kernelName: DROPOUT_ADD_LAYER_NORM, backendName: "webgpu", kernelFunc: layerNormKernel("x") };
export const layerNormDropoutWebGPU: KernelConfig = { kernelName: LAYER_NORM_DROPOUT, backendName: "webgpu", kernelFunc: layerNormKernel("y") };
export const embeddingsLayerNormWebGPU: KernelConfig = { kernelName: EMBEDDINGS_LAYER_NORM, backendName: "webgpu", kernelFunc: layerNormKernel(null) };
export const embeddingsLayerNormDropoutWebGPU: KernelConfig = { kernelName: EMBEDDINGS_LAYER_NORM_DROPOUT, backendName: "webgpu", kernelFunc: layerNormKernel("y") };
export const geluLayerNormWebGPU: KernelConfig = { kernelName: GELU_LAYER_NORM, backendName: "webgpu", kernelFunc: layerNormKernel(null, true) };

/**
 * EMBEDDING_TABLES_GRAD: the position and token-type tables' gradients from
 * the embeddings' ds [B, L, H], each element in a fixed order: position
 * row p < L is Σ_b ds[b, p] (an invocation per element of the table, the
 * batch in order), row p ≥ L zero; then token type row 0 is Σ_p over those
 * rows, in order, the other rows zero. Two raw dispatches, where the adds'
 * gradients (two reductions) and the slices' (two pads) took four.
 * -> [positions, H], [types, H]
 */
function embeddingTablesShader(types: boolean): string {
  const body = types
    ? "var acc = 0.0;\n    if (row == 0) { for (var p = 0; p < uniforms.L; p = p + 1) { acc = acc + src[p * uniforms.H + c]; } }"
    : "var acc = 0.0;\n    if (row < uniforms.L) { for (var b = 0; b < uniforms.B; b = b + 1) { acc = acc + src[(b * uniforms.L + row) * uniforms.H + c]; } }";
  return `
${rawBindings(["table"], ["src"], "n : i32, H : i32, L : i32, B : i32")}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let i = i32((wid.x + wid.y * ${MAX_GROUPS}u) * 256u + lid);
  if (i < uniforms.n) {
    let row = i / uniforms.H;
    let c = i - row * uniforms.H;
    ${body}
    table[i] = acc;
  }
}`;
}

export const embeddingTablesGradWebGPU: KernelConfig = {
  kernelName: EMBEDDING_TABLES_GRAD,
  backendName: "webgpu",
  kernelFunc: ({ inputs, attrs }) => {
    const { ds } = inputs as { ds: TensorInfo };
    const { positions: P, types: T } = attrs as unknown as { positions: number; types: number };
    const [B, L, H] = ds.shape;
    const rb = rawOf("The embeddings' gradient");
    const wb = rb as unknown as WebGPUBackendLike;
    // (nothing to sum, or no table: zeros. A pass would bind an empty buffer, which WebGPU rejects)
    if (B * L * H === 0 || P * T === 0) return [zeros(wb, [P, H], "float32"), zeros(wb, [T, H], "float32")];
    const [dpos, dtype] = [rb.makeTensorInfo([P, H], "float32"), rb.makeTensorInfo([T, H], "float32")];
    recordDispatch(rb, "retromaeEmbeddingTablesGrad_positions", () => embeddingTablesShader(false), [dpos, ds], packUniforms([[P * H, "i32"], [H, "i32"], [L, "i32"], [B, "i32"]]), Math.ceil((P * H) / 256));
    recordDispatch(rb, "retromaeEmbeddingTablesGrad_types", () => embeddingTablesShader(true), [dtype, dpos], packUniforms([[T * H, "i32"], [H, "i32"], [L, "i32"], [B, "i32"]]), Math.ceil((T * H) / 256));
    return [dpos, dtype];
  },
};

/** Workgroups LayerNorm's gradient spreads its rows over, at most: the runs of rows whose γ and β sums a second pass adds. */
const LAYER_NORM_GRAD_GROUPS = 1024;

/**
 * LayerNorm's gradient for the sum s, in one raw dispatch: a workgroup of
 * 64 takes `per` consecutive rows, each as
 * ds = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · γ; with dropout at x
 * also dx, ds under x's mask (the forward's, drawn again), and at y, dy read
 * under y's mask. As it goes, each invocation adds its columns' dy · x̂ and
 * dy over the group's rows, in order, in `perLane` registers a column, and
 * writes them as the group's row of `partial` [groups, 2, H] (γ's, then
 * β's): dy and x̂ are read once, where a column sum read them again. With
 * `geluOf` (the LayerNorm of GELU(pre): GELU_LAYER_NORM), ds is written as
 * pre's gradient, ds · GELU′(pre) (GELU_GRAD's arithmetic).
 */
function layerNormGradShader(dropAt: DropAt, perLane: number, geluOf = false): string {
  const outs = ["ds", ...(dropAt === "x" ? ["dx"] : []), "partial"];
  const ins = ["dy", "xhat", "rstd", "gamma", ...(dropAt ? ["dropBase"] : []), ...(geluOf ? ["pre"] : [])];
  const dyAt = dropAt === "y" ? "dropped(dropSeed, ib + c, dy[ib + c])" : "dy[ib + c]";
  return `
${rawBindings(outs, ins, `rows : i32, H : i32, per : i32${dropAt ? `, ${DROPOUT_FIELDS}` : ""}`)}
${ROW_SUM_WGSL(ROWS_WG)}
${dropAt ? DROPPED_WGSL : ""}${geluOf ? GELU_FUNCTIONS_WGSL : ""}
@compute @workgroup_size(${ROWS_WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let group = i32(wid.x + wid.y * ${MAX_GROUPS}u);
  let tid = i32(lid);
  let n = uniforms.H;
  ${dropAt ? DROP_SEED_WGSL : ""}
  var sumG : array<f32, ${perLane}>;
  var sumB : array<f32, ${perLane}>;
  for (var k = 0; k < uniforms.per; k = k + 1) {
    let at = group * uniforms.per + k;
    // (past the last row, the group's rest computes the last row again and writes nothing: its barriers need every invocation)
    let live = at < uniforms.rows;
    let row = min(at, uniforms.rows - 1);
    let ib = row * n;
    var a = 0.0;
    var bx = 0.0;
    for (var c = tid; c < n; c = c + ${ROWS_WG}) { let g = ${dyAt} * gamma[c]; a = a + g; bx = bx + g * xhat[ib + c]; }
    let meanG = rowReduce(tid, a, false) / f32(n);
    let meanGX = rowReduce(tid, bx, false) / f32(n);
    let r = rstd[row];
    if (live) {
      var j = 0;
      for (var c = tid; c < n; c = c + ${ROWS_WG}) {
        let g = ${dyAt};
        let xh = xhat[ib + c];
        let d = r * (g * gamma[c] - meanG - xh * meanGX);
        ds[ib + c] = ${geluOf ? "retromaeGeluGrad(pre[ib + c], d)" : "d"};${dropAt === "x" ? "\n        dx[ib + c] = dropped(dropSeed, ib + c, d);" : ""}
        sumG[j] = sumG[j] + g * xh;
        sumB[j] = sumB[j] + g;
        j = j + 1;
      }
    }
  }
  let pb = group * 2 * n;
  var j = 0;
  for (var c = tid; c < n; c = c + ${ROWS_WG}) { partial[pb + c] = sumG[j]; partial[pb + n + c] = sumB[j]; j = j + 1; }
}`;
}

export const layerNormGradWebGPU: KernelConfig = {
  kernelName: LAYER_NORM_GRAD,
  backendName: "webgpu",
  kernelFunc: ({ inputs, attrs }) => {
    const { dy, xhat, rstd, gamma, base, pre } = inputs as Record<string, TensorInfo>;
    if (pre && base) throw new Error(`${LAYER_NORM_GRAD} on webgpu takes pre (a LayerNorm of GELU(pre)) or a dropout's base, not both.`);
    const rb = rawOf("LayerNorm's gradient");
    const wb = rb as unknown as WebGPUBackendLike;
    const dropAt: DropAt = base ? ((attrs as { dropOutput?: boolean }).dropOutput ? "y" : "x") : null;
    const H = gamma.shape[gamma.shape.length - 1];
    const rows = H === 0 ? 0 : product(dy.shape) / H;
    const grads = [[...dy.shape], ...(dropAt === "x" ? [[...dy.shape]] : [])];
    // (no rows: γ's and β's gradients are zeros. A pass would bind an empty buffer, which WebGPU rejects)
    if (rows === 0) {
      const [ds, dx] = grads.map((shape) => wb.makeTensorInfo(shape, "float32", new Float32Array(0)));
      return [ds, zeros(wb, [...gamma.shape], "float32"), zeros(wb, [...gamma.shape], "float32"), ...(dx ? [dx] : [])];
    }
    const [ds, dx] = grads.map((shape) => rb.makeTensorInfo(shape, "float32"));
    // rows per workgroup: the same shape always splits the same way (the same bits run after run)
    const per = Math.ceil(rows / LAYER_NORM_GRAD_GROUPS);
    const groups = Math.ceil(rows / per);
    const partial = rb.makeTensorInfo([groups, 2, H], "float32");
    const u = packUniforms([[rows, "i32"], [H, "i32"], [per, "i32"], ...(dropAt ? dropoutUniforms(attrs as unknown as DropoutAttrs) : [])]);
    const perLane = Math.ceil(H / ROWS_WG);
    recordDispatch(rb, `retromaeLayerNormDs${dropSuffix(dropAt)}${pre ? "_gelu" : ""}_${perLane}`, () => layerNormGradShader(dropAt, perLane, !!pre), [ds, ...(dx ? [dx] : []), partial, dy, xhat, rstd, gamma, ...(base ? [base] : []), ...(pre ? [pre] : [])], u, groups);
    // dγ = Σ_rows dy · x̂ and dβ = Σ_rows dy: the groups' sums added in order, in one pass
    const [dgamma, dbeta] = columnSums(rb, "LayerNormGammaBeta", [partial], ["p"], ["p[at + r * uniforms.cols]", "p[at + (r + 1) * uniforms.cols]"], groups, H);
    wb.disposeData(partial.dataId);
    const shaped = (t: TensorInfo) => ({ dataId: t.dataId, shape: [...gamma.shape], dtype: "float32" as const });
    return [ds, shaped(dgamma), shaped(dbeta), ...(dx ? [dx] : [])];
  },
};
