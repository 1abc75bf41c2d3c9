/**
 * The attention's kernels:
 * - Softmax over the last axis whose rows may be all -FLT_MAX (HF's mask
 *   value: padding rows of the decoder's attention see nothing). tfjs's
 *   starts each row's max at -3.402823e38, which is above -FLT_MAX, so such
 *   a row sums to 0 and gives NaN, and the NaN reaches every gradient through
 *   the attention's backward pass. Here a row's max starts at its first
 *   element: such a row is uniform, as on the cpu backend and in PyTorch.
 * - The attention softmax with its scale and additive mask, forward (with
 *   its dropout) and backward, a workgroup per row (all-masked rows uniform,
 *   as above).
 * - The whole attention for inference (encoding, the probe): per head,
 *   softmax(q kᵀ · scale + mask) v read from and written to [B, L, H] in
 *   place, with an online softmax over key tiles in workgroup memory: no
 *   head transposes, and no [B, heads, L, L] scores or probabilities.
 * - The attention in training (fused.ts attentionTraining: q·kᵀ, p·v and
 *   their four gradients) on the heads side by side in their stacked
 *   projections ([B, L, 3H] in self-attention), each operand read and the
 *   output written through strides (./matmul.ts headMatMulProgram), and q's,
 *   k's and v's gradients written side by side into the projection's
 *   (ATTENTION_GRAD): no transposes to split and merge the heads, eight per
 *   attention layer and step, no split copies of q, k and v kept for the
 *   backward pass, and one matmul for the projections each way. The stacked
 *   weights are copied together, and their gradients apart, in one
 *   dispatch each (STACK_ROWS, UNSTACK_ROWS). Where the batched [Lq, Lk]
 *   product takes the 128 × 128 tiled matmul (a base model at 512 tokens),
 *   the heads are split as before.
 */
import * as tf from "../tf";
import { ATTENTION, ATTENTION_GRAD, DROPOUT_SOFTMAX, HEAD_MATMUL, SCALED_MASKED_SOFTMAX, SCALED_SOFTMAX_GRAD, STACK_ROWS, UNSTACK_ROWS } from "../fused";
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { MAX_GROUPS, rawBindings, record as recordDispatch } from "./raw";
import { headMatMulProgram, HeadStrides, headsSideBySide, headsStacked, headStridesAt, transposedHeads } from "./matmul";
import { DROP_SEED_WGSL, DROPOUT_FIELDS, DropoutAttrs, DROPPED_WGSL, dropoutUniforms, ints, packUniforms, product, programUniforms, rawOf, rawRowsShader, rowMaxAndSumWgsl, rowWorkgroupProgram, ROWS_WG, WebGPUBackendLike, zeros } from "./program";

/**
 * Row-wise softmax of x [rows, cols]: one workgroup per row, max and sum by
 * tree reduction in workgroup memory.
 */
export function softmaxProgram(rows: number, cols: number) {
  const wg = cols >= 4096 ? 256 : 64;
  return rowWorkgroupProgram("Softmax", rows, cols, ["x"], "", `
${rowMaxAndSumWgsl((c) => `x[base + ${c}]`, "n", wg)}
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

/**
 * The body of softmax(x · scale + mask) per row of x [B, heads, Lq, Lk];
 * mask [B, 1, mq, Lk] with mq 1 or Lq. `row`, `tid`, `live`, `n` (= Lk) and
 * `base` (row · n) in scope; `write(v)` stores v, column c's probability.
 */
function scaledMaskedSoftmaxBody(write: (v: string) => string): string {
  const z = (c: string) => `(x[base + ${c}] * uniforms.scale + mask[mbase + ${c}])`;
  return `
    let q = row % uniforms.lq;
    let b = row / (uniforms.lq * uniforms.heads);
    let mbase = (b * uniforms.mq + select(q, 0, uniforms.mq == 1)) * n;${rowMaxAndSumWgsl(z)}
    if (live) { for (var c = tid; c < n; c = c + ${ROWS_WG}) { ${write(`exp(${z("c")} - rowMax) / total`)} } }`;
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

export const stackRowsWebGPU = stackKernel(false);
export const unstackRowsWebGPU = stackKernel(true);
