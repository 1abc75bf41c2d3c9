/**
 * The geometry of [CLS] embeddings, measured beside retrieval:
 *
 * - anisotropy: the mean cosine between two different documents' vectors
 *   (Ethayarajh 2019). An MLM-trained BERT's sentence vectors crowd into a
 *   narrow cone (near 1); isotropic vectors give about 0. Computed exactly
 *   over every pair: mean_{i≠j} uᵢ·uⱼ = (‖Σu‖² − Σ‖u‖²) / (n(n − 1)).
 * - uniformity (Wang and Isola 2020): log E exp(−2‖x − y‖²) over pairs of
 *   L2-normalised vectors; lower is more uniform on the sphere (−4 is the
 *   value of perfectly spread points as n grows; 0 when all coincide).
 * - alignment (Wang and Isola 2020): E‖x − y‖² over positive pairs (a query
 *   and its relevant document), normalised; lower is better aligned.
 * - effective rank (Roy and Vetterli 2007): exp of the entropy of the
 *   normalised singular values of the [CLS] matrix [n × H]: 1 when every
 *   vector is a multiple of one direction, H when the variance is spread
 *   evenly over all H directions.
 *
 * `geometryOf` works on vectors already encoded; `embeddingGeometry`
 * encodes texts with a model; probe.ts's `geometryHook` logs the numbers as
 * eval events during pre-training, reusing the probe's document embeddings
 * when the probe ran at the same step.
 */
import { Displayable, JUPYTER_DISPLAY, MimeBundle } from "../display";
import { Rng } from "../engine/rng";
import { symmetricEigenvalues } from "../util/eigenvalues";
import { escapeHtml } from "../util/html";
import type { RetroMAE } from "../model/retromae";
import type { BertTokenizer } from "../text/tokenizer";
import { encodeTexts } from "./encode";

export interface Geometry {
  /** Mean cosine between different documents' vectors (0: isotropic, 1: one direction). */
  anisotropy: number;
  /** log E exp(−2‖x − y‖²) over pairs of normalised vectors (lower: more uniform). */
  uniformity: number;
  /** E‖x − y‖² over the given positive pairs, normalised (lower: better aligned); NaN without pairs. */
  alignment: number;
  /** exp(entropy of the normalised singular values) of the [n × H] matrix, in [1, min(n, H)]. */
  effectiveRank: number;
  /** Vectors measured, and how many of them the uniformity's pairs were drawn from. */
  n: number;
  uniformityOver: number;
  /** Positive pairs in the alignment. */
  pairs: number;
}

/** The names under which geometryHook logs a Geometry (metrics.jsonl, the chart's geometry panel). */
export const GEOMETRY_METRICS = { anisotropy: "anisotropy", uniformity: "uniformity", alignment: "alignment", effectiveRank: "effective rank" } as const;

export interface GeometryOptions {
  /**
   * The uniformity sums over all pairs of at most this many vectors (a
   * seeded sample of rows when there are more; the cost is quadratic).
   * Default 2,048. Anisotropy and effective rank always use every vector.
   */
  uniformitySample?: number;
  seed?: number;
}

const checkMatrix = (x: Float32Array, H: number, what: string): number => {
  if (!Number.isInteger(H) || H < 1) throw new Error(`The embedding width must be a whole number ≥ 1; got ${H}.`);
  if (x.length % H !== 0) throw new Error(`${what} has ${x.length} values, not a whole number of rows of width ${H}; pass a row-major [n × ${H}] array.`);
  return x.length / H;
};

/** Rows scaled to unit length, in float64 (a zero row stays zero). */
function unitRows(x: Float32Array, H: number): Float64Array {
  const n = x.length / H;
  const u = new Float64Array(x.length);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let h = 0; h < H; h++) s += x[i * H + h] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let h = 0; h < H; h++) u[i * H + h] = x[i * H + h] * inv;
  }
  return u;
}

