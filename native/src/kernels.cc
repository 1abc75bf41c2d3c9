// See kernels.h. Loops are split across threads with OpenMP once they are
// big enough to pay for it (kGrain elements); below that one thread runs.
#include "kernels.h"

#include <immintrin.h>
#include <omp.h>

#include "gemm.h"
#ifdef RM_OPENBLAS
#include <cblas.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

// glibc 2.29 gave log() a new symbol version (the same function without SVID's
// error handling); bound to the old one, the addon needs glibc 2.27 (expf,
// logf, powf), so the bundle's CPU backend loads on RHEL 8 (glibc 2.28) too.
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver log,log@GLIBC_2.2.5");
#endif

namespace rm {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per parallel region, at least

inline bool par(int64_t n) { return n >= kGrain && omp_get_max_threads() > 1; }

inline float binOp(int op, float a, float b) {
  switch (op) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    case DIV: return a / b;
    case MAXIMUM: return (std::isnan(a) || std::isnan(b)) ? std::numeric_limits<float>::quiet_NaN() : (a > b ? a : b);
    case MINIMUM: return (std::isnan(a) || std::isnan(b)) ? std::numeric_limits<float>::quiet_NaN() : (a < b ? a : b);
    case SQUARED_DIFFERENCE: { float d = a - b; return d * d; }
    case POW: return std::pow(a, b);
  }
  return 0;
}

// The innermost loop of a binary op, one template per op so it vectorises.
template <int OP>
inline void binRow(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; i++) o[i] = binOp(OP, a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; i++) o[i] = binOp(OP, a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = a[0];
    for (int64_t i = 0; i < n; i++) o[i] = binOp(OP, av, b[i]);
  } else {
    for (int64_t i = 0; i < n; i++) o[i] = binOp(OP, a[i * sa], b[i * sb]);
  }
}

template <int OP>
void binaryT(const float* a, const float* b, float* out, int ndim, const int64_t* dims, const int64_t* sa,
             const int64_t* sb) {
  const int64_t inner = dims[ndim - 1];
  int64_t rows = 1;
  for (int d = 0; d < ndim - 1; d++) rows *= dims[d];
  const int64_t total = rows * inner;
#pragma omp parallel if (par(total))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (rows == 1) {
      // one long row: split it
      const int64_t lo = inner * t / nt, hi = inner * (t + 1) / nt;
      binRow<OP>(a + lo * sa[0], sa[0], b + lo * sb[0], sb[0], out + lo, hi - lo);
    } else {
      const int64_t lo = rows * t / nt, hi = rows * (t + 1) / nt;
      int64_t idx[8] = {0};
      int64_t rem = lo, offA = 0, offB = 0;
      for (int d = ndim - 2; d >= 0; d--) {
        idx[d] = rem % dims[d];
        rem /= dims[d];
        offA += idx[d] * sa[d];
        offB += idx[d] * sb[d];
      }
      for (int64_t r = lo; r < hi; r++) {
        binRow<OP>(a + offA, sa[ndim - 1], b + offB, sb[ndim - 1], out + r * inner, inner);
        for (int d = ndim - 2; d >= 0; d--) {  // odometer
          idx[d]++;
          offA += sa[d];
          offB += sb[d];
          if (idx[d] < dims[d]) break;
          offA -= sa[d] * dims[d];
          offB -= sb[d] * dims[d];
          idx[d] = 0;
        }
      }
    }
  }
}

// exp, vectorised by hand (GCC does not vectorise std::exp, nor this
// function's bit tricks, on its own): Cephes' expf. Range reduction
// x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial in r, then a scale
// by 2^(n-1) * 2 (so n = 128 still fits the exponent). Within 2 ulp of
// std::exp where the result is a normal float; below -87.3 (results under
// 1.2e-38) it gives 0, above 88.72 infinity; NaN stays NaN.
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
// The widest vector the build targets, for the element-wise loops that are hot enough to care: 16 lanes with
// AVX-512, else 8.
#ifdef __AVX512F__
typedef float vfRow __attribute__((vector_size(64)));
typedef int32_t viRow __attribute__((vector_size(64)));
#else
typedef vf8 vfRow;
typedef vi8 viRow;
#endif
constexpr int kLanes = sizeof(vfRow) / sizeof(float);

// Where thread t of nt starts in n elements, on a multiple of kLanes (n itself for t = nt).
inline int64_t laneSplit(int64_t n, int t, int nt) { return t == nt ? n : n * t / nt / kLanes * kLanes; }
constexpr float kExpHi = 88.7228391f, kExpLo = -87.3f;

// The constants expCore clamps and selects with, as scalars or as vectors.
template <typename F>
struct ExpBounds {
  F lo, hi, inf, zero;
};

template <typename F>
inline ExpBounds<F> expBounds() {
  const F zero = F{} * 0.0f;  // a zero scalar or vector
  return {zero + kExpLo, zero + kExpHi, zero + std::numeric_limits<float>::infinity(), zero};
}

template <typename F, typename I>
inline F expCore(F x, const ExpBounds<F>& b) {
  const F lo = b.lo, hi = b.hi, inf = b.inf, zero = b.zero;
  F xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const F magic = xc - xc + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const F n = (xc * 1.44269504088896341f + magic) - magic;
  const F r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  F p = r - r + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F y = p * r * r + r + 1.0f;
  I e;
  if constexpr (sizeof(F) == sizeof(float)) {
    e = static_cast<I>(n);
  } else {
    e = __builtin_convertvector(n, I);
  }
  const I bits = (e + 126) << 23;
  F scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const F v = y * scale * 2.0f;
  F out = x > hi ? inf : v;
  return x < lo ? zero : out;
}

inline float vexp(float x) {
  return expCore<float, int32_t>(x, expBounds<float>());
}

// out[j] = exp(x[j] - shift), kLanes at a time
inline void expArray(const float* x, float shift, float* out, int64_t n) {
  const ExpBounds<vfRow> b = expBounds<vfRow>();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    vfRow v;
    std::memcpy(&v, x + j, sizeof v);
    v = expCore<vfRow, viRow>(v - shift, b);
    std::memcpy(out + j, &v, sizeof v);
  }
  for (; j < n; j++) out[j] = vexp(x[j] - shift);
}

// erf by Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7; the
// formula tfjs-backend-cpu uses), kLanes at a time: the exp goes through expCore.
template <typename F, typename I>
inline F erfCore(F x, const ExpBounds<F>& b) {
  const F zero = b.zero;
  const F ax = x < zero ? -x : x;
  const F t = 1.0f / (ax * 0.3275911f + 1.0f);
  F p = t * 1.061405429f - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const F y = 1.0f - p * t * expCore<F, I>(-ax * ax, b);
  return x < zero ? -y : y;
}

