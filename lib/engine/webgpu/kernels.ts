/// <reference types="@webgpu/types" />
/**
 * Kernels this project registers for tfjs's webgpu backend, in WGSL, run
 * through the backend's `runWebGPUProgram`:
 *
 * - UnsortedSegmentSum (the gradient of `gather`, so of every embedding
 *   lookup), deterministic. tfjs's own adds floats with atomics, whose order,
 *   and so whose bits, change from run to run. Here each output element has
 *   one owner: the first input row with its segment id, which sums every
 *   row of that id in index order, as the cpu backend does. Bit for bit the
 *   cpu backend's sum.
 * - Softmax over the last axis whose rows may be all -FLT_MAX (HF's mask
 *   value: padding rows of the decoder's attention see nothing). tfjs's
 *   starts each row's max at -3.402823e38, which is above -FLT_MAX, so such
 *   a row sums to 0 and gives NaN, and the NaN reaches every gradient through
 *   the attention's backward pass. Here a row's max starts at its first
 *   element: such a row is uniform, as on the cpu backend and in PyTorch.
 * - (AdamW in place and the gradients' global norm are in ./optimizer.ts:
 *   they write several buffers per dispatch, which a tfjs program cannot.)
 * - Dropout with its mask from a counter-based hash drawn per element
 *   (lib/engine/fused.ts's DROPOUT): tfjs draws dropout's noise on the CPU
 *   and uploads it.
 * - GELU (exact, erf form) and its gradient, one pass each, where tfjs
 *   composes five ops forward and a dozen backward (lib/engine/fused.ts).
 * - Add & LayerNorm forward in one raw dispatch (./raw.ts), a workgroup per
 *   row, that writes the output and, when the tape records, the normalized
 *   rows and 1/σ its gradient keeps; and its gradient in two: the input's,
 *   each workgroup a run of rows whose dy · x̂ and dy it also sums per
 *   column, in order, and one pass adding the runs' sums in order for γ's
 *   and β's. tfjs composes eleven ops each way (as tfjs programs, which
 *   write one output each, this took three dispatches forward and three
 *   backward, five where the column sums were split along the rows). The
 *   same kernels take a step's dropout of x (a sub-layer's output) or of y
 *   (the embeddings'), and BertEmbeddings' sum with the position and token
 *   type rows read from their tables in place (their gradients: one pass
 *   per table).
 * - The attention softmax with its scale and additive mask, forward and
 *   backward, a workgroup per row (all-masked rows uniform, as above).
 * - The additive mask of a 0/1 byte matrix (the decoder's attention mask),
 *   from its bytes four to a word: the upload is a quarter of int32s'.
 * - The whole attention for inference (encoding, the probe): per head,
 *   softmax(q kᵀ · scale + mask) v read from and written to [B, L, H] in
 *   place, with an online softmax over key tiles in workgroup memory: no
 *   head transposes, and no [B, heads, L, L] scores or probabilities.
 * - The attention in training (fused.ts attentionTraining: q·kᵀ, p·v and
 *   their four gradients) on the heads side by side in their stacked
 *   projections ([B, L, 3H] in self-attention), each operand read and the
 *   output written through strides (matmul.ts headMatMulProgram), and q's,
 *   k's and v's gradients written side by side into the projection's
 *   (ATTENTION_GRAD): no transposes to split and merge the heads, eight per
 *   attention layer and step, no split copies of q, k and v kept for the
 *   backward pass, and one matmul for the projections each way. The stacked
 *   weights are copied together, and their gradients apart, in one
 *   dispatch each (STACK_ROWS, UNSTACK_ROWS). Where the batched [Lq, Lk]
 *   product takes the 128 × 128 tiled matmul (a base model at 512 tokens),
 *   the heads are split as before.
 * - The masked cross-entropy's pieces: log Σ exp per row with each row's
 *   argmax, and softmax − onehot(labels) with its column sums (the tied
 *   decoder's bias gradient), written straight into their outputs: no
 *   [N, vocab] temporaries beyond the gradient itself; and the mean loss and
 *   accuracy over the rows in one workgroup.
 * - The dense layer with its bias and GELU in one dispatch, for inference:
 *   tfjs's own fused matmul with its activation function swapped for the
 *   exact GELU (training keeps the pre-activation for GELU's gradient, so
 *   there the dense layer and GELU stay two passes). In training, GELU's
 *   gradient in the feed-forward block is the epilogue of the next dense
 *   layer's input gradient (fused.ts feedForward, GELU_LINEAR_DX): the
 *   product times GELU′(pre) as it is written, in tfjs's program (a PReLU
 *   epilogue, pre as its weights, the activation swapped) or the tiled one;
 *   in the MLM heads' transform, GELU is applied as the LayerNorm reads its
 *   input and GELU′ as its gradient is written (GELU_LAYER_NORM).
 * - Matmuls without atomics: where tfjs would split one along K and add the
 *   parts with float atomics (a batch of one, K ≥ 2000, a small output), its
 *   small-output program runs instead, so the bits do not change from run
 *   to run.
 * - Sum over leading axes (every bias gradient) in one pass, where tfjs
 *   transposes the input and then reduces; Transpose by the identity
 *   permutation (two per gather gradient) as a relabelling, not a copy.
 * - A dense layer's weight and bias gradients together (fused.ts
 *   DENSE_WEIGHT_GRADS): where dyᵀ·x is split along the rows (a small
 *   model's weights over its tokens), the bias gradient Σ_rows dy is summed
 *   from the tiles of dy that dispatch stages anyway, and one more dispatch
 *   adds both one's parts: two where the split matmul, the sum of its parts
 *   and the bias's column sum (two passes where its rows split) took three
 *   or four; where the rows are too few to split, that dispatch alone.
 * - A dense layer that starts a sub-layer (Q, K and V's projection, the
 *   feed-forward's first layer) with its input given back as a second
 *   output for the residual connection (fused.ts DENSE_AND_INPUT): its
 *   gradient adds the residual's gradient of x into dx = dy·W as the
 *   product is written (tfjs's bias epilogue, or the tiled program's addend
 *   of C's shape), where tfjs's tape added x's two gradients in a pass of its
 *   own: the same sum, one dispatch and a [N, H] read twice and written
 *   once fewer per sub-layer.
 * - Empty inputs: WebGPU rejects a dispatch that binds an empty buffer, and
 *   its output keeps whatever its pooled buffer held. A sum over no elements
 *   is zeros, a matmul over K = 0 is tfjs's over a K of one zero (its bias
 *   and activation still apply), and every kernel here returns before it
 *   binds an empty input (the backend's start refuses the rest in one
 *   sentence).
 * - AddN within the adapter's limits. tfjs binds every input to one shader;
 *   a gradient sum over more inputs than `maxStorageBuffersPerShaderStage`
 *   (8 on the smallest adapters) fails pipeline validation. Here the inputs
 *   are summed in runs that fit, left to right: the same additions in the same
 *   order, so the same bits.
 */
import * as tf from "../tf";
import {
  ADD_LAYER_NORM,
  ADDITIVE_MASK_OF_BYTES,
  ATTENTION,
  DENSE_AND_INPUT,
  DENSE_GELU,
  DENSE_WEIGHT_GRADS,
  GELU_LINEAR_DX,
  GELU_LAYER_NORM,
  DROPOUT,
  DROPOUT_ADD_LAYER_NORM,
  LAYER_NORM_DROPOUT,
  EMBEDDINGS_LAYER_NORM,
  EMBEDDINGS_LAYER_NORM_DROPOUT,
  EMBEDDING_TABLES_GRAD,
  DROPOUT_SOFTMAX,
  ATTENTION_GRAD,
  EMBEDDING_GRAD,
  HEAD_MATMUL,
  GELU,
  GELU_GRAD,
  LAYER_NORM_GRAD,
  LOG_SUM_EXP_ARG_MAX,
  LOG_SUM_EXP_ROWS,
  PICK_LABELS,
  MEAN_NLL_ACCURACY,
  SCALED_MASKED_SOFTMAX,
  SCALED_SOFTMAX_GRAD,
  SOFTMAX_MINUS_ONE_HOT,
  SOFTMAX_MINUS_ONE_HOT_COL_SUM,
  STACK_ROWS,
  UNSTACK_ROWS,
} from "../fused";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { MAX_GROUPS, rawBackend, RawBackend, rawBindings, record as recordDispatch } from "./raw";
import { GELU_FUNCTIONS_WGSL, headMatMulProgram, HeadStrides, headsSideBySide, headsStacked, headStridesAt, fewOutputTiles, SPLIT_TILE, splitKEnabled, splitKGrid, splitKMatMulProgram, splitKParts, splitKRowSumsShader, takesTiledMatMul, TILED_STEP_K, TiledEpilogue, tiledMatMulProgram, tiledSplitKParts, transposedHeads } from "./matmul";

/** What these kernels use of tfjs-backend-webgpu's WebGPUBackend. */
export interface WebGPUBackendLike {
  device: GPUDevice;
  tensorMap: { get(dataId: object): { refCount: number; values: unknown } | undefined };
  runWebGPUProgram(program: object, inputs: TensorInfo[], outputDtype: tf.DataType, uniforms?: { type: string; data: number[] }[], output?: TensorInfo): TensorInfo;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: ArrayLike<number>): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

const WORKGROUP = 64;

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Int32 uniforms for runWebGPUProgram, in the order a program declares them. */
function ints(...values: number[]): { type: string; data: number[] }[] {
  return values.map((v) => ({ type: "int32", data: [v] }));
}

