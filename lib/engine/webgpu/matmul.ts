/**
 * This project's matmul programs for tfjs-webgpu (dense.ts's BatchMatMul
 * and _FusedMatMul choose among them and tfjs's own):
 *
 * - split along K (`splitKParts`, `splitKMatMulProgram`): an output of few
 *   tiles over a long K, in parts that a column sum adds in a fixed order
 *   (in 32 × 32 tiles, or in the tiled program's where `tiledSplitKParts`
 *   says its parts fill a GPU); the 32 × 32 split also as a raw dispatch
 *   that sums A's rows on the way (`splitKRowSumsShader`: a dense layer's
 *   bias gradient beside its weight's, dense.ts denseWeightGradsWebGPU);
 * - 128 × 128 tiles (`tiledMatMulProgram`): the classic fp32 GEMM blocking
 *   (a workgroup of 256 invocations, 8 × 8 outputs each, K in steps of 8
 *   staged in workgroup memory, the inner product unrolled into vec4
 *   registers), with the bias in its epilogue, for the model's large
 *   matmuls. tfjs-webgpu's own is 32 × 32 tiles of 4 × 4 (and scalar when B
 *   is transposed, as every dense layer's x·Wᵀ and the tied logits' x·Eᵀ
 *   are). RETROMAE_WEBGPU_MATMUL picks (matMulMode): by default ("auto") an
 *   output of at least 128 such tiles takes it, where a GPU is still full
 *   of workgroups of 256 (a base model's dense layers, the logits, the
 *   attention's batched products; not tiny's 2,048 × 128 dense layers, 16
 *   tiles, where tfjs's 256 smaller workgroups fill more of a GPU);
 *   "tiled" takes it for every output of at least one tile, "tfjs" never.
 *   On both CPU drivers it is faster than tfjs's, for every transpose:
 *   2.4 to 2.8 times on lavapipe at a logits-like [1,008, 128]·[128, 15,261],
 *   3.0 to 5.5 times on SwiftShader at [512, 128]·[128, 4,096]. On a GPU
 *   `bench gpu` times steps each way.
 *
 * Both are plain tfjs programs (run through runWebGPUProgram), and the raw
 * split is recorded in tfjs's command encoder (./raw.ts), so recorded steps
 * replay them all and profiles name them.
 */
import { GELU_FUNCTIONS_WGSL } from "./program";
import { rawBindings } from "./raw";

/** The tile of C a split-K workgroup computes, on each side. */
export const SPLIT_TILE = 32;

/**
 * Whether long reductions over few outputs are split in parts (the default;
 * RETROMAE_WEBGPU_SPLIT_K=0 turns it off): matmuls along K (splitKParts) and
 * column sums along their rows (reduce.ts columnSumParts).
 */
export function splitKEnabled(): boolean {
  const v = process.env.RETROMAE_WEBGPU_SPLIT_K;
  if (v !== undefined && v !== "" && v !== "0" && v !== "1") throw new Error(`RETROMAE_WEBGPU_SPLIT_K is "${v}"; set it to 1 (the default) or 0 (off), or unset it.`);
  return v !== "0";
}

/**
 * A matmul whose output has few tiles and whose inner dimension is long, split along K:
 * how many parts (1: not split). A weight's gradient over a small model's tokens (dyᵀ·x:
 * a [128, 128] output is 16 tiles of 32 × 32, over 2,048 tokens) or the tied decoder's
 * dz·E (K the vocabulary) otherwise runs as a few dozen workgroups, each walking the
 * whole of K, on a GPU that holds thousands: parts of at least 256 of K until there
 * are about 1,024 workgroups. RETROMAE_WEBGPU_SPLIT_K=0 turns it off.
 */
export function splitKParts(M: number, N: number, K: number): number {
  if (!splitKEnabled()) return 1;
  const tiles = Math.ceil(M / SPLIT_TILE) * Math.ceil(N / SPLIT_TILE);
  if (!fewOutputTiles(M, N) || K < 1024) return 1;
  return Math.max(1, Math.min(Math.ceil(1024 / tiles), Math.floor(K / 256), 64));
}