inline void erfArray(const float* x, float* out, int64_t n) {
  const ExpBounds<vfRow> b = expBounds<vfRow>();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    vfRow v;
    std::memcpy(&v, x + j, sizeof v);
    v = erfCore<vfRow, viRow>(v, b);
    std::memcpy(out + j, &v, sizeof v);
  }
  for (; j < n; j++) {
    out[j] = erfCore<float, int32_t>(x[j], expBounds<float>());
  }
}

// GELU and its gradient over [lo, hi), kLanes at a time
template <bool GRAD>
inline void geluRange(const float* x, const float* dy, float* out, int64_t lo, int64_t hi) {
  const ExpBounds<vfRow> b = expBounds<vfRow>();
  constexpr float kRsqrt2 = 0.70710678118654752f, kRsqrt2Pi = 0.39894228040143268f;
  int64_t j = lo;
  for (; j + kLanes <= hi; j += kLanes) {
    vfRow v, r;
    std::memcpy(&v, x + j, sizeof v);
    const vfRow cdf = (erfCore<vfRow, viRow>(v * kRsqrt2, b) + 1.0f) * 0.5f;
    if (GRAD) {
      vfRow d;
      std::memcpy(&d, dy + j, sizeof d);
      r = d * (cdf + v * expCore<vfRow, viRow>(v * v * -0.5f, b) * kRsqrt2Pi);
    } else {
      r = v * cdf;
    }
    std::memcpy(out + j, &r, sizeof r);
  }
  for (; j < hi; j++) {
    const float v = x[j];
    const float cdf = 0.5f * (1.0f + erfCore<float, int32_t>(v * kRsqrt2, expBounds<float>()));
    out[j] = GRAD ? dy[j] * (cdf + v * vexp(-0.5f * v * v) * kRsqrt2Pi) : v * cdf;
  }
}

inline float unOp(int op, float x, float alpha) {
  switch (op) {
    case EXP: return vexp(x);
    case LOG: return std::log(x);
    case SQRT: return std::sqrt(x);
    case RSQRT: return 1.0f / std::sqrt(x);
    case NEG: return -x;
    case SQUARE: return x * x;
    case ERF: return erfCore<float, int32_t>(x, expBounds<float>());
    case TANH: return std::tanh(x);
    case ABS: return std::fabs(x);
    case RECIPROCAL: return 1.0f / x;
    case RELU: return x < 0 ? 0 : x;
    case SIGMOID: return 1.0f / (1.0f + std::exp(-x));
    case STEP: return std::isnan(x) ? x : (x > 0 ? 1.0f : alpha);
    case LOG1P: return std::log1p(x);
    case SIGN: return x > 0 ? 1.0f : (x < 0 ? -1.0f : 0.0f);
    case SOFTPLUS: return x > 20 ? x : (x < -20 ? std::exp(x) : std::log1p(std::exp(x)));
    case FLOOR: return std::floor(x);
    case CEIL: return std::ceil(x);
    case ROUND: return std::nearbyint(x);  // halves to even, as tfjs
    case SIN: return std::sin(x);
    case COS: return std::cos(x);
    case ELU: return x >= 0 ? x : std::expm1(x);
    case SELU: {
      const float scaleAlpha = 1.7580993408473768599402175208123f, scale = 1.0507009873554804934193349852946f;
      return x >= 0 ? scale * x : scaleAlpha * std::expm1(x);
    }
    case RELU6: return x < 0 ? 0 : (x > 6 ? 6 : x);
    case EXPM1: return std::expm1(x);
  }
  return 0;
}

template <int OP>
void unaryT(const float* x, float* out, int64_t n, float alpha) {
  if (OP == EXP || OP == ERF) {
#pragma omp parallel if (par(n))
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t lo = laneSplit(n, t, nt), hi = laneSplit(n, t + 1, nt);
      if (OP == EXP) {
        expArray(x + lo, 0.0f, out + lo, hi - lo);
      } else {
        erfArray(x + lo, out + lo, hi - lo);
      }
    }
    return;
  }
#pragma omp parallel for schedule(static) if (par(n))
  for (int64_t i = 0; i < n; i++) out[i] = unOp(OP, x[i], alpha);
}

// Sum of n floats: 16 float lanes over blocks of 1024 (vectorised), each
// block's total added in double, so the error stays near a double sum's.
inline double sumRow(const float* x, int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < n; b += 1024) {
    const int64_t e = std::min(n, b + 1024);
    float lane[16] = {0};
    int64_t j = b;
    for (; j + 16 <= e; j += 16) {
      for (int k = 0; k < 16; k++) lane[k] += x[j + k];
    }
    double block = 0;
    for (int k = 0; k < 16; k++) block += lane[k];
    for (; j < e; j++) block += x[j];
    total += block;
  }
  return total;
}

// Largest of n floats (n >= 1), with 16 lanes so it vectorises; NaNs are
// skipped, as the softmax kernels have always treated them.
inline float maxRow(const float* x, int64_t n) {
  float lane[16];
  for (int k = 0; k < 16; k++) lane[k] = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int k = 0; k < 16; k++) lane[k] = x[j + k] > lane[k] ? x[j + k] : lane[k];
  }
  float m = -std::numeric_limits<float>::infinity();
  for (int k = 0; k < 16; k++) m = lane[k] > m ? lane[k] : m;
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

inline double reduceInit(int op) {
  switch (op) {
    case R_MAX: return -std::numeric_limits<double>::infinity();
    case R_MIN: return std::numeric_limits<double>::infinity();
    case R_PROD: return 1;
  }
  return 0;
}

inline double reduceStep(int op, double acc, float x) {
  switch (op) {
    case R_MAX: return (std::isnan(x) || x > acc) ? x : acc;
    case R_MIN: return (std::isnan(x) || x < acc) ? x : acc;
    case R_PROD: return acc * x;
  }
  return acc + x;
}

}  // namespace

namespace {
// o = softmax(x * scale + m) for one row of n; buf holds 1024 floats (rows
// longer than that are computed in place in o). x may be o.
inline void softmaxRow(const float* x, const float* m, float* o, int64_t n, float scale, float* buf) {
  float* z = n <= 1024 ? buf : o;
  for (int64_t j = 0; j < n; j++) z[j] = x[j] * scale + m[j];
  const float mx = maxRow(z, n);
  expArray(z, mx, o, n);
  const float inv = static_cast<float>(1.0 / sumRow(o, n));
  for (int64_t j = 0; j < n; j++) o[j] *= inv;
}
}  // namespace