/** The fields tfjs-webgpu's program builder reads, for a flat 1-D dispatch over `size` invocations. */
function flatProgram(size: number, outputShape: number[], variableNames: string[], shaderKey: string, uniforms: string, body: string) {
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

/**
 * The rows' links for segmentSumProgram, one invocation per row i (O(n²)
 * reads of the ids, none of x): link[i] = 2·next + first, where next is the
 * first row after i with the same id (n where none) and first is 1 where no
 * row before i has it; -1 where ids[i] is outside [0, numSegments) (dropped,
 * as TensorFlow drops it) or is the `skip` uniform (an embedding's padding
 * id: fused.ts embeddingGrad; -1 skips nothing more). ids [n] -> [n] int32
 */
export function segmentLinksProgram(n: number) {
  const body = `
  fn main(index : i32) {
    let n = uniforms.rows;
    if (index >= n) { return; }
    let s = i32(segmentIds[index]);
    if (s < 0 || s >= uniforms.numSegments || s == uniforms.skip) { result[index] = -1; return; }
    var first = 1;
    for (var k = 0; k < index; k = k + 1) {
      if (i32(segmentIds[k]) == s) { first = 0; break; }
    }
    var next = n;
    for (var k = index + 1; k < n; k = k + 1) {
      if (i32(segmentIds[k]) == s) { next = k; break; }
    }
    result[index] = next * 2 + first;
  }`;
  return flatProgram(n, [n], ["segmentIds"], "retromaeSegmentLinks", "rows : i32, numSegments : i32, skip : i32,", body);
}

/**
 * out[s, j] = Σ x[i, j] over i with ids[i] = s, in increasing i; ids outside
 * [0, numSegments) dropped, as TensorFlow does. x [n, inner...] flattened to
 * [n, m]; out [numSegments, m], zero where no id points (the caller zeroes it).
 *
 * One invocation per (i, j): the first row i of each segment follows its
 * links (segmentLinksProgram) through the segment's rows in order and writes
 * the sum; every other invocation returns. O(n·m) reads of x and no atomics.
 * (It once had each invocation find its segment's rows by scanning all the
 * ids: O(n²·m), some 10¹¹ reads for a base model's 16,384 tokens.)
 */
export function segmentSumProgram(n: number, m: number, numSegments: number, dtype: "float32" | "int32") {
  const zero = dtype === "float32" ? "0.0" : "0";
  const body = `
  fn main(index : i32) {
    let n = uniforms.rows;
    let m = uniforms.cols;
    if (index >= n * m) { return; }
    let i = index / m;
    let j = index - i * m;
    let link = i32(links[i]);
    if (link < 0 || link % 2 == 0) { return; }
    var acc = ${zero};
    var k = i;
    // at most n rows: bounded, so that no chain can loop forever (an unbounded loop here also
    // came out wrong on SwiftShader without Dawn's bounds checks, exiting one row early)
    for (var rows = 0; rows < n; rows = rows + 1) {
      acc = acc + x[k * m + j];
      k = i32(links[k]) / 2;
      if (k >= n) { break; }
    }
    result[i32(segmentIds[i]) * m + j] = acc;
  }`;
  return flatProgram(n * m, [numSegments, m], ["x", "segmentIds", "links"], `retromaeSegmentSum_${dtype}`, "rows : i32, cols : i32, numSegments : i32,", body);
}

/** A new [size] tensor of zeros, written on the device. */
function zeros(backend: WebGPUBackendLike, shape: number[], dtype: "float32" | "int32"): TensorInfo {
  const size = product(shape);
  const body = `
  fn main(index : i32) {
    if (index < uniforms.count) { result[index] = ${dtype === "float32" ? "0.0" : "0"}; }
  }`;
  const program = flatProgram(size, shape, [], `retromaeZeros_${dtype}`, "count : i32,", body);
  return backend.runWebGPUProgram(program, [], dtype, [{ type: "int32", data: [size] }]);
}

/**
 * UnsortedSegmentSum, deterministic (segmentSumProgram); and EMBEDDING_GRAD,
 * the same with the rows of one id (attrs `skip`) left out.
 */
const segmentSumKernel = (kernelName: string): KernelConfig => ({
  kernelName,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const { numSegments, skip } = attrs as unknown as { numSegments: number; skip?: number };
    const b = backend as unknown as WebGPUBackendLike;
    if (x.dtype !== "float32" && x.dtype !== "int32") throw new Error(`UnsortedSegmentSum on webgpu takes float32 or int32, got ${x.dtype}.`);
    const n = product(segmentIds.shape);
    const inner = x.shape.slice(segmentIds.shape.length);
    const m = product(inner);
    const out = zeros(b, [numSegments, m], x.dtype);
    if (n > 0 && m > 0 && numSegments > 0) {
      const ids = { ...segmentIds, shape: [n] };
      const links = b.runWebGPUProgram(segmentLinksProgram(n), [ids], "int32", ints(n, numSegments, skip ?? -1));
      const uniforms = [{ type: "int32", data: [n] }, { type: "int32", data: [m] }, { type: "int32", data: [numSegments] }];
      b.runWebGPUProgram(segmentSumProgram(n, m, numSegments, x.dtype), [x, ids, links], x.dtype, uniforms, out);
      b.disposeData(links.dataId);
    }
    // The same buffer as [numSegments, ...inner], as tfjs's Reshape relabels one.
    return { dataId: out.dataId, shape: [numSegments, ...inner], dtype: out.dtype };
  },
});

export const deterministicUnsortedSegmentSum = segmentSumKernel(tf.UnsortedSegmentSum);
export const embeddingGradWebGPU = segmentSumKernel(EMBEDDING_GRAD);

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
function rowWorkgroupProgram(key: string, rows: number, cols: number, variableNames: string[], uniforms: string, body: string, wg = 64, prelude = "") {
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

/**
 * Row-wise softmax of x [rows, cols]: one workgroup per row, max and sum by
 * tree reduction in workgroup memory.
 */
export function softmaxProgram(rows: number, cols: number) {
  const wg = cols >= 4096 ? 256 : 64;
  return rowWorkgroupProgram("Softmax", rows, cols, ["x"], "", `
    var m = x[base];
    for (var c = tid; c < n; c = c + ${wg}) { m = max(m, x[base + c]); }
    let rowMax = rowReduce(tid, m, true);
    var acc = 0.0;
    for (var c = tid; c < n; c = c + ${wg}) { acc = acc + exp(x[base + c] - rowMax); }
    let total = rowReduce(tid, acc, false);
    if (live) { for (var c = tid; c < n; c = c + ${wg}) { result[base + c] = exp(x[base + c] - rowMax) / total; } }`, wg);
}

export const robustSoftmax: KernelConfig = {
  kernelName: tf.Softmax,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { logits } = inputs as { logits: TensorInfo };
    const { dim } = attrs as unknown as { dim: number };
    const rank = logits.shape.length;
    if (dim !== -1 && dim !== rank - 1) throw new Error(`Softmax along axis ${dim} of a rank-${rank} tensor is not supported on webgpu; only the last axis is.`);
    const cols = logits.shape[rank - 1];
    const rows = cols === 0 ? 0 : product(logits.shape) / cols;
    const b = backend as unknown as WebGPUBackendLike;
    const out = b.runWebGPUProgram(softmaxProgram(rows, cols), [{ ...logits, shape: [rows, cols] }], "float32", [{ type: "int32", data: [cols] }]);
    return { dataId: out.dataId, shape: logits.shape, dtype: "float32" };
  },
};

/** An elementwise program over `inputs` (with matmul.ts's retromaeGelu and retromaeGeluGrad in scope). */
function elementwise(name: string, inputs: string[], expr: string) {
  return (n: number) => {
    const body = `${GELU_FUNCTIONS_WGSL}
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let i = index;
    result[i] = ${expr};
  }`;
    return flatProgram(n, [n], inputs, `retromae${name}`, "count : i32,", body);
  };
}

/** x · Φ(x) = 0.5 · x · (1 + erf(x / √2)) */
const geluProgram = elementwise("Gelu", ["x"], "retromaeGelu(x[i])");
/** dy · (Φ(x) + x · φ(x)) */
const geluGradProgram = elementwise("GeluGrad", ["x", "dy"], "retromaeGeluGrad(x[i], dy[i])");

function elementwiseKernel(kernelName: string, program: (n: number) => object, names: string[]): KernelConfig {
  return {
    kernelName,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const ts = names.map((k) => (inputs as Record<string, TensorInfo>)[k]);
      const n = product(ts[0].shape);
      if (ts.some((t) => t.dtype !== "float32" || product(t.shape) !== n)) throw new Error(`${kernelName} on webgpu takes float32 inputs of one shape.`);
      const out = (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program(n), ts.map((t) => ({ ...t, shape: [n] })), "float32", [{ type: "int32", data: [n] }]);
      return { dataId: out.dataId, shape: ts[0].shape, dtype: "float32" };
    },
  };
}