/** Mean cosine over all ordered pairs i ≠ j, exactly, in O(nH). */
export function anisotropy(x: Float32Array, H: number): number {
  const n = checkMatrix(x, H, "anisotropy's input");
  if (n < 2) throw new Error(`Anisotropy needs at least 2 vectors; got ${n}.`);
  const u = unitRows(x, H);
  const sum = new Float64Array(H);
  let self = 0;
  for (let i = 0; i < n; i++)
    for (let h = 0; h < H; h++) {
      sum[h] += u[i * H + h];
      self += u[i * H + h] ** 2;
    }
  let total = 0;
  for (let h = 0; h < H; h++) total += sum[h] ** 2;
  return (total - self) / (n * (n - 1));
}

/** Wang and Isola's uniformity, t = 2, over all pairs i < j of the (sampled) normalised rows. */
export function uniformity(x: Float32Array, H: number, options: GeometryOptions = {}): { value: number; over: number } {
  const n = checkMatrix(x, H, "uniformity's input");
  if (n < 2) throw new Error(`Uniformity needs at least 2 vectors; got ${n}.`);
  const cap = options.uniformitySample ?? 2048;
  const rows = n <= cap ? Array.from({ length: n }, (_, i) => i) : new Rng(options.seed ?? 0).permutation(n).slice(0, cap);
  const m = rows.length;
  // the sampled rows, normalised, one after another (2,048 × 768 float64s is 12.6 MB, read m/2 times)
  const sampled = new Float32Array(m * H);
  rows.forEach((r, a) => sampled.set(x.subarray(r * H, (r + 1) * H), a * H));
  const u = unitRows(sampled, H);
  // ‖x − y‖² = 2 − 2 x·y on the sphere, so exp(−2‖x − y‖²) = exp(4 x·y − 4) ∈ [e⁻⁸, 1]: no overflow
  const term = (dot: number) => Math.exp(4 * dot - 4);
  let sum = 0;
  // Four rows a at a time against the later rows b, two at a time: eight dot products in flight,
  // the four rows' values read once for two rows b, each dot summed in h order as one row at a time
  // would, and the terms added in the order of one row b at a time.
  let a = 0;
  for (; a + 4 <= m; a += 4) {
    const [r0, r1, r2, r3] = [a * H, (a + 1) * H, (a + 2) * H, (a + 3) * H];
    // the pairs among the four
    for (const [p, q] of [[r0, r1], [r0, r2], [r0, r3], [r1, r2], [r1, r3], [r2, r3]]) {
      let dot = 0;
      for (let h = 0; h < H; h++) dot += u[p + h] * u[q + h];
      sum += term(dot);
    }
    let b = a + 4;
    for (; b + 2 <= m; b += 2) {
      const rb = b * H;
      const rc = rb + H;
      let d0 = 0, d1 = 0, d2 = 0, d3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
      for (let h = 0; h < H; h++) {
        const v = u[rb + h], w = u[rc + h];
        const x0 = u[r0 + h], x1 = u[r1 + h], x2 = u[r2 + h], x3 = u[r3 + h];
        d0 += x0 * v;
        d1 += x1 * v;
        d2 += x2 * v;
        d3 += x3 * v;
        e0 += x0 * w;
        e1 += x1 * w;
        e2 += x2 * w;
        e3 += x3 * w;
      }
      sum += term(d0) + term(d1) + term(d2) + term(d3);
      sum += term(e0) + term(e1) + term(e2) + term(e3);
    }
    for (; b < m; b++) {
      const rb = b * H;
      let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
      for (let h = 0; h < H; h++) {
        const v = u[rb + h];
        d0 += u[r0 + h] * v;
        d1 += u[r1 + h] * v;
        d2 += u[r2 + h] * v;
        d3 += u[r3 + h] * v;
      }
      sum += term(d0) + term(d1) + term(d2) + term(d3);
    }
  }
  for (; a < m; a++) {
    for (let b = a + 1; b < m; b++) {
      let dot = 0;
      for (let h = 0; h < H; h++) dot += u[a * H + h] * u[b * H + h];
      sum += term(dot);
    }
  }
  return { value: Math.log(sum / ((m * (m - 1)) / 2)), over: m };
}