int threads() { return omp_get_max_threads(); }
void setThreads(int n) {
  omp_set_num_threads(n);
#ifdef RM_OPENBLAS
  openblas_set_num_threads(1);  // matmul splits the work itself
#endif
}

namespace {
#ifdef RM_OPENBLAS
bool useOpenblas = true;
#else
bool useOpenblas = false;
#endif

// One row-major product C[M, N] = op(A) op(B) on the calling thread.
inline void gemm1(const float* a, const float* b, float* c, int64_t M, int64_t N, int64_t K, bool transA,
                  bool transB, int64_t lda, int64_t ldb, int64_t ldc) {
#ifdef RM_OPENBLAS
  if (useOpenblas) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                a, lda, b, ldb, 0.0f, c, ldc);
    return;
  }
#endif
  sgemm(transA, transB, M, N, K, a, lda, b, ldb, c, ldc);
}
}  // namespace

std::string gemm() {
#ifdef RM_OPENBLAS
  if (useOpenblas) {
    std::string v = OPENBLAS_VERSION;  // " OpenBLAS 0.3.21 "
    v.erase(0, v.find_first_of("0123456789"));
    v.erase(v.find_last_not_of(' ') + 1);
    return "openblas " + v;
  }
#endif
  return std::string("bundled ") + sgemmKernel();
}

bool setGemm(const std::string& name) {
  if (name == "openblas") {
#ifdef RM_OPENBLAS
    useOpenblas = true;
    return true;
#else
    return false;
#endif
  }
  if (name == "bundled") {
    setSgemmKernel("auto");
    useOpenblas = false;
    return true;
  }
  if (name.rfind("bundled/", 0) == 0 && setSgemmKernel(name.c_str() + 8)) {
    useOpenblas = false;
    return true;
  }
  return false;
}

// Whichever library multiplies, it runs single-threaded (see setThreads);
// the threads here are OpenMP's, over tiles of C. OpenBLAS's own threads
// wake up and sleep again for every call,
// which cost 2 to 5 ms per small product here (128 attention products of
// 256x256x64 took 420 to 750 ms); splitting the work ourselves keeps the
// threads that the element-wise kernels already use.
void matmul(const float* a, const float* b, float* out, int64_t batch, int64_t batchA, int64_t batchB,
            int64_t M, int64_t N, int64_t K, bool transA, bool transB, const float* bias, int64_t biasLen,
            int act) {
  const int64_t strideA = M * K, strideB = K * N, strideC = M * N;
  const int64_t lda = transA ? M : K, ldb = transB ? K : N;
  const int nt = omp_get_max_threads();
  if (K == 0) {
    std::fill(out, out + batch * strideC, 0.0f);
  } else if (batch >= nt && batch > 1) {
    // many products: one per thread at a time
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < batch; i++) {
      gemm1(a + (i % batchA) * strideA, b + (i % batchB) * strideB, out + i * strideC, M, N, K, transA, transB, lda,
            ldb, N);
    }
  } else {
    for (int64_t i = 0; i < batch; i++) {
      const float* ai = a + (i % batchA) * strideA;
      const float* bi = b + (i % batchB) * strideB;
      float* ci = out + i * strideC;
      if (nt == 1 || M * N * K < (int64_t(1) << 18)) {
        gemm1(ai, bi, ci, M, N, K, transA, transB, lda, ldb, N);
      } else if (M >= N) {
        // split the rows of C: rows m0..m1 of op(A)
#pragma omp parallel
        {
          const int t = omp_get_thread_num(), n = omp_get_num_threads();
          const int64_t m0 = M * t / n, m1 = M * (t + 1) / n;
          if (m1 > m0) gemm1(ai + (transA ? m0 : m0 * K), bi, ci + m0 * N, m1 - m0, N, K, transA, transB, lda, ldb, N);
        }
      } else {
        // split the columns of C: columns n0..n1 of op(B)
#pragma omp parallel
        {
          const int t = omp_get_thread_num(), n = omp_get_num_threads();
          const int64_t n0 = N * t / n, n1 = N * (t + 1) / n;
          if (n1 > n0) gemm1(ai, bi + (transB ? n0 * K : n0), ci + n0, M, n1 - n0, K, transA, transB, lda, ldb, N);
        }
      }
    }
  }
  if (bias != nullptr || act != 0) {
    const int64_t rows = batch * M;
#pragma omp parallel for schedule(static) if (par(rows * N))
    for (int64_t r = 0; r < rows; r++) {
      float* o = out + r * N;
      if (bias != nullptr) {
        if (biasLen == 1) {
          for (int64_t j = 0; j < N; j++) o[j] += bias[0];
        } else {
          for (int64_t j = 0; j < N; j++) o[j] += bias[j];
        }
      }
      if (act == 1) {
        for (int64_t j = 0; j < N; j++) o[j] = o[j] < 0 ? 0 : o[j];
      }
    }
  }
}

namespace {
// One row of attention scores, in place: s[j] = exp(s[j] · scale + m[j] − max); returns Σ s[j]. Two passes, 16
// lanes at a time with AVX-512, else 8 (softmaxRow's five, with the division left to the caller). NaNs are skipped
// by the max, as there.
inline float expScoresRow(float* s, const float* m, int64_t n, float scale) {
  const ExpBounds<vfRow> bounds = expBounds<vfRow>();
  const float lowest = -std::numeric_limits<float>::infinity();
  vfRow vmax = bounds.zero + lowest;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    vfRow x, mj;
    std::memcpy(&x, s + j, sizeof x);
    std::memcpy(&mj, m + j, sizeof mj);
    x = x * scale + mj;
    std::memcpy(s + j, &x, sizeof x);
    vmax = x > vmax ? x : vmax;
  }
  float mx = lowest;
  for (int k = 0; k < kLanes; k++) mx = vmax[k] > mx ? vmax[k] : mx;
  for (; j < n; j++) {
    s[j] = s[j] * scale + m[j];
    mx = s[j] > mx ? s[j] : mx;
  }
  vfRow vsum = bounds.zero;
  for (j = 0; j + kLanes <= n; j += kLanes) {
    vfRow x;
    std::memcpy(&x, s + j, sizeof x);
    x = expCore<vfRow, viRow>(x - mx, bounds);
    std::memcpy(s + j, &x, sizeof x);
    vsum += x;
  }
  double sum = 0;
  for (int k = 0; k < kLanes; k++) sum += vsum[k];
  for (; j < n; j++) sum += (s[j] = vexp(s[j] - mx));
  return static_cast<float>(sum);
}