/** fused.ts's hash32 (lowbias32) in WGSL. */
const HASH_WGSL = `
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
const DROPOUT_FIELDS = "dropSeed : u32, dropThreshold : u32, dropScale : f32";
const DROPPED_WGSL = `${HASH_WGSL}
  fn dropped(seed : u32, i : i32, v : f32) -> f32 {
    return select(0.0, v * uniforms.dropScale, retromaeHash(seed ^ u32(i)) >= uniforms.dropThreshold);
  }`;
const DROP_SEED_WGSL = "let dropSeed = retromaeHash(bitcast<u32>(dropBase[0]) ^ uniforms.dropSeed);";

/** A raw shader's uniforms, four bytes each, of the types given. */
function packUniforms(values: [number, "i32" | "u32" | "f32"][]): ArrayBuffer {
  const u = new ArrayBuffer(4 * values.length);
  const view = new DataView(u);
  values.forEach(([v, type], i) => (type === "f32" ? view.setFloat32(4 * i, v, true) : type === "u32" ? view.setUint32(4 * i, v >>> 0, true) : view.setInt32(4 * i, v, true)));
  return u;
}

/** A dropout call's uniforms (DROPOUT_FIELDS), from its attributes. */
function dropoutUniforms(attrs: { dropSeed: number; dropThreshold: number; dropScale: number }): [number, "u32" | "f32"][] {
  return [[attrs.dropSeed, "u32"], [attrs.dropThreshold, "u32"], [attrs.dropScale, "f32"]];
}

/**
 * DROPOUT (lib/engine/fused.ts): the mask from the same 32-bit hash as the
 * JavaScript kernel, drawn here per element, so no noise is drawn on the CPU
 * or uploaded; bit for bit the JavaScript kernel's output.
 */
function dropoutProgram(n: number, based: boolean) {
  // with a base seed (an int32 [1] input), the mask's seed is hash(base ^ hash(call)) (DropoutSeeds)
  const seed = based ? "retromaeHash(u32(base[0]) ^ uniforms.seed)" : "uniforms.seed";
  const body = `${HASH_WGSL}
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let keep = retromaeHash(${seed} ^ u32(index)) >= uniforms.threshold;
    result[index] = select(0.0, x[index] * uniforms.scale, keep);
  }`;
  return flatProgram(n, [n], based ? ["x", "base"] : ["x"], `retromaeDropout_${based ? "based" : "plain"}`, "count : i32, seed : u32, threshold : u32, scale : f32,", body);
}

export const dropoutWebGPU: KernelConfig = {
  kernelName: DROPOUT,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, base } = inputs as { x: TensorInfo; base?: TensorInfo };
    const { seed, threshold, scale } = attrs as unknown as { seed: number; threshold: number; scale: number };
    if (x.dtype !== "float32") throw new Error("Dropout on webgpu takes float32.");
    if (base && (base.dtype !== "int32" || product(base.shape) !== 1)) throw new Error("Dropout's base seed must be an int32 tensor of one value.");
    const n = product(x.shape);
    const out = (backend as unknown as WebGPUBackendLike).runWebGPUProgram(dropoutProgram(n, !!base), [{ ...x, shape: [n] }, ...(base ? [{ ...base, shape: [1] }] : [])], "float32", [
      { type: "int32", data: [n] },
      { type: "uint32", data: [seed] },
      { type: "uint32", data: [threshold] },
      { type: "float32", data: [scale] },
    ]);
    return { dataId: out.dataId, shape: x.shape, dtype: "float32" };
  },
};

/** 0 where byte i of `words` (little endian, four to a word) is set, `value` where it is 0. words [⌈n/4⌉] int32 -> [n] */
function additiveMaskOfBytesProgram(n: number) {
  const body = `
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let byte = (u32(words[index / 4]) >> (8u * u32(index % 4))) & 0xffu;
    result[index] = select(uniforms.value, 0.0, byte != 0u);
  }`;
  return flatProgram(n, [n], ["words"], "retromaeAdditiveMaskOfBytes", "count : i32, value : f32,", body);
}

export const additiveMaskOfBytesWebGPU: KernelConfig = {
  kernelName: ADDITIVE_MASK_OF_BYTES,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { words } = inputs as { words: TensorInfo };
    const { shape, value } = attrs as unknown as { shape: number[]; value: number };
    const b = backend as unknown as WebGPUBackendLike;
    const n = product(shape);
    if (words.dtype !== "int32" || 4 * product(words.shape) < n) throw new Error(`${ADDITIVE_MASK_OF_BYTES} on webgpu takes int32 words holding at least ${n} bytes.`);
    if (n === 0) return b.makeTensorInfo([...shape], "float32", new Float32Array(0));
    const out = b.runWebGPUProgram(additiveMaskOfBytesProgram(n), [words], "float32", [
      { type: "int32", data: [n] },
      { type: "float32", data: [value] },
    ]);
    return { dataId: out.dataId, shape: [...shape], dtype: "float32" };
  },
};

export const geluWebGPU = elementwiseKernel(GELU, geluProgram, ["x"]);
export const geluGradWebGPU = elementwiseKernel(GELU_GRAD, geluGradProgram, ["x", "dy"]);

/** tfjs-webgpu's program fields these kernels read or change. */
interface TfjsProgram {
  shaderKey: string;
  getUserCode(): string;
}

/**
 * Bound the reads of B in tfjs-webgpu's matmul programs. Its `mm_readB`
 * (4.22) never checks its indices: a tile that runs past K or N reads past
 * B, relying on the row of A it meets being zero and on Dawn's bounds
 * checks to keep the read inside B's buffer. With those checks off (the
 * default, ./dawn.ts robustnessWanted) a read past the buffer's end returns
 * whatever memory follows, and NaN × 0 is NaN: the attention's dO·Vᵀ at
 * 16-wide heads (K = 16 in 32-deep tiles) made NaN gradients on SwiftShader.
 * The read is now `row < dimInner && col < dimBOuter` (row runs along K and
 * col along N, whichever way B is transposed; col counts elements in the
 * vec4 programs too), as mm_readA's is, except in a packed program whose
 * tiles fit both (its shader key says so). Throws if the function is not
 * tfjs 4.22's.
 */
export function boundReadsOfB(program: TfjsProgram & { fitBOuter?: boolean; fitInner?: boolean }): void {
  if (!/^matMul(Packed|SmallOutputSize)_/.test(program.shaderKey)) return;
  if (program.fitBOuter && program.fitInner) return;
  const userCode = program.getUserCode.bind(program);
  program.getUserCode = () => {
    const code = userCode();
    const read = /(fn mm_readB\(batch: i32, row: i32, col: i32\) -> (?:f32|vec4<f32>) \{\s*var value = (?:f32|vec4<f32>)\(0\.0\);\s*)(value = getB\(batch, (?:col, row|row, col)\);)/.exec(code);
    if (!read) throw new Error(`tfjs-webgpu's matmul program (${program.shaderKey}) has no mm_readB of tfjs 4.22's form to bound; reinstall the pinned @tensorflow/tfjs-backend-webgpu with npm ci.`);
    return code.slice(0, read.index) + `${read[1]}if (row < uniforms.dimInner && col < uniforms.dimBOuter) { ${read[2]} }` + code.slice(read.index + read[0].length);
  };
}

/** Run `fn` with every program it hands to runWebGPUProgram first passed through `edit`. */
function editingPrograms<T>(b: WebGPUBackendLike, edit: (program: TfjsProgram) => void, fn: () => T): T {
  const own = Object.prototype.hasOwnProperty.call(b, "runWebGPUProgram");
  const run = b.runWebGPUProgram;
  b.runWebGPUProgram = function (this: WebGPUBackendLike, program: object, ...rest: unknown[]) {
    edit(program as TfjsProgram);
    return (run as (...a: unknown[]) => TensorInfo).call(this, program, ...rest);
  } as WebGPUBackendLike["runWebGPUProgram"];
  try {
    return fn();
  } finally {
    if (own) b.runWebGPUProgram = run;
    else delete (b as Partial<WebGPUBackendLike>).runWebGPUProgram;
  }
}

/**
 * A matmul epilogue, on a value or on four (tfjs's vec4 programs): the
 * exact GELU of the product ("gelu"), or the product times GELU′ of the
 * pre-activation that tfjs binds as PReLU's weights ("geluGrad": GELU_GRAD's
 * arithmetic, the product as dy).
 */
function geluActivation(kind: "gelu" | "geluGrad", type: string, coords: string): string {
  const one = (c: string) => (kind === "gelu" ? `retromaeGelu(a${c})` : `retromaeGeluGrad(b${c}, a${c})`);
  const v = type === "f32" ? one("") : `vec4<f32>(${[".x", ".y", ".z", ".w"].map(one).join(", ")})`;
  return `${GELU_FUNCTIONS_WGSL}
fn activation(a : ${type}, coords : ${coords}) -> ${type} { ${kind === "geluGrad" ? "let b = getPreluActivationWeightsByOutputCoords(coords); " : ""}return ${v}; }`;
}

/**
 * Replace the activation function of one of tfjs's matmul programs (asked
 * for a ReLU epilogue) with the exact GELU, under a shader key of its own.
 * Throws if the program has no such function: the epilogue would be ReLU.
 */
export function swapInGelu(program: TfjsProgram): void {
  swapActivation(program, "gelu");
}

/**
 * Replace the activation function of one of tfjs's matmul programs (asked
 * for a PReLU epilogue, the pre-activation as its weights) with the product
 * times GELU′ of the pre-activation, under a shader key of its own.
 */
export function swapInGeluGrad(program: TfjsProgram): void {
  swapActivation(program, "geluGrad");
}

function swapActivation(program: TfjsProgram, kind: "gelu" | "geluGrad"): void {
  const userCode = program.getUserCode.bind(program);
  program.shaderKey = `${program.shaderKey}_retromae${kind === "gelu" ? "Gelu" : "GeluGrad"}`;
  program.getUserCode = () => {
    const code = userCode();
    const head = /fn activation\(a : (f32|vec4<f32>), coords : (vec\d<i32>)\) -> (?:f32|vec4<f32>) \{/.exec(code);
    if (!head) throw new Error(`tfjs-webgpu's matmul program (${program.shaderKey}) has no activation function to put GELU${kind === "gelu" ? "" : "′"} in; reinstall the pinned @tensorflow/tfjs-backend-webgpu with npm ci.`);
    let depth = 0;
    let end = head.index + head[0].length - 1;
    for (; end < code.length; end++) {
      if (code[end] === "{") depth++;
      else if (code[end] === "}" && --depth === 0) break;
    }
    return code.slice(0, head.index) + geluActivation(kind, head[1], head[2]) + code.slice(end + 1);
  };
}