/** Wang and Isola's alignment, α = 2: mean ‖x − y‖² over row pairs (a[i], b[i]) after normalising. */
export function alignment(a: Float32Array, b: Float32Array, H: number): number {
  const n = checkMatrix(a, H, "alignment's first input");
  if (checkMatrix(b, H, "alignment's second input") !== n) throw new Error(`Alignment needs one second vector per first vector; got ${n} and ${b.length / H}.`);
  if (n === 0) return NaN;
  const ua = unitRows(a, H);
  const ub = unitRows(b, H);
  let s = 0;
  for (let i = 0; i < n * H; i++) s += (ua[i] - ub[i]) ** 2;
  return s / n;
}

/**
 * exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ / Σσ, the σ the singular values of x [n × H]
 * (the square roots of the eigenvalues of xᵀx, a symmetric H × H matrix).
 * NaN when every vector is zero, or when one is not finite (or, in theory,
 * when the eigenvalues do not converge).
 */
export function effectiveRank(x: Float32Array, H: number): number {
  const n = checkMatrix(x, H, "effectiveRank's input");
  if (n < 1) throw new Error("The effective rank needs at least one vector.");
  const gram = Array.from({ length: H }, () => new Float64Array(H));
  // xᵀx's upper triangle, four rows of x at a time: each of its entries read and written once per
  // four rows (a base model's 768 × 768 is 4.7 MB, far past the cache), their products summed first;
  // two rows p of the triangle at a time, which share the reads of column q's four values
  const rows = [0, 1, 2, 3].map(() => new Float64Array(H));
  const [r0, r1, r2, r3] = rows;
  for (let i = 0; i < n; i += 4) {
    const k = Math.min(4, n - i);
    for (let j = 0; j < 4; j++) {
      if (j < k) for (let h = 0; h < H; h++) rows[j][h] = x[(i + j) * H + h];
      else rows[j].fill(0); // past the last row: zeros add nothing
    }
    let p = 0;
    for (; p + 1 < H; p += 2) {
      const v0 = r0[p], v1 = r1[p], v2 = r2[p], v3 = r3[p];
      const w0 = r0[p + 1], w1 = r1[p + 1], w2 = r2[p + 1], w3 = r3[p + 1];
      const g = gram[p], f = gram[p + 1];
      g[p] += v0 * v0 + v1 * v1 + v2 * v2 + v3 * v3;
      for (let q = p + 1; q < H; q++) {
        const a0 = r0[q], a1 = r1[q], a2 = r2[q], a3 = r3[q];
        g[q] += v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3;
        f[q] += w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3;
      }
    }
    if (p < H) gram[p][p] += r0[p] * r0[p] + r1[p] * r1[p] + r2[p] * r2[p] + r3[p] * r3[p];
  }
  for (let p = 0; p < H; p++) for (let q = 0; q < p; q++) gram[p][q] = gram[q][p];
  // a vector with NaN or ±Inf in it (a diverged model) has no singular values to speak of
  if (!gram.every((r) => r.every(Number.isFinite))) return NaN;
  let eig: Float64Array;
  try {
    eig = symmetricEigenvalues(gram); // the eigenvalues alone (the lower triangle is read)
  } catch {
    return NaN; // no convergence (none seen on finite input): a diagnostic is not worth stopping a run for
  }
  const largest = eig[H - 1];
  if (!(largest > 0)) return NaN; // every vector is zero
  // eigenvalues below the float64 noise of the largest are zeros of a rank-deficient matrix
  const sigma = eig.map((l) => (l > largest * 1e-12 ? Math.sqrt(l) : 0));
  const total = sigma.reduce((a, b) => a + b, 0);
  let entropy = 0;
  for (const s of sigma) if (s > 0) entropy -= (s / total) * Math.log(s / total);
  return Math.exp(entropy);
}

/**
 * Every measure on vectors already encoded: docs [n × H], and optionally
 * positive pairs as two row-aligned matrices (queries[i] relevant to
 * positives[i]).
 */