#if defined(__AVX2__) && defined(__FMA__)
// The register-tiled attention for inference, one (batch, head) and a run of
// query rows per task. K and V of the head are packed once per task into
// panels 2W floats wide (W = the vector's lanes): Kp [Lk/2W][dh][2W] and Vp
// [dh/2W][Lk][2W], zero-padded past Lk. Each block of MR query rows keeps its
// scores S [MR][Lk] in L1: S = Q Kᵀ in MR x 2W tiles of FMAs (Q broadcast from
// its own [dh][MR] copy), the softmax on S's rows, then the context (exp S) V
// in MR x 2W tiles, divided once per output. The GEMM call per block that this
// replaces packed K again for every block, and V's dh = 64 columns were a
// narrow N. AVX-512: 12 x 32 tiles in 24 of 32 registers; AVX2: 6 x 16 in 12 of 16.
struct Avx2 {
  using V = __m256;
  static constexpr int W = 8, MR = 6;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void storeScaled(float* p, V a, float f) { _mm256_storeu_ps(p, _mm256_mul_ps(a, _mm256_set1_ps(f))); }
};
#ifdef __AVX512F__
struct Avx512 {
  using V = __m512;
  static constexpr int W = 16, MR = 12;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void storeScaled(float* p, V a, float f) { _mm512_storeu_ps(p, _mm512_mul_ps(a, _mm512_set1_ps(f))); }
};
using Tiles = Avx512;
#else
using Tiles = Avx2;
#endif
constexpr int kMR = Tiles::MR, kPanel = 2 * Tiles::W;

// The accumulators are named variables, not an array: GCC keeps an array of
// vectors on the stack and stores it back every iteration.
#define RM_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

// The one tile both products use: o[r][0..2W) = f[r] · Σ_k x[r · xr + k · xk] · panel[k][0..2W) for r < R and
// k < n, with f = inv, or 1 when inv is null. Scores: x = Q's [dh][MR] copy, panel = Kp's (k = d); context: x = the
// scores' rows, panel = Vp's (k = j).
template <class A, int R>
inline void panelTile(const float* x, int64_t xr, int64_t xk, const float* panel, int64_t n, const float* inv,
                      float* o, int64_t ldo) {
#define RM_ZERO(r) typename A::V a##r = A::zero(), b##r = a##r;
  RM_ROWS(RM_ZERO)
#undef RM_ZERO
  for (int64_t k = 0; k < n; k++) {
    const typename A::V lo = A::load(panel + k * kPanel), hi = A::load(panel + k * kPanel + A::W);
#define RM_STEP(r)                                  \
  if constexpr (R > r) {                            \
    const typename A::V xb = A::bcast(x + r * xr + k * xk); \
    a##r = A::fma(xb, lo, a##r);                    \
    b##r = A::fma(xb, hi, b##r);                    \
  }
    RM_ROWS(RM_STEP)
#undef RM_STEP
  }
#define RM_STORE(r)                                  \
  if constexpr (R > r) {                             \
    const float f = inv ? inv[r] : 1.0f;             \
    A::storeScaled(o + r * ldo, a##r, f);            \
    A::storeScaled(o + r * ldo + A::W, b##r, f);     \
  }
  RM_ROWS(RM_STORE)
#undef RM_STORE
}
#undef RM_ROWS

// One block of R query rows of one head: q rows at stride ldq, mask rows at ldm (0: one row for all), out rows at ldo.
template <int R>
void attendRows(const float* q, int64_t ldq, const float* Kp, const float* Vp, const float* mask, int64_t ldm,
                int64_t Lk, int64_t dh, float scale, float* S, float* qp, float* o, int64_t ldo) {
  const int64_t panels = (Lk + kPanel - 1) / kPanel, lds = panels * kPanel;
  for (int64_t d = 0; d < dh; d++) {
    for (int r = 0; r < R; r++) qp[d * kMR + r] = q[r * ldq + d];
  }
  for (int64_t p = 0; p < panels; p++) panelTile<Tiles, R>(qp, 1, kMR, Kp + p * dh * kPanel, dh, nullptr, S + p * kPanel, lds);  // Q Kᵀ
  float inv[kMR];
  for (int r = 0; r < R; r++) {
    inv[r] = 1.0f / expScoresRow(S + r * lds, mask + r * ldm, Lk, scale);  // exp(S · scale + mask − max), unnormalised
  }
  for (int64_t c = 0; c < dh; c += kPanel) panelTile<Tiles, R>(S, lds, 1, Vp + c * Lk, Lk, inv, o + c, ldo);  // (exp S) V / Σ
}

using AttendRows = void (*)(const float*, int64_t, const float*, const float*, const float*, int64_t, int64_t,
                            int64_t, float, float*, float*, float*, int64_t);
// kAttendRows[R] runs a block of R rows (R = 1..MR).
template <size_t... R>
constexpr std::array<AttendRows, kMR + 1> attendTable(std::index_sequence<R...>) {
  return {nullptr, attendRows<static_cast<int>(R) + 1>...};
}
constexpr auto kAttendRows = attendTable(std::make_index_sequence<kMR>());

void attentionTiled(const float* q, const float* k, const float* v, const float* mask, float* out, int64_t B,
                    int64_t heads, int64_t Lq, int64_t Lk, int64_t dh, int64_t maskRows, float scale, int64_t ldq,
                    int64_t ldkv) {
  const int64_t H = heads * dh, panels = (Lk + kPanel - 1) / kPanel;
  // Whole heads per task when there are enough to share out; else runs of query rows (K and V packed again per run).
  const int nt = omp_get_max_threads();
  const int64_t pairs = B * heads;
  int64_t runs = pairs >= 4 * nt ? 1 : (4 * nt + pairs - 1) / pairs;
  int64_t runRows = (Lq + runs - 1) / runs;
  runRows = (runRows + kMR - 1) / kMR * kMR;
  runs = (Lq + runRows - 1) / runRows;
  const int64_t tasks = pairs * runs;
#pragma omp parallel if (tasks > 1 && par(B * heads * Lq * Lk))
  {
    thread_local std::vector<float> buffer;  // Kp, Vp, S and the Q block, kept between calls
    const size_t kpSize = static_cast<size_t>(panels) * dh * kPanel, vpSize = static_cast<size_t>(dh) * Lk;
    buffer.resize(kpSize + vpSize + static_cast<size_t>(kMR) * panels * kPanel + static_cast<size_t>(kMR) * dh);
    float* Kp = buffer.data();
    float* Vp = Kp + kpSize;
    float* S = Vp + vpSize;
    float* qp = S + static_cast<size_t>(kMR) * panels * kPanel;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) {
      const int64_t b = t / (heads * runs), h = (t / runs) % heads, r0 = (t % runs) * runRows;
      const int64_t r1 = std::min(Lq, r0 + runRows);
      const float* kb = k + b * Lk * ldkv + h * dh;  // [Lk, dh], leading dimension ldkv
      const float* vb = v + b * Lk * ldkv + h * dh;  // [Lk, dh]
      for (int64_t p = 0; p < panels; p++) {          // Kp[p][d][i] = K[2W p + i][d], 0 past Lk
        float* kp = Kp + p * dh * kPanel;
        const int64_t n = std::min<int64_t>(kPanel, Lk - p * kPanel);
        for (int64_t i = 0; i < kPanel; i++) {
          if (i >= n) {
            for (int64_t d = 0; d < dh; d++) kp[d * kPanel + i] = 0.0f;
            continue;
          }
          const float* row = kb + (p * kPanel + i) * ldkv;
          for (int64_t d = 0; d < dh; d++) kp[d * kPanel + i] = row[d];
        }
      }
      for (int64_t j = 0; j < Lk; j++) {  // Vp[c / 2W][j][c % 2W] = V[j][c]
        const float* row = vb + j * ldkv;
        for (int64_t c = 0; c < dh; c += kPanel) std::memcpy(Vp + c * Lk + j * kPanel, row + c, kPanel * sizeof(float));
      }
      for (int64_t i = r0; i < r1; i += kMR) {
        const int rows = static_cast<int>(std::min<int64_t>(kMR, r1 - i));
        const float* mi = mask + (b * maskRows + (maskRows == 1 ? 0 : i)) * Lk;
        kAttendRows[rows](q + (b * Lq + i) * ldq + h * dh, ldq, Kp, Vp, mi, maskRows == 1 ? 0 : Lk, Lk, dh, scale, S,
                          qp, out + (b * Lq + i) * H + h * dh, H);
      }
    }
  }
}
#endif
}  // namespace