/**
 * GELU(x·Wᵀ + b) for inference: tfjs-webgpu's own fused matmul (its tiling,
 * and its choice of program for the shape), asked for a ReLU epilogue, with
 * each program's activation function swapped for the exact GELU before its
 * pipeline is built. One dispatch where the dense layer then GELU takes two,
 * and the pre-activation is never written. No gradient: linearGelu takes
 * this only when the tape is off.
 * x [N, in], W [out, in], bias [out] -> [N, out]
 */
export function denseGeluWebGPU(fusedMatMul: KernelFunc): KernelConfig {
  return {
    kernelName: DENSE_GELU,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { x, W, bias } = inputs as Record<string, TensorInfo>;
      const b = backend as unknown as WebGPUBackendLike;
      const attrs = { transposeA: false, transposeB: true, activation: "relu", leakyreluAlpha: 0 };
      return editingPrograms(b, swapInGelu, () => fusedMatMul({ inputs: { a: x, b: W, bias } as never, backend, attrs: attrs as never })) as TensorInfo;
    },
  };
}

/**
 * fused.ts linearAndInput's forward: x·Wᵀ + b as the dense layer computes
 * it (the same fused matmul; with `transposed`, Wᵀ made first), and x
 * itself as the second output (its buffer, counted once more, as Reshape
 * does). x [N, in], W [out, in], bias [out] -> [N, out], [N, in]
 */
export function denseAndInputWebGPU(fusedMatMul: KernelFunc): KernelConfig {
  return {
    kernelName: DENSE_AND_INPUT,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, W, bias } = inputs as Record<string, TensorInfo>;
      const { transposed } = attrs as unknown as { transposed: boolean };
      const b = backend as unknown as WebGPUBackendLike & { incRef(dataId: object): void };
      const matMul = (w: TensorInfo, transposeB: boolean) => fusedMatMul({ inputs: { a: x, b: w, bias } as never, backend, attrs: { transposeA: false, transposeB, activation: "linear", leakyreluAlpha: 0 } as never }) as TensorInfo;
      let y: TensorInfo;
      if (transposed) {
        const wt = tf.getKernel(tf.Transpose, "webgpu")!.kernelFunc({ inputs: { x: W }, backend, attrs: { perm: [1, 0] } as never }) as TensorInfo;
        y = matMul(wt, false);
        b.disposeData(wt.dataId);
      } else {
        y = matMul(W, true);
      }
      b.incRef(x.dataId);
      return [y, { dataId: x.dataId, shape: x.shape, dtype: x.dtype }];
    },
  };
}

/**
 * fused.ts feedForward's second dense layer's input gradient:
 * (dy·W) ⊙ GELU′(pre), GELU′ applied as the product is written (GELU_GRAD's
 * arithmetic, the product as its dy): in the 128 × 128 tiled program's
 * epilogue where it takes the product, else in tfjs's own fused matmul
 * asked for a PReLU epilogue (pre as its weights) with each program's
 * activation function swapped. Where the product splits along K, its sum
 * and then GELU_GRAD's pass.
 * dy [N, out], W [out, in], pre [N, in] -> [N, in]
 */
export function geluLinearDxWebGPU(fusedMatMul: KernelFunc): KernelConfig {
  return {
    kernelName: GELU_LINEAR_DX,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { dy, W, pre } = inputs as Record<string, TensorInfo>;
      const b = backend as unknown as WebGPUBackendLike;
      const [N, K] = dy.shape;
      const I = W.shape[1];
      if ([dy, W, pre].some((t) => t.dtype !== "float32") || W.shape[0] !== K || pre.shape[0] !== N || pre.shape[1] !== I) throw new Error(`${GELU_LINEAR_DX} on webgpu takes float32 dy [N, out], W [out, in] and pre [N, in].`);
      if (N * I === 0) return b.makeTensorInfo([N, I], "float32", new Float32Array(0));
      if (K === 0) return zeros(b, [N, I], "float32"); // (a product of 0: GELU′ times 0)
      const dyW = (attrs: object, extra: object = {}) => fusedMatMul({ inputs: { a: dy, b: W, ...extra } as never, backend, attrs: { transposeA: false, transposeB: false, leakyreluAlpha: 0, ...attrs } as never }) as TensorInfo;
      if (splitKParts(N, I, K) > 1) {
        const dh = dyW({ activation: "linear" });
        const out = geluGradWebGPU.kernelFunc({ inputs: { x: pre, dy: dh }, backend, attrs: {} }) as TensorInfo;
        b.disposeData(dh.dataId);
        return out;
      }
      if (takesTiledMatMul(1, N, I)) return { ...b.runWebGPUProgram(tiledMatMulProgram(1, N, I, K, false, false, "geluGrad"), [dy, W, pre], "float32", ints(N, I, K, 1, 1, K)), shape: [N, I] };
      return editingPrograms(b, swapInGeluGrad, () => dyW({ activation: "prelu" }, { preluActivationWeights: pre }));
    },
  };
}

const ROWS_WG = 64;

/**
 * `n` (a column sum's rows, a matmul's K) split into about `parts` runs of
 * `chunk`, a multiple of `step`: `used` runs, the last one shorter where
 * `n` is not a multiple. The same n and parts always split the same way.
 */
