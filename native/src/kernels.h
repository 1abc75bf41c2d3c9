// The native CPU kernels behind lib/engine/native.ts. Plain C++ over raw
// float/int32 pointers; addon.cc binds them to JavaScript typed arrays.
// Every kernel writes its whole output, and none allocates per call.
#pragma once
#include <cstdint>
#include <string>

namespace rm {

// ---- matrix products (OpenBLAS, or the bundled GEMM of gemm.h) -------------
// The library in use: "openblas 0.3.21", or "bundled avx512" (its microkernel).
std::string gemm();
// Switch: "openblas" (builds that link it), "bundled", or "bundled/avx512",
// "bundled/avx2", "bundled/scalar"; false when this build or CPU can't.
bool setGemm(const std::string& name);

// out[i] = op(a[i % batchA]) x op(b[i % batchB]) for i < batch, where
// op(a) is [M, K] (a is [K, M] when transA) and op(b) is [K, N].
// bias (nullable): added per output column (biasLen == N) or as a scalar
// (biasLen == 1). act: 0 linear, 1 relu.
void matmul(const float* a, const float* b, float* out, int64_t batch, int64_t batchA, int64_t batchB,
            int64_t M, int64_t N, int64_t K, bool transA, bool transB, const float* bias, int64_t biasLen,
            int act);

// ---- element-wise ---------------------------------------------------------
enum BinaryOp { ADD = 0, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, POW };
// out (rank `ndim`, dims) = op(a, b), with a/b read through strides (0 where
// broadcast). Dims are collapsed by the caller; ndim >= 1.
void binary(int op, const float* a, const float* b, float* out, int ndim, const int64_t* dims,
            const int64_t* strideA, const int64_t* strideB);

enum UnaryOp {
  EXP = 0, LOG, SQRT, RSQRT, NEG, SQUARE, ERF, TANH, ABS, RECIPROCAL, RELU, SIGMOID, STEP, LOG1P, SIGN,
  SOFTPLUS, FLOOR, CEIL, ROUND, SIN, COS, ELU, SELU, RELU6, EXPM1
};
void unary(int op, const float* x, float* out, int64_t n, float alpha);

// out = clamp(x, lo, hi); NaN stays NaN (ClipByValue)
void clip(const float* x, float* out, int64_t n, float lo, float hi);

// GELU, exact form: out = 0.5 x (1 + erf(x / sqrt 2)); and its gradient,
// out = dy (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi))
void gelu(const float* x, float* out, int64_t n);
void geluGrad(const float* x, const float* dy, float* out, int64_t n);

// ---- reductions -------------------------------------------------------------
enum ReduceOp { R_SUM = 0, R_MAX, R_MIN, R_MEAN, R_PROD };
// x: [outer, inner]; out[o] = reduce over inner.
void reduceInner(int op, const float* x, float* out, int64_t outer, int64_t inner);
// x: [outer, inner]; out[i] = reduce over outer.
void reduceOuter(int op, const float* x, float* out, int64_t outer, int64_t inner);

// softmax over the last axis of [rows, cols]
void softmax(const float* x, float* out, int64_t rows, int64_t cols);

// Attention probabilities in one pass: out = softmax(x * scale + mask) over
// the last axis of x [B, heads, Lq, Lk]; mask is additive, [B, 1, maskRows, Lk]
// with maskRows 1 (one row for every query) or Lq.
void scaledMaskedSoftmax(const float* x, const float* mask, float* out, int64_t B, int64_t heads, int64_t Lq,
                         int64_t Lk, int64_t maskRows, float scale);
// Multi-head attention for inference, fused: for each batch b and head h,
// out_bh = softmax(q_bh k_bhᵀ * scale + mask_b) v_bh, where q is [B, Lq] rows
// of ldq floats and k and v [B, Lk] rows of ldkv, each row's first H holding
// the heads side by side (H = heads * dh; ld > H when q, k and v are columns
// of one stacked projection), mask is [B, 1, maskRows, Lk] and out is
// [B, Lq, H]. No probabilities are kept. Heads of dh = 64 (a multiple of the
// register tile's width) and 16 or more query rows run register-tiled
// (kernels.cc attentionTiled); others through two GEMM calls per block.
void attention(const float* q, const float* k, const float* v, const float* mask, float* out, int64_t B,
               int64_t heads, int64_t Lq, int64_t Lk, int64_t dh, int64_t maskRows, float scale, int64_t ldq,
               int64_t ldkv);
// Its gradient with respect to x: dx = scale * p * (dp - sum_j dp p), rows of [rows, cols].
void scaledSoftmaxGrad(const float* p, const float* dp, float* dx, int64_t rows, int64_t cols, float scale);

// LayerNorm of (x + residual) over rows of [rows, H] (residual nullable):
// xhat = (s - mean) * rstd with rstd = 1 / sqrt(var + eps), y = xhat * gamma + beta.
// xhat [rows, H] and rstd [rows] are kept for the gradient; both null in
// inference, where y alone is written (the same values).
void addLayerNorm(const float* x, const float* residual, const float* gamma, const float* beta, float* y,
                  float* xhat, float* rstd, int64_t rows, int64_t H, float eps);
// Its gradient: ds = rstd * (g - mean(g) - xhat * mean(g * xhat)) with
// g = dy * gamma (ds is the gradient of x and of residual alike);
// dgamma = sum_rows dy * xhat, dbeta = sum_rows dy.
void layerNormGrad(const float* dy, const float* xhat, const float* rstd, const float* gamma, float* ds,
                   float* dgamma, float* dbeta, int64_t rows, int64_t H);

// The fused pieces of softmax cross-entropy over rows of [rows, cols], so
// the [rows, cols] temporaries of exp, sub and one-hot never exist:
// out[r] = log(sum_j exp(x[r, j]))  (max-shifted); argmax (nullable) gets
// each row's first index of its max, as ArgMax does, from the same pass.
void logSumExpRows(const float* x, float* out, int64_t rows, int64_t cols, int32_t* argmax = nullptr);
// out[r, j] = softmax(x[r])[j] - (j == labels[r])  (a label outside [0, cols) subtracts nothing)
// colSum (nullable) gets sum_r out[r, j], the bias gradient, in the same pass.
void softmaxMinusOneHot(const float* x, const int32_t* labels, float* out, int64_t rows, int64_t cols,
                        float* colSum = nullptr);

// ---- data movement ----------------------------------------------------------
// out = transpose(x, perm); in dims of x (rank <= 8), element size in bytes.
void transpose(const void* x, void* out, int ndim, const int64_t* dims, const int32_t* perm, int elemBytes);
// x: [outer, dimSize, inner]; out: [outer, nIdx, inner] = x[:, idx[j], :].
// Returns the first index outside [0, dimSize), or -1.
int64_t gather(const void* x, const int32_t* idx, void* out, int64_t outer, int64_t dimSize, int64_t inner,
               int64_t nIdx, int elemBytes);
// out = x[begin : begin + size] (a box of an ndim-dim array), element size in bytes
void slice(const void* x, void* out, int ndim, const int64_t* dims, const int64_t* begin, const int64_t* size,
           int elemBytes);
// out[offset : offset + dims] = x (x is a box of dims inside out, of outDims); the inverse of slice
void place(const void* x, void* out, int ndim, const int64_t* dims, const int64_t* outDims, const int64_t* offset,
           int elemBytes);
// out[0:n] = the 4-byte pattern of value
void fill4(void* out, int64_t n, uint32_t value);
// out [n, depth]: onValue where j == idx[i], offValue elsewhere
void oneHot(const int32_t* idx, float* out, int64_t n, int64_t depth, float onValue, float offValue);
// x: [outer, inner]; out[o] = index of the first largest value in row o (NaN counts as largest)
void argMax(const float* x, int32_t* out, int64_t outer, int64_t inner);
// out: [numSegments, inner] = sum over rows r with ids[r] == s of x[r, :]
void segmentSum(const float* x, const int32_t* ids, float* out, int64_t rows, int64_t inner, int64_t numSegments);

// ---- optimizer ------------------------------------------------------------
// One AdamW step in place, in the order lib/train/optim.ts computes it
// (g scaled by gradScale, the clipping coefficient):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p = p * decay - stepSize * m / (sqrt(v) / sqrtBc2 + eps)
void adamw(float* p, float* m, float* v, const float* g, int64_t n, float b1, float b2, float eps, float decay,
           float stepSize, float sqrtBc2, float gradScale);

int threads();
void setThreads(int n);

}  // namespace rm