// Attention for inference, a block of query rows at a time: the block's
// scores, softmax and context stay in this thread's cache, and the heads are
// read from and written to [B, L, H] in place (no head transposes). Heads
// whose width fits the register tiles (dh = 64 with either) take
// attentionTiled; others, and queries of fewer than 16 rows, two GEMM calls
// per block of 64 rows.
void attention(const float* q, const float* k, const float* v, const float* mask, float* out, int64_t B,
               int64_t heads, int64_t Lq, int64_t Lk, int64_t dh, int64_t maskRows, float scale, int64_t ldq,
               int64_t ldkv) {
#if defined(__AVX2__) && defined(__FMA__)
  if (dh % kPanel == 0 && Lq >= 16) {
    attentionTiled(q, k, v, mask, out, B, heads, Lq, Lk, dh, maskRows, scale, ldq, ldkv);
    return;
  }
#endif
  const int64_t H = heads * dh;
  constexpr int64_t kRows = 64;
  const int64_t blocks = (Lq + kRows - 1) / kRows, tasks = B * heads * blocks;
#pragma omp parallel if (tasks > 1 && par(B * heads * Lq * Lk))
  {
    thread_local std::vector<float> scores;  // kRows x Lk, kept between calls
    scores.resize(static_cast<size_t>(kRows) * Lk);
    float* S = scores.data();
    float inv[kRows];
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) {
      const int64_t b = t / (heads * blocks), h = (t / blocks) % heads, r0 = (t % blocks) * kRows;
      const int64_t rows = std::min(kRows, Lq - r0);
      const float* qb = q + (b * Lq + r0) * ldq + h * dh;  // [rows, dh], leading dimension ldq
      const float* kb = k + b * Lk * ldkv + h * dh;          // [Lk, dh], leading dimension ldkv
      const float* vb = v + b * Lk * ldkv + h * dh;          // [Lk, dh]
      gemm1(qb, kb, S, rows, Lk, dh, false, true, ldq, ldkv, Lk);  // S = Q Kᵀ  [rows, Lk]
      for (int64_t i = 0; i < rows; i++) {
        const float* mi = mask + (b * maskRows + (maskRows == 1 ? 0 : r0 + i)) * Lk;
        inv[i] = 1.0f / expScoresRow(S + i * Lk, mi, Lk, scale);  // S = exp(S · scale + mask − max), unnormalised
      }
      float* ob = out + (b * Lq + r0) * H + h * dh;
      gemm1(S, vb, ob, rows, dh, Lk, false, false, Lk, ldkv, H);  // (exp S) V  [rows, dh]
      for (int64_t i = 0; i < rows; i++) {
        for (int64_t d = 0; d < dh; d++) ob[i * H + d] *= inv[i];  // softmax's division, on dh values instead of Lk
      }
    }
  }
}

void binary(int op, const float* a, const float* b, float* out, int ndim, const int64_t* dims, const int64_t* sa,
            const int64_t* sb) {
  switch (op) {
    case ADD: return binaryT<ADD>(a, b, out, ndim, dims, sa, sb);
    case SUB: return binaryT<SUB>(a, b, out, ndim, dims, sa, sb);
    case MUL: return binaryT<MUL>(a, b, out, ndim, dims, sa, sb);
    case DIV: return binaryT<DIV>(a, b, out, ndim, dims, sa, sb);
    case MAXIMUM: return binaryT<MAXIMUM>(a, b, out, ndim, dims, sa, sb);
    case MINIMUM: return binaryT<MINIMUM>(a, b, out, ndim, dims, sa, sb);
    case SQUARED_DIFFERENCE: return binaryT<SQUARED_DIFFERENCE>(a, b, out, ndim, dims, sa, sb);
    case POW: return binaryT<POW>(a, b, out, ndim, dims, sa, sb);
  }
}

void unary(int op, const float* x, float* out, int64_t n, float alpha) {
  switch (op) {
#define U(OP) \
  case OP: return unaryT<OP>(x, out, n, alpha);
    U(EXP) U(LOG) U(SQRT) U(RSQRT) U(NEG) U(SQUARE) U(ERF) U(TANH) U(ABS) U(RECIPROCAL) U(RELU) U(SIGMOID) U(STEP)
    U(LOG1P) U(SIGN) U(SOFTPLUS) U(FLOOR) U(CEIL) U(ROUND) U(SIN) U(COS) U(ELU) U(SELU) U(RELU6) U(EXPM1)
#undef U
  }
}