/** Whether an [M, N] output has few enough 32 × 32 tiles (< 512) for its matmul to be split along K (splitKParts) where K is long. */
export function fewOutputTiles(M: number, N: number): boolean {
  return Math.ceil(M / SPLIT_TILE) * Math.ceil(N / SPLIT_TILE) < 512;
}

/**
 * The parts of C = op(A)·op(B) over K, one part per workgroup z: part s sums
 * k in [s·chunk, min((s + 1)·chunk, K)). A 32 × 32 tile of C per workgroup
 * of 64 invocations, 4 × 4 each, K in steps of 32 staged in workgroup
 * memory (rows padded to 33), loaded along whichever of each operand's axes
 * is contiguous.
 * a [M, K] (or [K, M] with transposeA), b [K, N] (or [N, K]) -> [parts, M, N]
 */
export function splitKMatMulProgram(M: number, N: number, K: number, parts: number, transposeA: boolean, transposeB: boolean) {
  const code = `
  ${splitKShared()}
  fn main(index : i32) {
${splitKBody(transposeA, transposeB, false)}
  }`;
  return {
    outputShape: [parts, M, N],
    variableNames: ["A", "B"],
    uniforms: "M : i32, N : i32, K : i32, chunk : i32,",
    shaderKey: `retromaeMatMulSplitK_${transposeA}_${transposeB}`,
    /** For a profile's GFLOP/s (./replay.ts labels dispatches with it). */
    flops: 2 * M * N * K,
    workgroupSize: [64, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0, 1, 2] },
    dispatch: splitKGrid(M, N, parts),
    getUserCode: () => code,
  };
}

/** The workgroups of a split-K matmul of [M, N] in `parts`: x a tile's columns, y its rows, z the part. */
export function splitKGrid(M: number, N: number, parts: number): [number, number, number] {
  return [Math.ceil(N / SPLIT_TILE), Math.ceil(M / SPLIT_TILE), parts];
}

/**
 * splitKMatMulProgram's work as a raw dispatch (./raw.ts) for a dense
 * layer's weight gradient dyᵀ·x (A = dy transposed): beside the parts of C
 * ([parts, M, N], binding 0), the parts of A's row sums ([parts, M],
 * binding 1: the bias gradient Σ_rows dy) from the tiles of A the
 * workgroups of the first column of tiles stage anyway, each summed in
 * order along K. Bindings 2 and 3 are A and B, 4 the uniforms (M, N, K,
 * chunk). The workgroups: splitKGrid.
 */
export function splitKRowSumsShader(transposeA: boolean, transposeB: boolean): string {
  return `
${rawBindings(["result", "rowSums"], ["A", "B"], "M : i32, N : i32, K : i32, chunk : i32")}
${splitKShared()}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) workgroupId : vec3<u32>, @builtin(local_invocation_index) localIndex : u32) {
${splitKBody(transposeA, transposeB, true)}
}`;
}

/**
 * Where a matrix of a batch of heads lies in a flat tensor (HEAD_STRIDES
 * order): batch z = b · heads + h starts at offset + b · batch + h · head,
 * and its element (row, column) lies row · row + column · column from
 * there. q of [B, L, H] (heads side by side, dh wide) as [B · heads]
 * matrices [L, dh]: { offset: 0, batch: L·H, head: dh, row: H, column: 1 };
 * k in columns [H, 2H) of a [B, L, 3H] projection: { offset: H, batch: 3·L·H,
 * head: dh, row: 3H, column: 1 }.
 */
export interface HeadStrides {
  offset: number;
  batch: number;
  head: number;
  row: number;
  column: number;
}

/** HeadStrides's numbers, in the order HEAD_MATMUL's attributes and headMatMulProgram's uniforms take them. */
export const headStrideValues = (s: HeadStrides): number[] => [s.offset, s.batch, s.head, s.row, s.column];

/** Heads side by side in [B, L, W] from column `offset`, dh wide each, as B·heads matrices [L, dh]. */
export const headsSideBySide = (offset: number, L: number, W: number, dh: number): HeadStrides => ({ offset, batch: L * W, head: dh, row: W, column: 1 });

