/**
 * The eigenvalues of a real symmetric matrix, without its eigenvectors:
 * Householder reduction to tridiagonal form, then the implicit QL
 * iteration on the tridiagonal matrix (EISPACK's tred1 and tql1; Press et
 * al., Numerical Recipes, §11.2–11.3). The effective rank of a base model's
 * [CLS] vectors needs the 768 eigenvalues of their Gram matrix and nothing
 * else; ml-matrix's EigenvalueDecomposition (JAMA's tred2 and tql2) also
 * builds the eigenvectors, which is most of its work.
 *
 * The reduction takes about (2/3)·n³ multiply-adds. Each step needs A·u over
 * the leading block, the symmetric matrix stored as its lower triangle: it
 * walks that triangle by rows, adding each entry to two sums (a column walk
 * would stride across every row).
 */

/**
 * Eigenvalues of the symmetric matrix whose lower triangle `a` holds (row i
 * holds a[i][0..i], at least; the rest is ignored), ascending. `a` is
 * overwritten. Throws if the QL iteration does not converge (30 sweeps per
 * eigenvalue), which finite input does not reach in practice.
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
  // implicit QL with Wilkinson's shift on the diagonal d and the subdiagonal e
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    let iterations = 0;
    for (;;) {
      let m = l;
      for (; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * dd) break;
      }
      if (m === l) break;
      if (iterations++ === 30) throw new Error(`The eigenvalues of this ${n} × ${n} matrix did not converge in 30 QL sweeps; check it for values that are not finite.`);
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let [s, c, q] = [1, 1, 0];
      let i = m - 1;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          // a split: the part above is already reduced
          d[i + 1] -= q;
          e[m] = 0;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - q;
        r = (d[i] - g) * s + 2 * c * b;
        q = s * r;
        d[i + 1] = g + q;
        g = c * r - b;
      }
      if (r === 0 && i >= l) continue;
      d[l] -= q;
      e[l] = g;
      e[m] = 0;
    }
  }
  return d.sort();
}