void gelu(const float* x, float* out, int64_t n) {
#pragma omp parallel if (par(n))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    geluRange<false>(x, nullptr, out, laneSplit(n, t, nt), laneSplit(n, t + 1, nt));
  }
}

void geluGrad(const float* x, const float* dy, float* out, int64_t n) {
#pragma omp parallel if (par(n))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    geluRange<true>(x, dy, out, laneSplit(n, t, nt), laneSplit(n, t + 1, nt));
  }
}

void clip(const float* x, float* out, int64_t n, float lo, float hi) {
#pragma omp parallel for schedule(static) if (par(n))
  for (int64_t i = 0; i < n; i++) out[i] = std::isnan(x[i]) ? x[i] : std::min(std::max(x[i], lo), hi);
}

void reduceInner(int op, const float* x, float* out, int64_t outer, int64_t inner) {
#pragma omp parallel for schedule(static) if (par(outer * inner))
  for (int64_t o = 0; o < outer; o++) {
    const float* row = x + o * inner;
    double acc = reduceInit(op);
    if (op == R_SUM || op == R_MEAN) {
      acc = sumRow(row, inner);
    } else {
      for (int64_t j = 0; j < inner; j++) acc = reduceStep(op, acc, row[j]);
    }
    out[o] = static_cast<float>(op == R_MEAN ? acc / inner : acc);
  }
}

void reduceOuter(int op, const float* x, float* out, int64_t outer, int64_t inner) {
#pragma omp parallel if (par(outer * inner))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = inner * t / nt, hi = inner * (t + 1) / nt;
    constexpr int64_t kBlock = 256;
    double acc[kBlock];
    for (int64_t j0 = lo; j0 < hi; j0 += kBlock) {
      const int64_t w = std::min(kBlock, hi - j0);
      for (int64_t j = 0; j < w; j++) acc[j] = reduceInit(op);
      for (int64_t o = 0; o < outer; o++) {
        const float* row = x + o * inner + j0;
        if (op == R_SUM || op == R_MEAN) {
          for (int64_t j = 0; j < w; j++) acc[j] += row[j];
        } else {
          for (int64_t j = 0; j < w; j++) acc[j] = reduceStep(op, acc[j], row[j]);
        }
      }
      for (int64_t j = 0; j < w; j++) out[j0 + j] = static_cast<float>(op == R_MEAN ? acc[j] / outer : acc[j]);
    }
  }
}

void softmax(const float* x, float* out, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (par(rows * cols))
  for (int64_t r = 0; r < rows; r++) {
    const float* xi = x + r * cols;
    float* o = out + r * cols;
    const float mx = maxRow(xi, cols);
    expArray(xi, mx, o, cols);
    const double sum = sumRow(o, cols);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < cols; j++) o[j] *= inv;
  }
}


void scaledMaskedSoftmax(const float* x, const float* mask, float* out, int64_t B, int64_t heads, int64_t Lq,
                         int64_t Lk, int64_t maskRows, float scale) {
  const int64_t rows = B * heads * Lq;
#pragma omp parallel if (par(rows * Lk))
  {
    float buf[1024];  // x * scale + mask, one row
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const int64_t b = r / (heads * Lq), q = r % Lq;
      const float* xi = x + r * Lk;
      const float* mi = mask + (b * maskRows + (maskRows == 1 ? 0 : q)) * Lk;
      float* o = out + r * Lk;
      softmaxRow(xi, mi, o, Lk, scale, buf);
    }
  }
}

void scaledSoftmaxGrad(const float* p, const float* dp, float* dx, int64_t rows, int64_t cols, float scale) {
#pragma omp parallel for schedule(static) if (par(rows * cols))
  for (int64_t r = 0; r < rows; r++) {
    const float* pi = p + r * cols;
    const float* di = dp + r * cols;
    float* o = dx + r * cols;
    float dot = 0;
    for (int64_t j = 0; j < cols; j++) dot += pi[j] * di[j];
    for (int64_t j = 0; j < cols; j++) o[j] = scale * pi[j] * (di[j] - dot);
  }
}

void addLayerNorm(const float* x, const float* residual, const float* gamma, const float* beta, float* y,
                  float* xhat, float* rstd, int64_t rows, int64_t H, float eps) {
#pragma omp parallel for schedule(static) if (par(rows * H))
  for (int64_t r = 0; r < rows; r++) {
    const float* xi = x + r * H;
    float* yi = y + r * H;
    // the sum s = x + residual: in xhat when the gradient needs it, else in y itself (inference)
    float* h = xhat != nullptr ? xhat + r * H : yi;
    if (residual != nullptr) {
      const float* ri = residual + r * H;
      for (int64_t j = 0; j < H; j++) h[j] = xi[j] + ri[j];
    } else {
      std::memcpy(h, xi, H * sizeof(float));
    }
    const float mean = static_cast<float>(sumRow(h, H) / H);
    // 16 partial sums, so the loop vectorises (one running float is a chain of dependent adds).
    float lane[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= H; j += 16) {
      for (int k = 0; k < 16; k++) {
        const float d = h[j + k] - mean;
        lane[k] += d * d;
      }
    }
    float var = 0;
    for (int k = 0; k < 16; k++) var += lane[k];
    for (; j < H; j++) var += (h[j] - mean) * (h[j] - mean);
    const float rs = 1.0f / std::sqrt(var / H + eps);
    if (xhat != nullptr) {
      rstd[r] = rs;
      for (int64_t j = 0; j < H; j++) {
        h[j] = (h[j] - mean) * rs;
        yi[j] = h[j] * gamma[j] + beta[j];
      }
    } else {
      for (int64_t j = 0; j < H; j++) {
        const float n = (yi[j] - mean) * rs;
        yi[j] = n * gamma[j] + beta[j];
      }
    }
  }
}