/** [B, heads, R, C] as B·heads matrices [R, C]. */
export const headsStacked = (heads: number, R: number, C: number): HeadStrides => ({ offset: 0, batch: heads * R * C, head: R * C, row: C, column: 1 });

/** The same matrices read transposed. */
export const transposedHeads = (s: HeadStrides): HeadStrides => ({ ...s, row: s.column, column: s.row });

/** HeadStrides from five numbers at `at` of such a list. */
export const headStridesAt = (v: number[], at: number): HeadStrides => ({ offset: v[at], batch: v[at + 1], head: v[at + 2], row: v[at + 3], column: v[at + 4] });

/**
 * C = A·B for a batch of heads, each operand and the output read and
 * written through its HeadStrides: the attention's products on heads laid
 * side by side in [B, L, H] (q·kᵀ, p·v and their gradients) with no
 * transposes to split and merge the heads. The split-K program's 32 × 32
 * tiles, z the batch. `a` strides (row m, column k), `b` (row k, column n),
 * `c` (row m, column n); `outputShape` holds every element of c's layout.
 */
export function headMatMulProgram(batch: number, heads: number, M: number, N: number, K: number, a: HeadStrides, b: HeadStrides, c: HeadStrides, outputShape: number[]) {
  // (loaded along whichever axis is contiguous: A's k unless its m is, B's n unless its k is)
  const [contiguousM, contiguousK] = [a.column !== 1 && a.row === 1, b.column !== 1 && b.row === 1];
  const code = `
  ${splitKShared()}
  fn main(index : i32) {
${splitKBody(contiguousM, contiguousK, false, true)}
  }`;
  return {
    outputShape,
    variableNames: ["A", "B"],
    uniforms: "M : i32, N : i32, K : i32, chunk : i32, heads : i32, aO : i32, aB : i32, aH : i32, aM : i32, aK : i32, bO : i32, bB : i32, bH : i32, bK : i32, bN : i32, cO : i32, cB : i32, cH : i32, cM : i32, cN : i32,",
    shaderKey: `retromaeHeadMatMul_${contiguousM}_${contiguousK}`,
    /** For a profile's GFLOP/s (./replay.ts labels dispatches with it). */
    flops: 2 * batch * M * N * K,
    workgroupSize: [64, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0, 1, 2] },
    dispatch: splitKGrid(M, N, batch),
    getUserCode: () => code,
    /** The uniforms' values, in their order. */
    uniformValues: [M, N, K, Math.ceil(K / SPLIT_TILE) * SPLIT_TILE, heads, ...[a, b, c].flatMap(headStrideValues)],
  };
}

/** The split-K program's tiles in workgroup memory. */
function splitKShared(): string {
  const [T, S] = [SPLIT_TILE, SPLIT_TILE + 1];
  return `var<workgroup> As : array<f32, ${T * S}>;
  var<workgroup> Bs : array<f32, ${T * S}>;`;
}

/**
 * The body of the split-K program's main, with `workgroupId`,
 * `localIndex`, A, B, `result` and `uniforms` in scope; with `rowSums`,
 * the workgroups at the first column of tiles (x = 0) also sum each row of
 * their A tile, writing rowSums[part · M + m]. With `strided`, z is a batch
 * of heads instead of a part of K (headMatMulProgram), and transposeA and
 * transposeB only say which axis of each operand is contiguous.
 */