function inRuns(n: number, parts: number, step: number): { chunk: number; used: number } {
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
function columnSum(b: WebGPUBackendLike, inputs: TensorInfo[], names: string[], term: string, rows: number, cols: number): TensorInfo {
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
function columnSums(rb: RawBackend, key: string, inputs: TensorInfo[], names: string[], terms: string[], rows: number, cols: number): TensorInfo[] {
  const outs = terms.map(() => rb.makeTensorInfo([cols], "float32"));
  recordDispatch(rb, `retromae${key}`, () => columnSumsShader(names, terms), [...outs, ...inputs], new Int32Array([rows, cols, rows, 1]).buffer, Math.ceil(cols / COLUMNS_PER_GROUP));
  return outs;
}

/** tfjs-webgpu's backend internals for a raw dispatch, or a sentence that names the fix. */
function rawOf(kernel: string): RawBackend {
  const rb = rawBackend();
  if (!rb) throw new Error(`${kernel} on webgpu needs tfjs-backend-webgpu 4.22's internals, which this install lacks; reinstall the pinned @tensorflow/tfjs-backend-webgpu with npm ci.`);
  return rb;
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
function rawRowsShader(outs: string[], ins: string[], fields: string, body: string, dropout: boolean): string {
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

type DropoutAttrs = { dropSeed: number; dropThreshold: number; dropScale: number };

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

/**
 * The body of softmax(x · scale + mask) per row of x [B, heads, Lq, Lk];
 * mask [B, 1, mq, Lk] with mq 1 or Lq. `row`, `tid`, `live`, `n` (= Lk) and
 * `base` (row · n) in scope; `write(v)` stores v, column c's probability.
 */
function scaledMaskedSoftmaxBody(write: (v: string) => string): string {
  const z = "(x[base + c] * uniforms.scale + mask[mbase + c])";
  return `
    let q = row % uniforms.lq;
    let b = row / (uniforms.lq * uniforms.heads);
    let mbase = (b * uniforms.mq + select(q, 0, uniforms.mq == 1)) * n;
    var m = x[base] * uniforms.scale + mask[mbase];
    for (var c = tid; c < n; c = c + ${ROWS_WG}) { m = max(m, ${z}); }
    let rowMax = rowReduce(tid, m, true);
    var acc = 0.0;
    for (var c = tid; c < n; c = c + ${ROWS_WG}) { acc = acc + exp(${z} - rowMax); }
    let total = rowReduce(tid, acc, false);
    if (live) { for (var c = tid; c < n; c = c + ${ROWS_WG}) { ${write(`exp(${z} - rowMax) / total`)} } }`;
}

const SOFTMAX_UNIFORMS = "lq : i32, heads : i32, mq : i32, scale : f32";

function scaledMaskedSoftmaxProgram(rows: number, Lk: number) {
  return rowWorkgroupProgram("ScaledMaskedSoftmax", rows, Lk, ["x", "mask"], `${SOFTMAX_UNIFORMS},`, scaledMaskedSoftmaxBody((v) => `result[base + c] = ${v};`));
}

/**
 * The softmax then dropout in one raw dispatch: the probabilities (kept for
 * the gradient) and the dropped ones (the mask drawn at each one's index,
 * as DROPOUT draws it over the flattened tensor).
 */
function scaledMaskedSoftmaxDropoutShader(): string {
  return rawRowsShader(["out", "probs"], ["x", "mask", "dropBase"], `cols : i32, ${SOFTMAX_UNIFORMS}`, `
    let n = uniforms.cols;
    let base = row * n;${scaledMaskedSoftmaxBody((v) => `let p = ${v}; probs[base + c] = p; out[base + c] = dropped(dropSeed, base + c, p);`)}`, true);
}

/** scale · p · (dy − Σ dy·p) per row; with `dropout`, of dy under the dropout's mask (drawn as dy is read). */
function scaledSoftmaxGradProgram(rows: number, Lk: number, dropout: boolean) {
  const dy = dropout ? "dropped(dropSeed, base + c, dy[base + c])" : "dy[base + c]";
  return rowWorkgroupProgram(dropout ? "ScaledSoftmaxGradDropout" : "ScaledSoftmaxGrad", rows, Lk, ["p", "dy", ...(dropout ? ["dropBase"] : [])], `scale : f32,${dropout ? ` ${DROPOUT_FIELDS},` : ""}`, `
    ${dropout ? DROP_SEED_WGSL : ""}
    var acc = 0.0;
    for (var c = tid; c < n; c = c + ${ROWS_WG}) { acc = acc + ${dy} * p[base + c]; }
    let dot = rowReduce(tid, acc, false);
    if (live) { for (var c = tid; c < n; c = c + ${ROWS_WG}) { result[base + c] = uniforms.scale * p[base + c] * (${dy} - dot); } }`, ROWS_WG, dropout ? DROPPED_WGSL : "");
}

const softmaxUniforms = (x: TensorInfo, mask: TensorInfo, scale: number): [number, "i32" | "f32"][] => [[x.shape[2], "i32"], [x.shape[1], "i32"], [mask.shape[2], "i32"], [scale, "f32"]];

export const scaledMaskedSoftmaxWebGPU: KernelConfig = {
  kernelName: SCALED_MASKED_SOFTMAX,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, mask } = inputs as { x: TensorInfo; mask: TensorInfo };
    const Lk = x.shape[3];
    const rows = product(x.shape) / Lk;
    const uniforms = programUniforms([[Lk, "i32"], ...softmaxUniforms(x, mask, (attrs as unknown as { scale: number }).scale)]);
    const out = (backend as unknown as WebGPUBackendLike).runWebGPUProgram(scaledMaskedSoftmaxProgram(rows, Lk), [{ ...x, shape: [rows, Lk] }, mask], "float32", uniforms);
    return { dataId: out.dataId, shape: [...x.shape], dtype: "float32" };
  },
};

export const scaledMaskedSoftmaxDropoutWebGPU: KernelConfig = {
  kernelName: DROPOUT_SOFTMAX,
  backendName: "webgpu",
  kernelFunc: ({ inputs, attrs }) => {
    const { x, mask, base } = inputs as { x: TensorInfo; mask: TensorInfo; base: TensorInfo };
    const rb = rawOf("The attention softmax with dropout");
    const Lk = x.shape[3];
    const rows = product(x.shape) / Lk;
    if (rows === 0) return [0, 1].map(() => (rb as unknown as WebGPUBackendLike).makeTensorInfo([...x.shape], "float32", new Float32Array(0)));
    const outputs = [0, 1].map(() => rb.makeTensorInfo([...x.shape], "float32"));
    const a = attrs as unknown as { scale: number } & DropoutAttrs;
    const u = packUniforms([[rows, "i32"], [Lk, "i32"], ...softmaxUniforms(x, mask, a.scale), ...dropoutUniforms(a)]);
    recordDispatch(rb, "retromaeScaledMaskedSoftmax_dropout", scaledMaskedSoftmaxDropoutShader, [...outputs, x, mask, base], u, rows);
    return outputs;
  },
};

/** Typed uniform values as runWebGPUProgram takes them. */
function programUniforms(values: [number, "i32" | "u32" | "f32"][]): { type: string; data: number[] }[] {
  return values.map(([v, type]) => ({ type: type === "i32" ? "int32" : type === "u32" ? "uint32" : "float32", data: [v] }));
}

/**
 * The softmax's gradient over the rows of p [..., Lk] (scaledSoftmaxGradProgram),
 * of dy under the dropout's mask where `base` is given. -> [rows, Lk]
 */
function softmaxGrad(b: WebGPUBackendLike, p: TensorInfo, dy: TensorInfo, base: TensorInfo | undefined, attrs: { scale: number } & DropoutAttrs): TensorInfo {
  const Lk = p.shape[p.shape.length - 1];
  const rows = product(p.shape) / Lk;
  const flat = (t: TensorInfo) => ({ ...t, shape: [rows, Lk] });
  const uniforms = programUniforms([[Lk, "i32"], [attrs.scale, "f32"], ...(base ? dropoutUniforms(attrs) : [])]);
  return b.runWebGPUProgram(scaledSoftmaxGradProgram(rows, Lk, !!base), [flat(p), flat(dy), ...(base ? [base] : [])], "float32", uniforms);
}

export const scaledSoftmaxGradWebGPU: KernelConfig = {
  kernelName: SCALED_SOFTMAX_GRAD,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { p, dy, base } = inputs as { p: TensorInfo; dy: TensorInfo; base?: TensorInfo };
    const out = softmaxGrad(backend as unknown as WebGPUBackendLike, p, dy, base, attrs as unknown as { scale: number } & DropoutAttrs);
    return { dataId: out.dataId, shape: [...p.shape], dtype: "float32" };
  },
};

/** Query rows per workgroup of the attention kernel: one invocation each. */
const ATTENTION_ROWS = 64;

/**
 * The whole attention for inference, per head: softmax(q kᵀ · scale + mask) v,
 * with the heads read from and written to [B, L, H] in place (no head
 * transposes) and no scores or probabilities written. A workgroup takes 64
 * query rows of one head, one invocation per row; it walks the keys in
 * tiles that it stages in workgroup memory as vec4s, and each row keeps a
 * running max, sum and weighted sum of values (the online softmax), so a
 * row's scores never leave its registers. dh is padded to a multiple of 4
 * with zeros. A fully masked row (every score at -FLT_MAX) is uniform, as
 * the composition's softmax gives it.
 * q [B, Lq, ldq] from column colq, k and v [B, Lk, ldkv] from colk and colv,
 * mask [B, 1, maskRows, Lk] -> [B, Lq, H]
 */
export function attentionProgram(B: number, heads: number, Lq: number, H: number, dh: number) {
  const dv = Math.ceil(dh / 4); // vec4s per head row
  const tile = Math.max(1, Math.min(32, Math.floor(512 / dv))); // keys per tile: K and V tiles in ≤ 16 KiB
  const blocks = Math.ceil(Lq / ATTENTION_ROWS);
  // component c of the head row's vec4 j, or 0 past dh
  const load = (buf: string, base: string) =>
    `vec4<f32>(${[0, 1, 2, 3].map((c) => `select(0.0, ${buf}[${base} + min(4 * j + ${c}, ${dh - 1})], 4 * j + ${c} < ${dh})`).join(", ")})`;
  const code = `
  var<workgroup> kTile : array<vec4<f32>, ${tile * dv}>;
  var<workgroup> vTile : array<vec4<f32>, ${tile * dv}>;
  fn main(index : i32) {
    let tid = i32(localIndex);
    // (past 65,535 workgroups tfjs spreads the dispatch over a square, which can hold extra
    // workgroups: they read the last batch element's rows and write nothing)
    let groups = uniforms.outShape[0] * uniforms.heads * uniforms.blocks;
    let group = min(index / ${ATTENTION_ROWS}, groups - 1);
    let blk = group % uniforms.blocks;
    let h = (group / uniforms.blocks) % uniforms.heads;
    let b = group / (uniforms.blocks * uniforms.heads);
    let i = blk * ${ATTENTION_ROWS} + tid;
    let inRange = i < uniforms.lq && index / ${ATTENTION_ROWS} < groups;
    let Lk = uniforms.lk;
    var qv : array<vec4<f32>, ${dv}>;
    var acc : array<vec4<f32>, ${dv}>;
    let qBase = (b * uniforms.lq + min(i, uniforms.lq - 1)) * uniforms.ldq + uniforms.colq + h * ${dh};
    for (var j = 0; j < ${dv}; j = j + 1) {
      qv[j] = ${load("q", "qBase")};
      acc[j] = vec4<f32>(0.0);
    }
    let mBase = (b * uniforms.maskRows + select(min(i, uniforms.lq - 1), 0, uniforms.maskRows == 1)) * Lk;
    var m = 0.0;
    var l = 0.0;
    for (var k0 = 0; k0 < Lk; k0 = k0 + ${tile}) {
      workgroupBarrier();
      for (var e = tid; e < ${tile * dv}; e = e + ${ATTENTION_ROWS}) {
        let r = e / ${dv};
        let j = e - r * ${dv};
        let key = min(k0 + r, Lk - 1);
        let kvBase = (b * Lk + key) * uniforms.ldkv + h * ${dh};
        kTile[e] = ${load("k", "kvBase + uniforms.colk")};
        vTile[e] = ${load("v", "kvBase + uniforms.colv")};
      }
      workgroupBarrier();
      if (inRange) {
        let n = min(${tile}, Lk - k0);
        for (var r = 0; r < n; r = r + 1) {
          var dotQK = 0.0;
          for (var j = 0; j < ${dv}; j = j + 1) { dotQK = dotQK + dot(qv[j], kTile[r * ${dv} + j]); }
          let s = dotQK * uniforms.scale + mask[mBase + k0 + r];
          if (k0 + r == 0) { m = s; }
          if (s > m) {
            let shrink = exp(m - s);
            l = l * shrink;
            for (var j = 0; j < ${dv}; j = j + 1) { acc[j] = acc[j] * shrink; }
            m = s;
          }
          let p = exp(s - m);
          l = l + p;
          for (var j = 0; j < ${dv}; j = j + 1) { acc[j] = acc[j] + p * vTile[r * ${dv} + j]; }
        }
      }
    }
    if (inRange) {
      let oBase = (b * uniforms.lq + i) * ${H} + h * ${dh};
      for (var j = 0; j < ${dv}; j = j + 1) {
        let o = acc[j] / l;
        for (var c = 0; c < 4; c = c + 1) { if (4 * j + c < ${dh}) { result[oBase + 4 * j + c] = o[c]; } }
      }
    }
  }`;
  return {
    outputShape: [B, Lq, H],
    variableNames: ["q", "k", "v", "mask"],
    uniforms: "lq : i32, lk : i32, heads : i32, blocks : i32, ldq : i32, ldkv : i32, colq : i32, colk : i32, colv : i32, maskRows : i32, scale : f32,",
    shaderKey: `retromaeAttention_${dh}_${H}_${tile}`,
    workgroupSize: [ATTENTION_ROWS, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0, 1, 2] },
    dispatch: [B * heads * blocks, 1, 1] as [number, number, number],
    getUserCode: () => code,
  };
}