void layerNormGrad(const float* dy, const float* xhat, const float* rstd, const float* gamma, float* ds,
                   float* dgamma, float* dbeta, int64_t rows, int64_t H) {
  const int nt = par(rows * H) ? omp_get_max_threads() : 1;
  // per-thread partial sums of dgamma and dbeta, added up after (kept between calls)
  thread_local std::vector<float> part;
  part.assign(static_cast<size_t>(nt) * 2 * H, 0.0f);
  float* const parts = part.data();  // the calling thread's buffer (thread_local names another inside the region)
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    float* pg = parts + static_cast<size_t>(t) * 2 * H;
    float* pb = pg + H;
    const int64_t r0 = rows * t / n, r1 = rows * (t + 1) / n;
    for (int64_t r = r0; r < r1; r++) {
      const float* d = dy + r * H;
      const float* h = xhat + r * H;
      float* o = ds + r * H;
      float sg = 0, sgh = 0;
      for (int64_t j = 0; j < H; j++) {
        const float g = d[j] * gamma[j];
        sg += g;
        sgh += g * h[j];
        pg[j] += d[j] * h[j];
        pb[j] += d[j];
      }
      const float mg = sg / H, mgh = sgh / H, rs = rstd[r];
      for (int64_t j = 0; j < H; j++) o[j] = rs * (d[j] * gamma[j] - mg - h[j] * mgh);
    }
  }
  for (int64_t j = 0; j < H; j++) {
    float g = 0, b = 0;
    for (int t = 0; t < nt; t++) {
      g += part[static_cast<size_t>(t) * 2 * H + j];
      b += part[static_cast<size_t>(t) * 2 * H + H + j];
    }
    dgamma[j] = g;
    dbeta[j] = b;
  }
}

void logSumExpRows(const float* x, float* out, int64_t rows, int64_t cols, int32_t* argmax) {
#pragma omp parallel for schedule(static) if (par(rows * cols))
  for (int64_t r = 0; r < rows; r++) {
    const float* xi = x + r * cols;
    const float mx = maxRow(xi, cols);
    if (argmax != nullptr) {
      // the first index holding the row's max (0 when there is none: all NaN)
      int64_t j = 0;
      while (j < cols && !(xi[j] == mx)) j++;
      argmax[r] = static_cast<int32_t>(j < cols ? j : 0);
    }
    // exp in blocks that stay in L1, summed as sumRow does
    float buf[1024];
    double sum = 0;
    for (int64_t b = 0; b < cols; b += 1024) {
      const int64_t w = std::min<int64_t>(1024, cols - b);
      expArray(xi + b, mx, buf, w);
      sum += sumRow(buf, w);
    }
    out[r] = mx + static_cast<float>(std::log(sum));
  }
}

void softmaxMinusOneHot(const float* x, const int32_t* labels, float* out, int64_t rows, int64_t cols,
                        float* colSum) {
  if (colSum == nullptr) {
    softmax(x, out, rows, cols);
    for (int64_t r = 0; r < rows; r++) {
      if (labels[r] >= 0 && labels[r] < cols) out[r * cols + labels[r]] -= 1.0f;
    }
    return;
  }
  // with the column sums: each thread adds its rows into its own partial
  // sums while they are in cache, then the partials are added up
  const int nt = par(rows * cols) ? omp_get_max_threads() : 1;
  thread_local std::vector<float> part;
  part.assign(static_cast<size_t>(nt) * cols, 0.0f);
  float* const parts = part.data();
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    float* acc = parts + static_cast<size_t>(t) * cols;
    const int64_t r0 = rows * t / n, r1 = rows * (t + 1) / n;
    for (int64_t r = r0; r < r1; r++) {
      const float* xi = x + r * cols;
      float* o = out + r * cols;
      const float mx = maxRow(xi, cols);
      expArray(xi, mx, o, cols);
      const float inv = static_cast<float>(1.0 / sumRow(o, cols));
      for (int64_t j = 0; j < cols; j++) o[j] *= inv;
      if (labels[r] >= 0 && labels[r] < cols) o[labels[r]] -= 1.0f;
      for (int64_t j = 0; j < cols; j++) acc[j] += o[j];
    }
  }
  for (int64_t j = 0; j < cols; j++) {
    float v = 0;
    for (int t = 0; t < nt; t++) v += parts[static_cast<size_t>(t) * cols + j];
    colSum[j] = v;
  }
}

namespace {
template <typename T>
void transposeT(const T* x, T* out, int ndim, const int64_t* dims, const int32_t* perm) {
  // out dims and, for each out axis, the stride of x along it
  int64_t odims[8] = {0}, istr[8] = {0}, xs[8] = {0};
  xs[ndim - 1] = 1;
  for (int d = ndim - 2; d >= 0; d--) xs[d] = xs[d + 1] * dims[d + 1];
  for (int d = 0; d < ndim; d++) {
    odims[d] = dims[perm[d]];
    istr[d] = xs[perm[d]];
  }
  const int64_t inner = odims[ndim - 1], is = istr[ndim - 1];
  int64_t rows = 1;
  for (int d = 0; d < ndim - 1; d++) rows *= odims[d];
  bool identity = true;
  for (int d = 0; d < ndim; d++) identity = identity && perm[d] == d;
  if (identity) {
    std::memcpy(out, x, rows * inner * sizeof(T));
    return;
  }
  if (ndim == 2) {
    // blocked 2-D transpose: out [C, R] from x [R, C]
    const int64_t R = dims[0], C = dims[1];
    constexpr int64_t kB = 32;
#pragma omp parallel for schedule(static) if (par(R * C))
    for (int64_t c0 = 0; c0 < C; c0 += kB) {
      for (int64_t r0 = 0; r0 < R; r0 += kB) {
        const int64_t c1 = std::min(C, c0 + kB), r1 = std::min(R, r0 + kB);
        for (int64_t c = c0; c < c1; c++) {
          for (int64_t r = r0; r < r1; r++) out[c * R + r] = x[r * C + c];
        }
      }
    }
    return;
  }
#pragma omp parallel if (par(rows * inner))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = rows * t / nt, hi = rows * (t + 1) / nt;
    int64_t idx[8] = {0};
    int64_t rem = lo, off = 0;
    for (int d = ndim - 2; d >= 0; d--) {
      idx[d] = rem % odims[d];
      rem /= odims[d];
      off += idx[d] * istr[d];
    }
    for (int64_t r = lo; r < hi; r++) {
      T* o = out + r * inner;
      const T* src = x + off;
      if (is == 1) {
        std::memcpy(o, src, inner * sizeof(T));
      } else {
        for (int64_t j = 0; j < inner; j++) o[j] = src[j * is];
      }
      for (int d = ndim - 2; d >= 0; d--) {
        idx[d]++;
        off += istr[d];
        if (idx[d] < odims[d]) break;
        off -= istr[d] * odims[d];
        idx[d] = 0;
      }
    }
  }
}
}  // namespace