function splitKBody(transposeA: boolean, transposeB: boolean, rowSums: boolean, strided = false): string {
  const T = SPLIT_TILE;
  // A staged row is 33 wide, not 32: invocations that read one column of As (4 rows apart) or store
  // one column of either tile (an operand loaded along its other axis) then fall on different
  // banks of a GPU's workgroup memory, where at a stride of 32 they all fell on one.
  const S = T + 1;
  // element e of a tile: (row, column) of the stored operand with the contiguous axis fastest
  const aAt = transposeA ? "let kk = e / 32; let mm = e % 32;" : "let mm = e / 32; let kk = e % 32;";
  // (indices clamped into the operands: a tile's edge reads a real element, then selects 0)
  // (strided: each operand's and the output's element at its batch's offset plus row and column strides, HEAD_STRIDES)
  const [mC, kC, nC] = ["min(m, uniforms.M - 1)", "min(k, uniforms.K - 1)", "min(n, uniforms.N - 1)"];
  const aIndex = strided ? `aOff + ${mC} * uniforms.aM + ${kC} * uniforms.aK` : transposeA ? `${kC} * uniforms.M + ${mC}` : `${mC} * uniforms.K + ${kC}`;
  const bAt = transposeB ? "let nn = e / 32; let kk = e % 32;" : "let kk = e / 32; let nn = e % 32;";
  const bIndex = strided ? `bOff + ${kC} * uniforms.bK + ${nC} * uniforms.bN` : transposeB ? `${nC} * uniforms.K + ${kC}` : `${kC} * uniforms.N + ${nC}`;
  const cIndex = strided ? "cOff + m * uniforms.cM + n * uniforms.cN" : "(part * uniforms.M + m) * uniforms.N + n";
  return `
    let tid = i32(localIndex);
    let tx = tid % 8;
    let ty = tid / 8;
    let n0 = i32(workgroupId.x) * ${T};
    let m0 = i32(workgroupId.y) * ${T};
    let part = i32(workgroupId.z);${strided ? `
    // z is the batch, b · heads + h: its offsets in A, B and the output
    let zb = part / uniforms.heads;
    let zh = part - zb * uniforms.heads;
    let aOff = uniforms.aO + zb * uniforms.aB + zh * uniforms.aH;
    let bOff = uniforms.bO + zb * uniforms.bB + zh * uniforms.bH;
    let cOff = uniforms.cO + zb * uniforms.cB + zh * uniforms.cH;
    let kBegin = 0;` : `
    let kBegin = part * uniforms.chunk;`}
    let kEnd = min(kBegin + uniforms.chunk, uniforms.K);
    var acc : array<array<f32, 4>, 4>;
    for (var i = 0; i < 4; i = i + 1) { for (var j = 0; j < 4; j = j + 1) { acc[i][j] = 0.0; } }${rowSums ? `
    // (one row of A's tile per invocation of the first 32, in workgroups at x = 0)
    let sumsRows = workgroupId.x == 0u && tid < ${T};
    var rowAcc = 0.0;` : ""}
    // (the trip count from a uniform: WGSL allows barriers in uniform control flow only; a last, shorter part loads zeros)
    for (var t = 0; t < uniforms.chunk; t = t + ${T}) {
      let k0 = kBegin + t;
      for (var e = tid; e < ${T * T}; e = e + 64) {
        ${aAt}
        let m = m0 + mm;
        let k = k0 + kk;
        As[mm * ${S} + kk] = select(0.0, A[${aIndex}], m < uniforms.M && k < kEnd);
      }
      for (var e = tid; e < ${T * T}; e = e + 64) {
        ${bAt}
        let n = n0 + nn;
        let k = k0 + kk;
        Bs[kk * ${S} + nn] = select(0.0, B[${bIndex}], n < uniforms.N && k < kEnd);
      }
      workgroupBarrier();${rowSums ? `
      if (sumsRows) { for (var kk = 0; kk < ${T}; kk = kk + 1) { rowAcc = rowAcc + As[tid * ${S} + kk]; } }` : ""}
      for (var kk = 0; kk < ${T}; kk = kk + 1) {
        var bv : array<f32, 4>;
        for (var j = 0; j < 4; j = j + 1) { bv[j] = Bs[kk * ${S} + tx * 4 + j]; }
        for (var i = 0; i < 4; i = i + 1) {
          let av = As[(ty * 4 + i) * ${S} + kk];
          for (var j = 0; j < 4; j = j + 1) { acc[i][j] = fma(av, bv[j], acc[i][j]); }
        }
      }
      workgroupBarrier();
    }
    for (var i = 0; i < 4; i = i + 1) {
      let m = m0 + ty * 4 + i;
      for (var j = 0; j < 4; j = j + 1) {
        let n = n0 + tx * 4 + j;
        if (m < uniforms.M && n < uniforms.N) { result[${cIndex}] = acc[i][j]; }
      }
    }${rowSums ? `
    if (sumsRows && m0 + tid < uniforms.M) { rowSums[part * uniforms.M + m0 + tid] = rowAcc; }` : ""}`;
}