export function geometryOf(docs: Float32Array, H: number, pairs?: { queries: Float32Array; positives: Float32Array }, options: GeometryOptions = {}): Geometry {
  const n = checkMatrix(docs, H, "The document matrix");
  const u = uniformity(docs, H, options);
  return {
    anisotropy: anisotropy(docs, H),
    uniformity: u.value,
    alignment: pairs ? alignment(pairs.queries, pairs.positives, H) : NaN,
    effectiveRank: effectiveRank(docs, H),
    n,
    uniformityOver: u.over,
    pairs: pairs ? pairs.queries.length / H : 0,
  };
}

export interface EmbeddingGeometryOptions extends GeometryOptions {
  /** (query text, relevant document text) pairs for the alignment. */
  pairs?: readonly (readonly [string, string])[];
  /** Document tokens. Default 512, as the probe encodes documents. */
  maxLength?: number;
  /** Query tokens. Default 64, as the probe. */
  queryMaxLength?: number;
  batchSize?: number;
  progress?: boolean;
}

/** Encode texts (and pairs) with the model's [CLS] and measure their geometry. */
export async function embeddingGeometry(model: RetroMAE, tokenizer: BertTokenizer, texts: readonly string[], options: EmbeddingGeometryOptions = {}): Promise<Geometry> {
  if (texts.length < 2) throw new Error(`embeddingGeometry needs at least 2 texts to compare; got ${texts.length}.`);
  const H = model.config.hiddenSize;
  const enc = (t: readonly string[], maxLength: number) => encodeTexts(model, tokenizer, t, { maxLength, batchSize: options.batchSize, progress: options.progress ?? false });
  const docs = await enc(texts, options.maxLength ?? 512);
  let pairs: { queries: Float32Array; positives: Float32Array } | undefined;
  if (options.pairs?.length) {
    pairs = { queries: await enc(options.pairs.map((p) => p[0]), options.queryMaxLength ?? 64), positives: await enc(options.pairs.map((p) => p[1]), options.maxLength ?? 512) };
  }
  return geometryOf(docs, H, pairs, options);
}

/** Geometry as eval metrics, under GEOMETRY_METRICS' names. */
export function geometryMetrics(g: Geometry): Record<string, number> {
  const out: Record<string, number> = { [GEOMETRY_METRICS.anisotropy]: g.anisotropy, [GEOMETRY_METRICS.uniformity]: g.uniformity, [GEOMETRY_METRICS.effectiveRank]: g.effectiveRank };
  if (Number.isFinite(g.alignment)) out[GEOMETRY_METRICS.alignment] = g.alignment;
  return out;
}

/** Which way each measure points when retrieval should be better: +1 higher, −1 lower. */
const BETTER: Record<keyof typeof GEOMETRY_METRICS, 1 | -1> = { anisotropy: -1, uniformity: -1, alignment: -1, effectiveRank: 1 };

/** Kendall's τ-a between two equally long lists (pairs tied in either count 0). */
export function kendallTau(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length || a.length < 2) throw new Error(`Kendall's τ needs two lists of the same length, at least 2; got ${a.length} and ${b.length}.`);
  let s = 0;
  for (let i = 0; i < a.length; i++) for (let j = i + 1; j < a.length; j++) s += Math.sign(a[i] - a[j]) * Math.sign(b[i] - b[j]);
  return s / ((a.length * (a.length - 1)) / 2);
}

/** Every ordering of 0..n−1 (n small). */
function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
}

export interface GeometryRow {
  name: string;
  geometry: Geometry;
  /** The run's retrieval score (e.g. its probe's nDCG@10), for `agreement`. */
  score?: number;
}

export interface Agreement {
  measure: string;
  /** Kendall's τ between the measure, signed so that "better geometry" is higher, and the score. */
  tau: number;
  /** One-sided exact permutation p: the share of the n! orderings of the scores with τ at least this high. */
  p: number;
}

/**
 * The geometry of several encoders in one table (lower anisotropy,
 * uniformity and alignment, and higher effective rank, are the directions
 * usually read as better for retrieval), and whether each measure orders
 * the encoders as their retrieval scores do.
 */
export class GeometryTable implements Displayable {
  constructor(readonly rows: readonly GeometryRow[], readonly scoreName = "NDCG@10") {
    if (rows.length === 0) throw new Error("A geometry table needs at least one row; pass [{ name, geometry }].");
  }