void transpose(const void* x, void* out, int ndim, const int64_t* dims, const int32_t* perm, int elemBytes) {
  if (elemBytes == 4) {
    transposeT(static_cast<const int32_t*>(x), static_cast<int32_t*>(out), ndim, dims, perm);
  } else if (elemBytes == 1) {
    transposeT(static_cast<const uint8_t*>(x), static_cast<uint8_t*>(out), ndim, dims, perm);
  }
}

int64_t gather(const void* x, const int32_t* idx, void* out, int64_t outer, int64_t dimSize, int64_t inner,
               int64_t nIdx, int elemBytes) {
  for (int64_t j = 0; j < nIdx; j++) {
    if (idx[j] < 0 || idx[j] >= dimSize) return j;
  }
  const char* xs = static_cast<const char*>(x);
  char* o = static_cast<char*>(out);
  const int64_t rowBytes = inner * elemBytes;
#pragma omp parallel for schedule(static) if (par(outer * nIdx * inner))
  for (int64_t k = 0; k < outer * nIdx; k++) {
    const int64_t b = k / nIdx, j = k % nIdx;
    std::memcpy(o + k * rowBytes, xs + (b * dimSize + idx[j]) * rowBytes, rowBytes);
  }
  return -1;
}

namespace {
// Copy a box of `size` at `offset` inside a `bigDims` array to or from a
// compact array `box`: slice reads the box out of the big array, place
// writes it in.
template <typename T, bool INTO_BIG>
void boxCopyT(T* big, T* box, int ndim, const int64_t* bigDims, const int64_t* offset, const int64_t* size) {
  int64_t bs[8];
  bs[ndim - 1] = 1;
  for (int d = ndim - 2; d >= 0; d--) bs[d] = bs[d + 1] * bigDims[d + 1];
  int64_t base = 0, rows = 1;
  for (int d = 0; d < ndim; d++) base += offset[d] * bs[d];
  for (int d = 0; d < ndim - 1; d++) rows *= size[d];
  const int64_t inner = size[ndim - 1];
#pragma omp parallel if (par(rows * inner))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = rows * t / nt, hi = rows * (t + 1) / nt;
    int64_t idx[8] = {0};
    int64_t rem = lo, off = base;
    for (int d = ndim - 2; d >= 0; d--) {
      idx[d] = rem % size[d];
      rem /= size[d];
      off += idx[d] * bs[d];
    }
    for (int64_t r = lo; r < hi; r++) {
      if (INTO_BIG) {
        std::memcpy(big + off, box + r * inner, inner * sizeof(T));
      } else {
        std::memcpy(box + r * inner, big + off, inner * sizeof(T));
      }
      for (int d = ndim - 2; d >= 0; d--) {
        idx[d]++;
        off += bs[d];
        if (idx[d] < size[d]) break;
        off -= bs[d] * size[d];
        idx[d] = 0;
      }
    }
  }
}

template <bool INTO_BIG>
void boxCopy(void* big, void* box, int ndim, const int64_t* bigDims, const int64_t* offset, const int64_t* size,
             int elemBytes) {
  if (elemBytes == 4) {
    boxCopyT<int32_t, INTO_BIG>(static_cast<int32_t*>(big), static_cast<int32_t*>(box), ndim, bigDims, offset, size);
  } else if (elemBytes == 1) {
    boxCopyT<uint8_t, INTO_BIG>(static_cast<uint8_t*>(big), static_cast<uint8_t*>(box), ndim, bigDims, offset, size);
  }
}
}  // namespace

void slice(const void* x, void* out, int ndim, const int64_t* dims, const int64_t* begin, const int64_t* size,
           int elemBytes) {
  boxCopy<false>(const_cast<void*>(x), out, ndim, dims, begin, size, elemBytes);
}

void place(const void* x, void* out, int ndim, const int64_t* dims, const int64_t* outDims, const int64_t* offset,
           int elemBytes) {
  boxCopy<true>(out, const_cast<void*>(x), ndim, outDims, offset, dims, elemBytes);
}

void fill4(void* out, int64_t n, uint32_t value) {
  uint32_t* o = static_cast<uint32_t*>(out);
#pragma omp parallel for schedule(static) if (par(n))
  for (int64_t i = 0; i < n; i++) o[i] = value;
}

void oneHot(const int32_t* idx, float* out, int64_t n, int64_t depth, float onValue, float offValue) {
#pragma omp parallel for schedule(static) if (par(n * depth))
  for (int64_t i = 0; i < n; i++) {
    float* row = out + i * depth;
    std::fill(row, row + depth, offValue);
    if (idx[i] >= 0 && idx[i] < depth) row[idx[i]] = onValue;
  }
}

void argMax(const float* x, int32_t* out, int64_t outer, int64_t inner) {
#pragma omp parallel for schedule(static) if (par(outer * inner))
  for (int64_t o = 0; o < outer; o++) {
    const float* row = x + o * inner;
    // as tfjs-backend-cpu: the first largest value, a NaN never wins (but a
    // NaN in first place stays): a vectorised max, then the first index with it
    int64_t best = 0;
    if (!std::isnan(row[0])) {
      const float m = maxRow(row, inner);
      while (row[best] != m) best++;
    }
    out[o] = static_cast<int32_t>(best);
  }
}

void segmentSum(const float* x, const int32_t* ids, float* out, int64_t rows, int64_t inner, int64_t numSegments) {
  // each thread owns a slice of the columns, so no two threads write one place
#pragma omp parallel if (par(rows * inner) || par(numSegments * inner))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = inner * t / nt, hi = inner * (t + 1) / nt;
    for (int64_t s = 0; s < numSegments; s++) std::fill(out + s * inner + lo, out + s * inner + hi, 0.0f);
    for (int64_t r = 0; r < rows; r++) {
      const int64_t s = ids[r];
      if (s < 0 || s >= numSegments) continue;
      const float* src = x + r * inner;
      float* dst = out + s * inner;
      for (int64_t j = lo; j < hi; j++) dst[j] += src[j];
    }
  }
}

void adamw(float* p, float* m, float* v, const float* g, int64_t n, float b1, float b2, float eps, float decay,
           float stepSize, float sqrtBc2, float gradScale) {
  const float c1 = 1 - b1, c2 = 1 - b2;
#pragma omp parallel for schedule(static) if (par(n))
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i] * gradScale;
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - (mi / (std::sqrt(vi) / sqrtBc2 + eps)) * stepSize;
  }
}

}  // namespace rm