/**
 * RETROMAE_WEBGPU_MATMUL: "auto" (the default: the 128 × 128 tiled matmul
 * for outputs of at least AUTO_TILES tiles, tfjs's programs for the rest),
 * "tiled" (the tiled matmul for every output of at least one tile) or
 * "tfjs" (tfjs-webgpu's own programs only).
 */
export function matMulMode(): "auto" | "tiled" | "tfjs" {
  const v = process.env.RETROMAE_WEBGPU_MATMUL;
  if (v === undefined || v === "" || v === "auto") return "auto";
  if (v === "tiled" || v === "tfjs") return v;
  throw new Error(`RETROMAE_WEBGPU_MATMUL is "${v}"; set it to auto (the default), tiled or tfjs, or unset it.`);
}

/** Tiles of 128 × 128 an output needs for "auto" to take the tiled matmul: about one per streaming multiprocessor of a large GPU. */
export const AUTO_TILES = 128;

const BM = 128; // rows of C per workgroup
const BN = 128; // columns of C per workgroup
const BK = 8; // K per step through workgroup memory
/** K per step of the tiled program through workgroup memory (a split's parts are whole steps). */
export const TILED_STEP_K = BK;
const ROW = BM / 4 + 1; // vec4s per row of a staged tile, one more to spread the stores over the banks
const INVOCATIONS = 256; // 16 × 16, and (BM · BK / 4 = BN · BK / 4) one staged vec4 of each slice apiece

/** Whether an output of M × N (in `batch` matrices) takes the tiled program (matMulMode): both sides at least a tile, and in "auto" AUTO_TILES tiles in all. */
export function takesTiledMatMul(batch: number, M: number, N: number): boolean {
  const mode = matMulMode();
  if (mode === "tfjs" || M < BM || N < BN) return false;
  return mode === "tiled" || batch * Math.ceil(M / BM) * Math.ceil(N / BN) >= AUTO_TILES;
}

/**
 * For a matmul that splitKParts splits: how many parts of K the tiled
 * program would take it in (parts of at least 256 of K, to about 256
 * workgroups of 256), or 0 where it should keep the 32 × 32 split instead:
 * RETROMAE_WEBGPU_MATMUL=tfjs, an output under a tile either way, or (in
 * auto) fewer than AUTO_TILES workgroups even so (a [128, 128] weight's
 * gradient over 2,048 tokens: one tile, 8 parts). The tied decoder's dz·E
 * at tiny 16 × 128 ([1,008, 128] over 30,522 words: 8 tiles) takes 32 parts.
 */
export function tiledSplitKParts(M: number, N: number, K: number): number {
  const mode = matMulMode();
  if (mode === "tfjs" || M < BM || N < BN) return 0;
  const tiles = Math.ceil(M / BM) * Math.ceil(N / BN);
  const parts = Math.max(1, Math.min(Math.ceil(256 / tiles), Math.floor(K / 256), 64));
  return mode === "tiled" || tiles * parts >= AUTO_TILES ? parts : 0;
}

/**
 * What the tiled program does to C as it writes it: nothing, add a bias [N]
 * to every row ("row") or an addend of C's shape ("matrix"), or multiply by
 * GELU′ of a pre-activation of C's shape ("geluGrad": C a product dy·W
 * that is GELU's input's gradient, elementwise.ts's GELU_GRAD arithmetic).
 */
export type TiledEpilogue = "none" | "row" | "matrix" | "geluGrad";