  private cells(r: GeometryRow): string[] {
    const g = r.geometry;
    const f = (v: number, d = 4) => (Number.isFinite(v) ? v.toFixed(d) : "–");
    return [r.name, f(g.anisotropy), f(g.uniformity), f(g.alignment), f(g.effectiveRank, 2), r.score === undefined ? "–" : f(r.score)];
  }

  private header(): string[] {
    return ["encoder", "anisotropy ↓", "uniformity ↓", "alignment ↓", "effective rank ↑", this.scoreName];
  }

  /** Per measure, Kendall's τ against the score and its exact permutation p (needs a score on every row, 2 to 8 rows). */
  agreement(): Agreement[] {
    const rows = this.rows;
    if (rows.some((r) => r.score === undefined)) throw new Error(`agreement needs a ${this.scoreName} on every row; give each row a score.`);
    if (rows.length < 2 || rows.length > 8) throw new Error(`agreement compares orderings exactly over n! permutations, for 2 to 8 encoders; got ${rows.length}.`);
    const scores = rows.map((r) => r.score!);
    const orders = permutations(rows.length);
    return (Object.keys(BETTER) as (keyof typeof GEOMETRY_METRICS)[])
      .filter((k) => rows.every((r) => Number.isFinite(r.geometry[k])))
      .map((k) => {
        const signed = rows.map((r) => BETTER[k] * r.geometry[k]);
        const tau = kendallTau(signed, scores);
        const atLeast = orders.filter((o) => kendallTau(signed, o.map((i) => scores[i])) >= tau - 1e-12).length;
        return { measure: GEOMETRY_METRICS[k], tau, p: atLeast / orders.length };
      });
  }

  /** One sentence per measure: does it order the encoders as the score does, with τ and p. */
  explanation(): string[] {
    const n = this.rows.length;
    return this.agreement().map(({ measure, tau, p }) => {
      const dir = measure === GEOMETRY_METRICS.effectiveRank ? "higher" : "lower";
      const how = tau === 1 ? `orders the ${n} encoders exactly as ${this.scoreName} does` : tau > 0 ? `orders the ${n} encoders partly as ${this.scoreName} does` : `does not order the ${n} encoders as ${this.scoreName} does`;
      return `${measure[0].toUpperCase()}${measure.slice(1)} ${how} (${dir} ${measure}, higher ${this.scoreName}: Kendall τ = ${tau.toFixed(2)}, exact permutation p = ${p.toFixed(3)} over ${n}! orderings).`;
    });
  }

  toString(): string {
    const rows = [this.header(), ...this.rows.map((r) => this.cells(r))];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ");
    return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line), "↓ / ↑: the direction usually read as better for retrieval (Wang and Isola 2020; Ethayarajh 2019)."].join("\n");
  }

  toMimeBundle(): MimeBundle {
    const th = this.header().map((h, i) => `<th style="text-align:${i ? "right" : "left"}">${escapeHtml(h)}</th>`).join("");
    const body = this.rows.map((r) => `<tr>${this.cells(r).map((c, i) => `<td style="text-align:${i ? "right" : "left"}">${escapeHtml(c)}</td>`).join("")}</tr>`).join("");
    return { "text/html": `<table class="retromae-geometry"><tr>${th}</tr>${body}</table><div style="font-size:12px;color:#666">${escapeHtml(this.toString().split("\n").pop()!)}</div>`, "text/plain": this.toString() };
  }

  toJSON(): { scoreName: string; rows: GeometryRow[]; agreement?: Agreement[] } {
    const scored = this.rows.length >= 2 && this.rows.length <= 8 && this.rows.every((r) => r.score !== undefined);
    return { scoreName: this.scoreName, rows: [...this.rows], ...(scored ? { agreement: this.agreement() } : {}) };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return this.toMimeBundle();
  }
}

export function geometryTable(rows: readonly GeometryRow[], scoreName = "NDCG@10"): GeometryTable {
  return new GeometryTable(rows, scoreName);
}
