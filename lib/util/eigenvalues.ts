/**
 * The eigenvalues of a real symmetric matrix, without its eigenvectors:
 * Householder reduction to tridiagonal form (EISPACK's tred1, as Press et
 * al. give it in Numerical Recipes §11.2), then the implicit QL iteration
 * on the tridiagonal matrix (JAMA's tql2 without its vectors). The
 * effective rank of a base model's [CLS] vectors needs the 768 eigenvalues
 * of their Gram matrix and nothing else; ml-matrix's
 * EigenvalueDecomposition (JAMA's tred2 and tql2) also builds the
 * eigenvectors, which is most of its work.
 *
 * The reduction takes about (2/3)·n³ multiply-adds. Each step needs A·u over
 * the leading block, the symmetric matrix stored as its lower triangle: it
 * walks that triangle by rows, adding each entry to two sums (a column walk
 * would stride across every row).
 */

/**
 * Eigenvalues of the symmetric matrix whose lower triangle `a` holds (row i
 * holds a[i][0..i], at least; the rest is ignored), ascending. `a` is
 * overwritten. A matrix with NaN in it gives NaN eigenvalues. Throws if
 * the QL iteration has not converged after 30·n sweeps (LAPACK's bound),
 * which no finite matrix tried here reached.
 */
export function symmetricEigenvalues(a: Float64Array[]): Float64Array {
  const n = a.length;
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 0) return d;
  const p = new Float64Array(n);
  // Householder: row i's part left of the diagonal is reflected onto its last entry, from the last row up
  for (let i = n - 1; i > 0; i--) {
    const u = a[i];
    const l = i - 1;
    let scale = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(u[k]);
    if (l === 0 || scale === 0) {
      e[i] = u[l];
      continue;
    }
    let h = 0;
    for (let k = 0; k < i; k++) {
      u[k] /= scale;
      h += u[k] * u[k];
    }
    const f = u[l];
    const g = f >= 0 ? -Math.sqrt(h) : Math.sqrt(h);
    e[i] = scale * g;
    h -= f * g;
    u[l] = f - g;
    // p = A·u / h over the leading i × i block
    p.fill(0, 0, i);
    for (let j = 0; j < i; j++) {
      const row = a[j];
      const uj = u[j];
      let s = 0;
      for (let k = 0; k < j; k++) {
        s += row[k] * u[k];
        p[k] += row[k] * uj;
      }
      p[j] += s + row[j] * uj;
    }
    let fu = 0;
    for (let j = 0; j < i; j++) {
      p[j] /= h;
      fu += p[j] * u[j];
    }
    const hh = fu / (h + h);
    for (let j = 0; j < i; j++) p[j] -= hh * u[j];
    // A −= u·pᵀ + p·uᵀ, lower triangle
    for (let j = 0; j < i; j++) {
      const row = a[j];
      const [uj, pj] = [u[j], p[j]];
      for (let k = 0; k <= j; k++) row[k] -= uj * p[k] + pj * u[k];
    }
  }
  for (let i = 0; i < n; i++) d[i] = a[i][i];
  // implicit QL with Wilkinson's shift on the diagonal d and the subdiagonal e (JAMA's tql2, as
  // ml-matrix has it, without the eigenvectors). An off-diagonal entry counts as zero below ε times
  // the largest |d| + |e| met so far, not ε times its neighbours: a Gram matrix of vectors that are
  // mostly zeros, with a few values near float32's largest (what Dawn's Null device reads back), has
  // blocks of tiny entries beside huge ones, and the test against neighbours (Numerical Recipes')
  // did not converge on 38 of 40 such 128 × 128 matrices (test/util/eigenvalues.test.ts).
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let shift = 0;
  let norm = 0;
  let sweeps = 0;
  for (let l = 0; l < n; l++) {
    norm = Math.max(norm, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && !(Math.abs(e[m]) <= Number.EPSILON * norm)) m++;
    if (m > l) {
      do {
        if (++sweeps > 30 * n) throw new Error(`The eigenvalues of this ${n} × ${n} matrix did not converge in ${30 * n} QL sweeps; check it for values that are not finite.`);
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        shift += h;
        p = d[m];
        let [c, c2, c3, s, s2] = [1, 1, 1, 0, 0];
        const el1 = e[l + 1];
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > Number.EPSILON * norm);
    }
    d[l] += shift;
    e[l] = 0;
  }
  return d.sort();
}
