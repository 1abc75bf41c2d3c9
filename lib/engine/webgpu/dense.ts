/**
 * The kernels that run matmuls: the dense layers' fused forms and the
 * matmuls themselves (their WGSL programs are ./matmul.ts's).
 * - The dense layer with its bias and GELU in one dispatch, for inference:
 *   tfjs's own fused matmul with its activation function swapped for the
 *   exact GELU. In training, GELU's gradient in the feed-forward block is
 *   the epilogue of the next dense layer's input gradient (fused.ts
 *   feedForward, GELU_LINEAR_DX): the product times GELU′(pre) as it is
 *   written, in tfjs's program (a PReLU epilogue, pre as its weights, the
 *   activation swapped) or the tiled one.
 * - A dense layer that starts a sub-layer (Q, K and V's projection, the
 *   feed-forward's first layer) with its input given back as a second
 *   output for the residual connection (fused.ts DENSE_AND_INPUT): its
 *   gradient adds the residual's gradient of x into dx = dy·W as the
 *   product is written (tfjs's bias epilogue, or the tiled program's addend
 *   of C's shape), where tfjs's tape added x's two gradients in a pass of its
 *   own: the same sum, one dispatch and a [N, H] read twice and written
 *   once fewer per sub-layer.
 * - A dense layer's weight and bias gradients together (fused.ts
 *   DENSE_WEIGHT_GRADS): where dyᵀ·x is split along the rows (a small
 *   model's weights over its tokens), the bias gradient Σ_rows dy is summed
 *   from the tiles of dy that dispatch stages anyway, and one more dispatch
 *   adds both one's parts: two where the split matmul, the sum of its parts
 *   and the bias's column sum (two passes where its rows split) took three
 *   or four; where the rows are too few to split, that dispatch alone.
 * - Matmuls without atomics: where tfjs would split one along K and add the
 *   parts with float atomics (a batch of one, K ≥ 2000, a small output), its
 *   small-output program runs instead, so the bits do not change from run
 *   to run; this project's split along K adds its parts in order. A large
 *   output takes the 128 × 128 tiled program.
 * - A matmul over K = 0 is tfjs's over a K of one zero (its bias and
 *   activation still apply): WebGPU rejects a dispatch that binds an empty
 *   buffer.
 */
import * as tf from "../tf";
import { DENSE_AND_INPUT, DENSE_GELU, DENSE_WEIGHT_GRADS, GELU_LINEAR_DX } from "../fused";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { MAX_GROUPS, rawBindings, record as recordDispatch } from "./raw";
import { fewOutputTiles, SPLIT_TILE, splitKEnabled, splitKGrid, splitKMatMulProgram, splitKParts, splitKRowSumsShader, takesTiledMatMul, TILED_STEP_K, TiledEpilogue, tiledMatMulProgram, tiledSplitKParts } from "./matmul";
import { GELU_FUNCTIONS_WGSL, ints, product, rawOf, WebGPUBackendLike, zeros } from "./program";
import { columnSum, inRuns } from "./reduce";
import { geluGradWebGPU } from "./elementwise";

/** tfjs-webgpu's program fields these kernels read or change. */
export interface TfjsProgram {
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
