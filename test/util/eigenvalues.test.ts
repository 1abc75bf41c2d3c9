/**
 * lib/util/eigenvalues.ts against ml-matrix's EigenvalueDecomposition
 * (JAMA's tred2 and tql2, eigenvectors included), and on matrices whose
 * eigenvalues are known.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import { Rng } from "../../lib/engine/rng";
import { symmetricEigenvalues } from "../../lib/util/eigenvalues";

const rows = (m: number[][]) => m.map((r) => Float64Array.from(r));
const reference = (m: number[][]) => Float64Array.from(new EigenvalueDecomposition(new Matrix(m), { assumeSymmetric: true }).realEigenvalues).sort();

function randomSymmetric(n: number, seed: number): number[][] {
  const r = new Rng(seed);
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) m[i][j] = m[j][i] = r.normal();
  return m;
}

/** xᵀx for x of `rank` random rows of width n: rank-deficient, as a Gram matrix of few vectors is. */
function gram(n: number, rank: number, seed: number): number[][] {
  const r = new Rng(seed);
  const x = Array.from({ length: rank }, () => Array.from({ length: n }, () => r.normal()));
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => x.reduce((s, v) => s + v[i] * v[j], 0)));
}

function close(got: Float64Array, want: Float64Array, what: string): void {
  assert.is(got.length, want.length, what);
  const scale = Math.max(1, ...Array.from(want, Math.abs));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-11 * scale, `${what}: eigenvalue ${i} is ${got[i]}, ml-matrix's ${want[i]}`);
}

test("random symmetric matrices of any size: ml-matrix's eigenvalues, ascending", () => {
  for (const n of [1, 2, 3, 4, 17, 100]) {
    const m = randomSymmetric(n, n);
    const got = symmetricEigenvalues(rows(m));
    close(got, reference(m), `n = ${n}`);
    for (let i = 1; i < n; i++) assert.ok(got[i - 1] <= got[i], "ascending");
  }
  assert.equal(Array.from(symmetricEigenvalues([])), []);
});

test("known spectra: a diagonal (zero rows, nothing to reflect), the identity's repeated 1s, a rank-3 Gram matrix's zeros, and a tridiagonal matrix's closed form", () => {
  close(symmetricEigenvalues(rows([[3, 0, 0], [0, -1, 0], [0, 0, 2]])), Float64Array.of(-1, 2, 3), "diagonal");
  const eye = Array.from({ length: 9 }, (_, i) => Array.from({ length: 9 }, (_, j) => +(i === j)));
  close(symmetricEigenvalues(rows(eye)), new Float64Array(9).fill(1), "identity");
  const g = gram(40, 3, 5);
  const got = symmetricEigenvalues(rows(g));
  close(got, reference(g), "rank 3");
  assert.ok(got.slice(0, 37).every((v) => Math.abs(v) < 1e-10 * got[39]), "37 zeros");
  // the path graph's Laplacian-like tridiagonal 2, −1: eigenvalues 2 − 2cos(kπ/(n + 1))
  const n = 12;
  const t = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 2 : Math.abs(i - j) === 1 ? -1 : 0)));
  close(symmetricEigenvalues(rows(t)), Float64Array.from({ length: n }, (_, k) => 2 - 2 * Math.cos(((k + 1) * Math.PI) / (n + 1))).sort(), "tridiagonal");
});

test("only the lower triangle is read; NaN in the matrix gives NaN eigenvalues and ends", () => {
  const m = randomSymmetric(6, 9);
  const lower = rows(m);
  for (let i = 0; i < 6; i++) for (let j = i + 1; j < 6; j++) lower[i][j] = 1e9; // not read
  close(symmetricEigenvalues(lower), reference(m), "upper triangle ignored");
  const bad = rows(m);
  bad[3][1] = NaN;
  assert.ok(symmetricEigenvalues(bad).some(Number.isNaN));
});

test("Gram matrices of a few garbage vectors, repeated (what Dawn's Null device reads back: float32 bits from denormal to near its largest, many zeros): ml-matrix's eigenvalues to 1e-11 of the largest, where a QL test against each entry's neighbours did not converge on most of them", () => {
  const rng = new Rng(1);
  const H = 128; // (at 64 the neighbour test failed on 2 of 40 such matrices, at 128 on 38)
  for (let t = 0; t < 4; t++) {
    const vectors = Array.from({ length: 1 + rng.int(5) }, () => {
      const v = new Float32Array(H);
      const bits = new Uint32Array(v.buffer);
      const zeros = rng.float();
      for (let h = 0; h < H; h++) {
        if (rng.float() < zeros) continue;
        let b = rng.uint32();
        if (((b >>> 23) & 0xff) === 0xff) b ^= 0x40000000; // no Inf or NaN
        bits[h] = b;
      }
      return v;
    });
    const g = Array.from({ length: H }, () => new Array<number>(H).fill(0));
    for (let k = 0; k < 200; k++) {
      const v = vectors[k % vectors.length];
      for (let i = 0; i < H; i++) for (let j = 0; j < H; j++) g[i][j] += v[i] * v[j];
    }
    if (!g.every((r) => r.every(Number.isFinite)) || g.every((r) => r.every((x) => x === 0))) continue;
    close(symmetricEigenvalues(rows(g)), reference(g), `matrix ${t}`);
  }
});

test.run();