export const attentionWebGPU: KernelConfig = {
  kernelName: ATTENTION,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, k, v, mask } = inputs as Record<string, TensorInfo>;
    const { heads, scale, hidden: H, columns } = attrs as unknown as { heads: number; scale: number; hidden: number; columns: [number, number, number] };
    const [B, Lq, ldq] = q.shape;
    const [, Lk, ldkv] = k.shape;
    const dh = H / heads;
    if (dh > 2048) throw new Error(`The fused attention on webgpu takes heads of at most 2,048 values; this model's are ${dh} wide (hidden ${H} / ${heads} heads).`);
    const b = backend as unknown as WebGPUBackendLike;
    if (B * Lq * H === 0) return b.makeTensorInfo([B, Lq, H], "float32", new Float32Array(0));
    const blocks = Math.ceil(Lq / ATTENTION_ROWS);
    // k and v are one tensor (a stacked projection) or two of one shape; q likewise may be that tensor
    return b.runWebGPUProgram(attentionProgram(B, heads, Lq, H, dh), [q, k, v, mask], "float32", [
      ...ints(Lq, Lk, heads, blocks, ldq, ldkv, columns[0], columns[1], columns[2], mask.shape[2]),
      { type: "float32", data: [scale] },
    ]);
  },
};

/** log Σⱼ exp(z[r, j]) per row (and the first index of the row's max, with `argMax`). z [N, V] */
function logSumExpProgram(rows: number, V: number) {
  return rowWorkgroupProgram("LogSumExp", rows, 1, ["z"], "V : i32,", `
    let V = uniforms.V;
    let zb = row * V;
    var m = z[zb];
    for (var c = tid; c < V; c = c + ${ROWS_WG}) { m = max(m, z[zb + c]); }
    let rowMax = rowReduce(tid, m, true);
    var acc = 0.0;
    for (var c = tid; c < V; c = c + ${ROWS_WG}) { acc = acc + exp(z[zb + c] - rowMax); }
    let total = rowReduce(tid, acc, false);
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
    var m = z[base];
    for (var c = tid; c < n; c = c + ${ROWS_WG}) { m = max(m, z[base + c]); }
    let rowMax = rowReduce(tid, m, true);
    var acc = 0.0;
    for (var c = tid; c < n; c = c + ${ROWS_WG}) { acc = acc + exp(z[base + c] - rowMax); }
    let total = rowReduce(tid, acc, false);
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

/** tfjs-webgpu's choices of matmul program (its MatMulProgramType). */
const SMALL_OUTPUT_SIZE_PROGRAM = 2;

/**
 * Whether tfjs-webgpu would split this matmul along K and add the parts with
 * float atomics (whose order, and so whose bits, change from run to run):
 * its rule for a batch of one with K ≥ 2000 and few 32×32 output tiles, e.g.
 * a hidden-32 weight's gradient over 2,048 tokens.
 */
export function splitsAlongK(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean, threshold: number): boolean {
  if (tf.env().getNumber("WEBGPU_MATMUL_PROGRAM_TYPE") >= 0) return false;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const batch = Math.max(product(a.shape.slice(0, -2)), product(b.shape.slice(0, -2)));
  const outerA = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const outerB = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const inner = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const flag = tf.env().getNumber("WEBGPU_THRESHOLD_TO_INCREASE_WORKGROUPS_FOR_MATMUL");
  const limit = flag > 0 ? flag : threshold;
  const tiles = batch * Math.ceil(outerA / 32) * Math.ceil(outerB / 32);
  const few = tiles <= limit || (outerA <= 8 && tiles <= limit * 2);
  return few && batch * outerA * outerB > 128 && batch === 1 && inner >= 2000;
}

/**
 * op(A)·op(B) for a batch of one, split along K in `parts`, in 128 × 128
 * tiles where tiledSplitKParts says so (then in its parts), else in 32 × 32
 * (splitKMatMulProgram), then the parts added in order (one column-sum
 * pass): the same bits run after run.
 */
function splitKMatMul(b: WebGPUBackendLike, a: TensorInfo, bT: TensorInfo, transposeA: boolean, transposeB: boolean, M: number, N: number, K: number, parts: number, outShape: number[]): TensorInfo {
  const tiledParts = tiledSplitKParts(M, N, K);
  const step = tiledParts ? TILED_STEP_K : SPLIT_TILE; // K per staged slice
  const { chunk, used } = inRuns(K, tiledParts || parts, step);
  const partial = tiledParts
    ? b.runWebGPUProgram(tiledMatMulProgram(used, M, N, K, transposeA, transposeB, "none", true), [a, bT], "float32", ints(M, N, K, 1, 1, chunk))
    : b.runWebGPUProgram(splitKMatMulProgram(M, N, K, used, transposeA, transposeB), [a, bT], "float32", ints(M, N, K, chunk));
  const sum = columnSum(b, [partial], ["p"], "p[at]", used, M * N);
  b.disposeData(partial.dataId);
  return { dataId: sum.dataId, shape: outShape, dtype: "float32" };
}

/**
 * The attention's products on heads side by side (fused.ts
 * attentionTraining): C = A·B per head, each read
 * and written through its strides (headMatMulProgram). Inputs a and b; attrs
 * batch (B · heads), heads, M, N, K, `strides` (a's, b's and the output's
 * HeadStrides, five numbers each: offset, batch, head, row, column) and the
 * output's shape. An output of no elements is empty; a K of 0 is zeros.
 */
export const headMatMulWebGPU: KernelConfig = {
  kernelName: HEAD_MATMUL,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { a, b: bIn } = inputs as Record<string, TensorInfo>;
    const b = backend as unknown as WebGPUBackendLike;
    const { batch, heads, M, N, K, strides, shape } = attrs as unknown as { batch: number; heads: number; M: number; N: number; K: number; strides: number[]; shape: number[] };
    if (product(shape) === 0) return b.makeTensorInfo(shape, "float32", new Float32Array(0));
    if (K === 0) return zeros(b, shape, "float32");
    const [sa, sb, sc] = [0, 5, 10].map((i) => headStridesAt(strides, i));
    const program = headMatMulProgram(batch, heads, M, N, K, sa, sb, sc, shape);
    return b.runWebGPUProgram(program, [a, bIn], "float32", ints(...program.uniformValues));
  },
};

/**
 * The gradient of fused.ts attentionTraining, on the heads side by side:
 * dP′ = dctx·vᵀ, dv = P′ᵀ·dctx, dS = scale · P ⊙ (dropout(dP′) − Σ_row
 * dropout(dP′) ⊙ P) (P the probabilities, P′ = dropout(P), the mask drawn
 * again), dq = dS·k and dk = dSᵀ·q, each product a HEAD_MATMUL program.
 * dq, dk and dv are written into their columns of one gradient per
 * projection (q's and kv's, or the one [B, L, 3H] of self-attention, when q
 * and kv are the same tensor): five dispatches, nothing to add. Inputs
 * dctx [B, Lq, H], q, kv, p and pd [B, heads, Lq, Lk], base (with dropout);
 * attrs heads, scale, columns (q's, k's and v's first column), and the
 * dropout call's. -> [dq, dkv], or [dqkv]
 */
export const attentionGradWebGPU: KernelConfig = {
  kernelName: ATTENTION_GRAD,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { dctx, q, kv, p, pd, base } = inputs as Record<string, TensorInfo>;
    const b = backend as unknown as WebGPUBackendLike;
    const a = attrs as unknown as { heads: number; scale: number; columns: number[] } & DropoutAttrs;
    const self = q.dataId === kv.dataId;
    const [B, Lq, H] = dctx.shape;
    const [, heads, , Lk] = p.shape;
    const dh = H / heads;
    const [Wq, Wkv] = [q.shape[2], kv.shape[2]];
    const [sq, sk, sv] = [headsSideBySide(a.columns[0], Lq, Wq, dh), headsSideBySide(a.columns[1], Lk, Wkv, dh), headsSideBySide(a.columns[2], Lk, Wkv, dh)];
    const [sP, sc] = [headsStacked(heads, Lq, Lk), headsSideBySide(0, Lq, H, dh)];
    const t = transposedHeads;
    const dq = b.makeTensorInfo([...q.shape], "float32");
    const dkv = self ? dq : b.makeTensorInfo([...kv.shape], "float32");
    // C = A·B per head into `out` (or a new [B, heads, Lq, Lk])
    const headProduct = (A: TensorInfo, Bm: TensorInfo, [M, N, K]: number[], strides: HeadStrides[], out?: TensorInfo) => {
      const program = headMatMulProgram(B * heads, heads, M, N, K, strides[0], strides[1], strides[2], out ? [...out.shape] : [B, heads, Lq, Lk]);
      return b.runWebGPUProgram(program, [A, Bm], "float32", ints(...program.uniformValues), out);
    };
    const dPd = headProduct(dctx, kv, [Lq, Lk, dh], [sc, t(sv), sP]); // dP′ = dctx·vᵀ
    headProduct(pd, dctx, [Lk, dh, Lq], [t(sP), sc, sv], dkv); // dv = P′ᵀ·dctx
    const dS = softmaxGrad(b, p, dPd, base, a);
    b.disposeData(dPd.dataId);
    headProduct(dS, kv, [Lq, dh, Lk], [sP, sk, sq], dq); // dq = dS·k
    headProduct(dS, q, [Lk, dh, Lq], [t(sP), sq, sk], dkv); // dk = dSᵀ·q
    b.disposeData(dS.dataId);
    return self ? [dq] : [dq, dkv];
  },
};

/**
 * STACK_ROWS (unstack false) and UNSTACK_ROWS (true) in one raw dispatch,
 * an invocation per element of the pieces laid end to end: piece j (of
 * group g) is rows [at_j, at_j + n_j) of group g's stacked tensor, so
 * stacked_g[at_j + i] = piece_j[i] (or back). Uniforms: count, then each
 * piece's start (in the pieces laid end to end), size and place in its group.
 */
function stackShader(counts: number[], unstack: boolean): string {
  const group = counts.flatMap((c, g) => Array<number>(c).fill(g));
  const pieces = group.map((_, j) => `piece${j}`);
  const stacks = counts.map((_, g) => `stack${g}`);
  const cases = group
    .map((g, j) => `  if (e < uniforms.start${j} + uniforms.n${j}) {
    let i = e - uniforms.start${j};
    ${unstack ? `piece${j}[i] = stack${g}[uniforms.at${j} + i];` : `stack${g}[uniforms.at${j} + i] = piece${j}[i];`}
    return;
  }`)
    .join("\n");
  return `
${rawBindings(unstack ? pieces : stacks, unstack ? stacks : pieces, `count : i32, ${group.map((_, j) => `start${j} : i32, n${j} : i32, at${j} : i32`).join(", ")}`)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let e = i32((wid.x + wid.y * ${MAX_GROUPS}u) * 256u + lid);
  if (e >= uniforms.count) { return; }
${cases}
}`;
}

/** STACK_ROWS or UNSTACK_ROWS: the stacked tensors' shapes from the pieces' (or back), and one stackShader dispatch. */
function stackKernel(unstack: boolean): KernelConfig {
  return {
    kernelName: unstack ? UNSTACK_ROWS : STACK_ROWS,
    backendName: "webgpu",
    kernelFunc: ({ inputs, attrs }) => {
      const rb = rawOf(unstack ? "Unstacking rows" : "Stacking rows");
      const { counts, rows } = attrs as unknown as { counts: number[]; rows: number[] };
      const ins = Object.keys(inputs).sort((x, y) => Number(x.slice(1)) - Number(y.slice(1))).map((k) => (inputs as Record<string, TensorInfo>)[k]);
      const group = counts.flatMap((c, g) => Array<number>(c).fill(g));
      // the trailing shape of each group: from its first piece, or from its stacked gradient
      const trailing = counts.map((_, g) => (unstack ? ins[g] : ins[group.indexOf(g)]).shape.slice(1));
      const inner = trailing.map(product);
      const sizes = group.map((g, j) => rows[j] * inner[g]);
      const outs = unstack
        ? group.map((g, j) => rb.makeTensorInfo([rows[j], ...trailing[g]], "float32"))
        : counts.map((_, g) => rb.makeTensorInfo([rows.filter((_, j) => group[j] === g).reduce((x, y) => x + y, 0), ...trailing[g]], "float32"));
      const count = sizes.reduce((x, y) => x + y, 0);
      if (count === 0) return outs.map((o) => (rb as unknown as WebGPUBackendLike).makeTensorInfo(o.shape, "float32", new Float32Array(0)));
      const uniforms: number[] = [count];
      let start = 0;
      const at = counts.map(() => 0);
      group.forEach((g, j) => {
        uniforms.push(start, sizes[j], at[g]);
        start += sizes[j];
        at[g] += sizes[j];
      });
      recordDispatch(rb, `retromae${unstack ? "Unstack" : "Stack"}Rows_${counts.join("_")}`, () => stackShader(counts, unstack), [...outs, ...ins], new Int32Array(uniforms).buffer, Math.ceil(count / 256));
      return outs;
    },
  };
}

/**
 * out_j[i] = Σ_p parts_j[p · n_j + i] over p in order/**
 * out_j[i] = Σ_p parts_j[p · n_j + i] over p in order, for several [parts,
 * n_j] inputs in one raw dispatch (an invocation per output element; the
 * uniforms: parts, then each n_j).
 */
function sumOfPartsShader(k: number): string {
  // element i of the outputs laid end to end: output j's element i − (n_0 + … + n_{j−1})
  const cases = Array.from({ length: k }, (_, j) => `  if (i < ${j === 0 ? "0" : `first${j}`} + uniforms.n${j}) {
    let e = i - ${j === 0 ? "0" : `first${j}`};
    var acc = 0.0;
    for (var p = 0; p < uniforms.parts; p = p + 1) { acc = acc + p${j}[p * uniforms.n${j} + e]; }
    out${j}[e] = acc;
    return;
  }${j + 1 < k ? `\n  let first${j + 1} = ${j === 0 ? "" : `first${j} + `}uniforms.n${j};` : ""}`).join("\n");
  const js = Array.from({ length: k }, (_, j) => j);
  return `
${rawBindings(js.map((j) => `out${j}`), js.map((j) => `p${j}`), `parts : i32, ${js.map((j) => `n${j} : i32`).join(", ")}`)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let i = i32((wid.x + wid.y * ${MAX_GROUPS}u) * 256u + lid);
${cases}
}`;
}

/**
 * A dense layer's weight and bias gradients (fused.ts linearWebGPU):
 * dW = dyᵀ·x and db = Σ_rows dy. Where the matmul is split along the rows
 * in 32 × 32 tiles (splitKParts, and not the tiled program's split), one
 * raw dispatch computes dW's parts and db's from the same tiles of dy
 * (splitKRowSumsShader) and one more adds each one's parts in order: two
 * dispatches where the split matmul, its column sum, and the bias's column
 * sum (two passes where its rows split) took three or four. Where the
 * output has as few tiles but the rows are too few to split (K < 1,024:
 * tiny's layers at 4 × 128), the same dispatch in one part writes dW and db
 * themselves: one dispatch where the matmul and the column sum (two passes
 * from 256 rows) took two or three. Otherwise (a large output, the tiled
 * program's split, RETROMAE_WEBGPU_SPLIT_K=0) dW as BatchMatMul computes it
 * and db as Sum does. dy [N, out], x [N, in] -> [out, in], [out]
 */
export function denseWeightGradsWebGPU(batchMatMul: KernelFunc): KernelConfig {
  return {
    kernelName: DENSE_WEIGHT_GRADS,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { dy, x } = inputs as Record<string, TensorInfo>;
      const b = backend as unknown as WebGPUBackendLike;
      const [K, M] = dy.shape;
      const N = x.shape[1];
      const fused = dy.dtype === "float32" && x.dtype === "float32" && M * N * K > 0 && tiledSplitKParts(M, N, K) === 0;
      const parts = fused ? splitKParts(M, N, K) : 1;
      if (parts <= 1 && !(fused && splitKEnabled() && fewOutputTiles(M, N))) {
        const dW = batchMatMul({ inputs: { a: dy, b: x }, backend, attrs: { transposeA: true, transposeB: false } as never }) as TensorInfo;
        return [dW, columnSum(b, [dy], ["x"], "x[at]", K, M)];
      }
      const rb = rawOf("The dense layer's gradient");
      const { chunk, used } = inRuns(K, parts, SPLIT_TILE);
      if (used === 1) {
        const [dW, db] = [rb.makeTensorInfo([M, N], "float32"), rb.makeTensorInfo([M], "float32")];
        recordDispatch(rb, "retromaeMatMulSplitK_true_false_rowSums", () => splitKRowSumsShader(true, false), [dW, db, dy, x], new Int32Array([M, N, K, chunk]).buffer, splitKGrid(M, N, 1), 2 * M * N * K);
        return [dW, db];
      }
      const dwParts = rb.makeTensorInfo([used, M, N], "float32");
      const dbParts = rb.makeTensorInfo([used, M], "float32");
      recordDispatch(rb, "retromaeMatMulSplitK_true_false_rowSums", () => splitKRowSumsShader(true, false), [dwParts, dbParts, dy, x], new Int32Array([M, N, K, chunk]).buffer, splitKGrid(M, N, used), 2 * M * N * K);
      const [dW, db] = [rb.makeTensorInfo([M, N], "float32"), rb.makeTensorInfo([M], "float32")];
      recordDispatch(rb, "retromaeMatMulSumOfParts_2", () => sumOfPartsShader(2), [dW, db, dwParts, dbParts], new Int32Array([used, M * N, M]).buffer, Math.ceil((M * N + M) / 256));
      b.disposeData(dwParts.dataId);
      b.disposeData(dbParts.dataId);
      return [dW, db];
    },
  };
}

/**
 * BatchMatMul or _FusedMatMul: split along K where the output has few tiles
 * and K is long (splitKParts; in 128 × 128 tiles or 32 × 32, splitKMatMul);
 * else in 128 × 128 tiles where the output has enough of them
 * (takesTiledMatMul, RETROMAE_WEBGPU_MATMUL); else with tfjs's
 * small-output program where tfjs would split along K with float atomics; else
 * tfjs's own.
 */
export function deterministicMatMul(kernelName: string, original: KernelFunc): KernelConfig {
  return {
    kernelName,
    backendName: "webgpu",
    kernelFunc: (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs as unknown as { a: TensorInfo; b: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo };
      const { transposeA, transposeB, activation } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean; activation?: string };
      const [ra, rb] = [a.shape.length, b.shape.length];
      const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
      const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
      const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
      const [batchA, batchB] = [product(a.shape.slice(0, -2)), product(b.shape.slice(0, -2))];
      // the output's leading axes: the larger batch's, or the higher rank's where the batches are equal
      const lead = (batchA > batchB || (batchA === batchB && ra >= rb) ? a.shape : b.shape).slice(0, -2);
      const backend = args.backend as unknown as WebGPUBackendLike;
      if (K === 0 && M * N > 0) return emptyKMatMul(original, args, backend, transposeA, transposeB);
      const plain = !preluActivationWeights && (!activation || activation === "linear") && a.dtype === "float32" && b.dtype === "float32" && M * N * K > 0;
      const batch = Math.max(batchA, batchB);
      // the epilogue: a bias [N] to every row, or an addend of the output's own shape (fused.ts linearAndInput's dx)
      const epilogue: TiledEpilogue | null = !bias ? "none" : bias.shape.length === 1 && bias.shape[0] === N ? "row" : bias.dtype === "float32" && product(bias.shape) === batch * M * N && bias.shape[bias.shape.length - 1] === N ? "matrix" : null;
      if (plain && (!bias || epilogue === "matrix") && batchA === 1 && batchB === 1) {
        const parts = splitKParts(M, N, K);
        if (parts > 1) {
          const sum = splitKMatMul(backend, a, b, transposeA, transposeB, M, N, K, parts, [...lead, M, N]);
          if (!bias) return sum;
          // (the parts' sum, then the addend: the bits of tfjs's add after the product)
          const out = addKernel()({ inputs: { a: sum, b: bias }, backend: backend as never, attrs: {} }) as TensorInfo;
          backend.disposeData(sum.dataId);
          return out;
        }
      }
      if (plain && (batchA === batchB || batchA === 1 || batchB === 1) && epilogue && takesTiledMatMul(batch, M, N)) {
        const out = backend.runWebGPUProgram(tiledMatMulProgram(batch, M, N, K, transposeA, transposeB, epilogue), [a, b, ...(bias ? [bias] : [])], "float32", ints(M, N, K, batchA, batchB, K));
        return { dataId: out.dataId, shape: [...lead, M, N], dtype: "float32" };
      }
      const threshold = (backend as unknown as { thresholdToIncreaseWorkgroups?: number }).thresholdToIncreaseWorkgroups ?? 8;
      if (!splitsAlongK(a, b, transposeA, transposeB, threshold)) return original(args);
      const env = tf.env();
      const before = env.getNumber("WEBGPU_MATMUL_PROGRAM_TYPE");
      env.set("WEBGPU_MATMUL_PROGRAM_TYPE", SMALL_OUTPUT_SIZE_PROGRAM);
      try {
        return original(args);
      } finally {
        env.set("WEBGPU_MATMUL_PROGRAM_TYPE", before);
      }
    },
  };
}

/**
 * A matmul over K = 0 (empty operands, a non-empty output): tfjs's own
 * with each operand's K axis one zero wide, so the product is 0 and a bias
 * and an activation still apply. With the empty operands bound, WebGPU
 * rejects the dispatch and the output keeps whatever its buffer held.
 */
function emptyKMatMul(original: KernelFunc, args: Parameters<KernelFunc>[0], backend: WebGPUBackendLike, transposeA: boolean, transposeB: boolean): TensorInfo | TensorInfo[] {
  const { a, b } = args.inputs as unknown as { a: TensorInfo; b: TensorInfo };
  const oneK = (t: TensorInfo, kAxis: number) => zeros(backend, t.shape.map((d, i) => (i === t.shape.length + kAxis ? 1 : d)), "float32");
  const a1 = oneK(a, transposeA ? -2 : -1);
  const b1 = oneK(b, transposeB ? -1 : -2);
  try {
    return original({ ...args, inputs: { ...args.inputs, a: a1, b: b1 } as unknown as typeof args.inputs });
  } finally {
    backend.disposeData(a1.dataId);
    backend.disposeData(b1.dataId);
  }
}

/** tfjs-webgpu's own Add (elementwise, with broadcasting). */
function addKernel(): KernelFunc {
  return tf.getKernel(tf.Add, "webgpu")!.kernelFunc;
}

type Wrapped = KernelConfig & { original?: KernelFunc };

/** Replace tfjs's webgpu kernel `name` by `wrap(its own function)`, once however often this runs. The new function, or null. */
function wrapTfjsKernel(name: string, wrap: (original: KernelFunc) => KernelConfig): KernelFunc | null {
  const current = tf.getKernel(name, "webgpu") as Wrapped | undefined;
  if (!current) return null;
  const original = current.original ?? current.kernelFunc;
  tf.unregisterKernel(name, "webgpu");
  const config: Wrapped = { ...wrap(original), original };
  tf.registerKernel(config);
  return config.kernelFunc;
}

/** Columns per workgroup of columnSumProgram, and lanes per column. */
const COLUMNS_PER_GROUP = 16;
const COLUMN_LANES = 256 / COLUMNS_PER_GROUP;

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

/** A webgpu kernel that takes the calls `take` answers and leaves the rest (null) to tfjs's own. */
function takeOver<A>(kernelName: string, original: KernelFunc, take: (x: TensorInfo, attrs: A, backend: unknown) => TensorInfo | null): KernelConfig {
  return {
    kernelName,
    backendName: "webgpu",
    kernelFunc: (args) => take((args.inputs as { x: TensorInfo }).x, args.attrs as unknown as A, args.backend) ?? original(args),
  };
}

/** Sum over the leading axes of a float32 tensor in one pass (columnSumProgram), and any sum of an empty tensor (zeros); tfjs's for every other sum. */
const leadingAxesSum = (original: KernelFunc) =>
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

/**
 * Transpose with the identity permutation (tfjs's gather gradient asks for
 * two per gather) relabels the input's buffer, as Reshape does, instead of
 * copying it; any other permutation is tfjs's.
 */
const identityTranspose = (original: KernelFunc) =>
  takeOver<{ perm: number[] }>(tf.Transpose, original, (x, { perm }, backend) => {
    if (!perm.every((p, i) => p === i)) return null;
    (backend as { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });

/**
 * Register this project's webgpu kernels, replacing tfjs's where it has one.
 * `maxStorageBuffers` is the device's maxStorageBuffersPerShaderStage.
 */
export function registerWebGPUKernels(maxStorageBuffers: number): void {
  for (const k of [deterministicUnsortedSegmentSum, embeddingGradWebGPU, robustSoftmax, dropoutWebGPU, geluWebGPU, geluGradWebGPU, addLayerNormWebGPU, geluLayerNormWebGPU, dropoutAddLayerNormWebGPU, layerNormDropoutWebGPU, embeddingsLayerNormWebGPU, embeddingTablesGradWebGPU, layerNormGradWebGPU, scaledMaskedSoftmaxWebGPU, scaledMaskedSoftmaxDropoutWebGPU, scaledSoftmaxGradWebGPU, attentionWebGPU, headMatMulWebGPU, attentionGradWebGPU, stackKernel(false), stackKernel(true), additiveMaskOfBytesWebGPU,
    logSumExpRowsWebGPU, logSumExpArgMaxWebGPU, softmaxMinusOneHotWebGPU, softmaxMinusOneHotColSumWebGPU, pickLabelsWebGPU, meanNllAccuracyWebGPU]) {
    if (tf.getKernel(k.kernelName, "webgpu")) tf.unregisterKernel(k.kernelName, "webgpu");
    tf.registerKernel(k);
  }
  // The embeddings' LayerNorm with dropout binds 9 storage buffers (y, x̂ and 1/σ; x, both tables, γ, β and the
  // step's seed): on an adapter that binds fewer, embeddingsLayerNorm declines it and the adds and LAYER_NORM_DROPOUT run.
  if (tf.getKernel(EMBEDDINGS_LAYER_NORM_DROPOUT, "webgpu")) tf.unregisterKernel(EMBEDDINGS_LAYER_NORM_DROPOUT, "webgpu");
  if (maxStorageBuffers >= 9) tf.registerKernel(embeddingsLayerNormDropoutWebGPU);
  wrapTfjsKernel(tf.BatchMatMul, (original) => deterministicMatMul(tf.BatchMatMul, original));
  wrapTfjsKernel(tf.Sum, leadingAxesSum);
  wrapTfjsKernel(tf.Transpose, identityTranspose);
  const fusedMatMul = wrapTfjsKernel(tf._FusedMatMul, (original) => deterministicMatMul(tf._FusedMatMul, original));
  if (fusedMatMul) {
    for (const k of [denseGeluWebGPU(fusedMatMul), denseAndInputWebGPU(fusedMatMul), geluLinearDxWebGPU(fusedMatMul)]) {
      if (tf.getKernel(k.kernelName, "webgpu")) tf.unregisterKernel(k.kernelName, "webgpu");
      tf.registerKernel(k);
    }
  }
  const batchMatMul = tf.getKernel(tf.BatchMatMul, "webgpu")?.kernelFunc;
  if (batchMatMul) {
    if (tf.getKernel(DENSE_WEIGHT_GRADS, "webgpu")) tf.unregisterKernel(DENSE_WEIGHT_GRADS, "webgpu");
    tf.registerKernel(denseWeightGradsWebGPU(batchMatMul));
  }
  // One binding is the output; each input takes one.
  wrapTfjsKernel(tf.AddN, (original) => chunkedAddN(original, maxStorageBuffers - 1));
}