/**
 * C[b] = op(A[b])·op(B[b]) (+ bias) in tiles of 128 × 128: a workgroup of
 * 16 × 16 invocations, each computing 8 rows × 8 columns of its tile (two
 * runs of 4 columns, half a tile apart) in 16 vec4 registers; per step of 8
 * along K the workgroup stages A's and B's slices in workgroup memory
 * (k-major, loaded along whichever axis of each operand is contiguous, each
 * invocation storing one whole vec4 of each, loaded into registers during
 * the step before) and each invocation reads 2 + 2 vec4s for 64
 * multiply-adds. Edges are masked: any M, N, K. A batch of A or B of one is
 * broadcast. a [bA, M, K] ([bA, K, M] transposed), b [bB, K, N]
 * ([bB, N, K]); the epilogue adds `bias` [N] to every row ("row"), or an
 * addend [batch, M, N] of C's own shape ("matrix": another gradient of the
 * same tensor, which tfjs would add in a pass of its own), or nothing
 * ("none") -> [batch, M, N]. With `split`, A and B are single matrices and z is a part
 * of K instead, [z·chunk, (z + 1)·chunk) (the uniform `chunk`; K itself
 * when unsplit): [batch parts, M, N], for a column sum to add.
 */
export function tiledMatMulProgram(batch: number, M: number, N: number, K: number, transposeA: boolean, transposeB: boolean, bias: TiledEpilogue, split = false) {
  // Staging: invocation t (0..255) loads one vec4 of each slice, 4 rows of A (or 4 columns of B)
  // at one k, and stores it whole. (WGSL lets a store to one component of a vector touch the
  // whole vector, so four invocations writing one vec4's components would race.) Its (kk, q),
  // q the vec4's index along m or n, walk the operand's contiguous axis fastest: adjacent
  // invocations read adjacent addresses.
  const alongK = `let kk = tid % ${BK}; let q = tid / ${BK};`; // the operand is contiguous along k
  const alongMN = `let kk = tid / ${BM / 4}; let q = tid % ${BM / 4};`; // ... along m (or n)
  const aAt = transposeA ? alongMN : alongK;
  const aIndex = (m: string) => (transposeA ? `aBase + min(k, uniforms.K - 1) * uniforms.M + min(${m}, uniforms.M - 1)` : `aBase + min(${m}, uniforms.M - 1) * uniforms.K + min(k, uniforms.K - 1)`);
  const bAt = transposeB ? alongK : alongMN;
  const bIndex = (n: string) => (transposeB ? `bBase + min(${n}, uniforms.N - 1) * uniforms.K + min(k, uniforms.K - 1)` : `bBase + min(k, uniforms.K - 1) * uniforms.N + min(${n}, uniforms.N - 1)`);
  // one vec4 of X's slice: elements at row (or column) first + c, c = 0..3, and at k; 0 past the edges
  const load = (X: string, index: (i: string) => string, bound: string) =>
    `vec4<f32>(${[0, 1, 2, 3].map((c) => `select(0.0, ${X}[${index(`first + ${c}`)}], first + ${c} < ${bound} && k < kEnd)`).join(", ")})`;
  // this invocation's vec4 of each slice at the step of K that starts at k0, into aNext and bNext
  const fetch = (k0: string) => `
    {
      ${aAt}
      let first = m0 + q * 4;
      let k = ${k0} + kk;
      aNext = ${load("A", aIndex, "uniforms.M")};
    }
    {
      ${bAt}
      let first = n0 + q * 4;
      let k = ${k0} + kk;
      bNext = ${load("B", bIndex, "uniforms.N")};
    }`;
  const rows = [0, 1, 2, 3, 4, 5, 6, 7];
  const halves = [0, 1];
  const decl = rows.flatMap((i) => halves.map((h) => `var c${i}${h} = vec4<f32>(0.0);`)).join(" ");
  // one k of the staged slices: a[0..7] (two vec4) for this invocation's rows, b (two vec4) for its columns.
  // Its columns are two runs of 4, 64 apart (4·tx and 64 + 4·tx), so that adjacent invocations read
  // adjacent vec4s of Bs (8 contiguous columns each would put two of every 8 invocations on one bank
  // of a GPU's workgroup memory) and write adjacent vec4s of C. Each output's sum over k is the same.
  const step = (kk: number) => `
        {
          let a0 = As[${kk * ROW} + ty * 2];
          let a1 = As[${kk * ROW} + ty * 2 + 1];
          let b0 = Bs[${kk * ROW} + tx];
          let b1 = Bs[${kk * ROW} + ${BN / 8} + tx];
${rows.map((i) => `          c${i}0 = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b0, c${i}0); c${i}1 = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b1, c${i}1);`).join("\n")}
        }`;
  const store = rows
    .flatMap((i) =>
      halves.map(
        (h) => `
    {
      let m = m0 + ty * 8 + ${i};
      let n = n0 + ${h * (BN / 2)} + tx * 4;
      let v = c${i}${h}${bias === "row" ? " + vec4<f32>(bias[min(n, uniforms.N - 1)], bias[min(n + 1, uniforms.N - 1)], bias[min(n + 2, uniforms.N - 1)], bias[min(n + 3, uniforms.N - 1)])" : ""};
      if (m < uniforms.M) {
        let o = (z * uniforms.M + m) * uniforms.N + n;
        for (var j = 0; j < 4; j = j + 1) { if (n + j < uniforms.N) { result[o + j] = ${{ none: "v[j]", row: "v[j]", matrix: "v[j] + bias[o + j]", geluGrad: "retromaeGeluGrad(pre[o + j], v[j])" }[bias]}; } }
      }
    }`,
      ),
    )
    .join("");
  const code = `${bias === "geluGrad" ? GELU_FUNCTIONS_WGSL : ""}
  var<workgroup> As : array<vec4<f32>, ${BK * ROW}>;
  var<workgroup> Bs : array<vec4<f32>, ${BK * ROW}>;
  fn main(index : i32) {
    let tid = i32(localIndex);
    let tx = tid % 16;
    let ty = tid / 16;
    let n0 = i32(workgroupId.x) * ${BN};
    let m0 = i32(workgroupId.y) * ${BM};
    let z = i32(workgroupId.z);${split ? `
    // z is the part of K: [z·chunk, (z + 1)·chunk)
    let aBase = 0;
    let bBase = 0;
    let kBegin = z * uniforms.chunk;` : `
    let aBase = select(z, 0, uniforms.batchA == 1) * uniforms.M * uniforms.K;
    let bBase = select(z, 0, uniforms.batchB == 1) * uniforms.K * uniforms.N;
    let kBegin = 0;`}
    let kEnd = min(kBegin + uniforms.chunk, uniforms.K);
    ${decl}
    // This invocation's vec4 of A's slice and of B's at a step of K, in registers: the next step's
    // are loaded before this step's multiply-adds, so that their latency hides behind them.
    var aNext = vec4<f32>(0.0);
    var bNext = vec4<f32>(0.0);
${fetch("kBegin")}
    // (the trip count from a uniform, as barriers need; a last, shorter part loads zeros)
    for (var t = 0; t < uniforms.chunk; t = t + ${BK}) {
      { ${aAt} As[kk * ${ROW} + q] = aNext; }
      { ${bAt} Bs[kk * ${ROW} + q] = bNext; }
      workgroupBarrier();
${fetch(`kBegin + t + ${BK}`)}
${Array.from({ length: BK }, (_, kk) => step(kk)).join("")}
      workgroupBarrier();
    }
${store}
  }`;
  return {
    outputShape: [batch, M, N],
    variableNames: bias === "none" ? ["A", "B"] : ["A", "B", bias === "geluGrad" ? "pre" : "bias"],
    uniforms: "M : i32, N : i32, K : i32, batchA : i32, batchB : i32, chunk : i32,",
    shaderKey: `retromaeMatMulTiled_${transposeA}_${transposeB}_${bias === "none" ? false : bias === "row" ? true : bias}${split ? "_splitK" : ""}`,
    /** For a profile's GFLOP/s (./replay.ts labels dispatches with it). */
    flops: 2 * (split ? 1 : batch) * M * N * K,
    workgroupSize: [INVOCATIONS, 1, 1] as [number, number, number],
    dispatchLayout: { x: [0, 1, 2] },
    dispatch: [Math.ceil(N / BN), Math.ceil(M / BM), batch] as [number, number, number],
    getUserCode: () => code,
  };
}
