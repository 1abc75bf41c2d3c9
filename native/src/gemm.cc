// See gemm.h. The loop nest is the Goto/BLIS one (Goto & van de Geijn, "Anatomy
// of high-performance matrix multiplication", TOMS 2008):
//
//   for jc in N step NC:            B[pc:pc+kc, jc:jc+nc] packed -> Bp (L3)
//     for pc in K step KC:
//       for ic in M step MC:        A[ic:ic+mc, pc:pc+kc] packed -> Ap (L2)
//         for jr in nc step NR:     one kc x NR panel of Bp (L1)
//           for ir in mc step MR:   microkernel: C[MR, NR] (+)= Ap_ir Bp_jr
//
// Panels are zero-padded to whole MR / NR, so the microkernel always runs a
// full tile; a tile that hangs over C's edge is computed into a scratch tile
// and its valid part copied out. The packing buffers are per thread and kept
// between calls (no allocation per product).
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace rm {
namespace {

constexpr int64_t KC = 256;  // depth of one packed block
constexpr int64_t MC = 192;  // rows of A per packed block: a multiple of every MR
constexpr int64_t NC = 4096; // columns of B per packed block: a multiple of every NR

// c[MR, NR] (ldc) = (accumulate ? c : 0) + sum_k a[k][0..MR) x b[k][0..NR)
using Microkernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);

struct Kernel {
  const char* name;
  int MR, NR;
  Microkernel run;
};

// ---- microkernels ----------------------------------------------------------

// AVX-512: 12 rows x 32 columns, 24 zmm accumulators; per k, two loads of B
// and 12 broadcasts of A.
__attribute__((target("avx512f"))) void kernelAvx512(int64_t kc, const float* a, const float* b, float* c,
                                                      int64_t ldc, bool accumulate) {
  constexpr int MR = 12;
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
    }
    a += MR;
    b += 32;
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) {
    float* cr = c + r * ldc;
    if (accumulate) {
      acc0[r] = _mm512_add_ps(acc0[r], _mm512_loadu_ps(cr));
      acc1[r] = _mm512_add_ps(acc1[r], _mm512_loadu_ps(cr + 16));
    }
    _mm512_storeu_ps(cr, acc0[r]);
    _mm512_storeu_ps(cr + 16, acc1[r]);
  }
}

// AVX2 + FMA: 6 rows x 16 columns, 12 ymm accumulators (of 16 registers).
__attribute__((target("avx2,fma"))) void kernelAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                     bool accumulate) {
  constexpr int MR = 6;
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
    }
    a += MR;
    b += 16;
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    float* cr = c + r * ldc;
    if (accumulate) {
      acc0[r] = _mm256_add_ps(acc0[r], _mm256_loadu_ps(cr));
      acc1[r] = _mm256_add_ps(acc1[r], _mm256_loadu_ps(cr + 8));
    }
    _mm256_storeu_ps(cr, acc0[r]);
    _mm256_storeu_ps(cr + 8, acc1[r]);
  }
}

// Portable C++: 4 rows x 16 columns, for CPUs with neither (the compiler
// vectorizes the inner loop with whatever the build targets).
void kernelScalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  constexpr int MR = 4, NR = 16;
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; k++) {
    for (int r = 0; r < MR; r++) {
      const float ar = a[r];
      for (int j = 0; j < NR; j++) acc[r][j] += ar * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int r = 0; r < MR; r++) {
    float* cr = c + r * ldc;
    for (int j = 0; j < NR; j++) cr[j] = accumulate ? cr[j] + acc[r][j] : acc[r][j];
  }
}

const Kernel kKernels[] = {
    {"avx512", 12, 32, kernelAvx512},
    {"avx2", 6, 16, kernelAvx2},
    {"scalar", 4, 16, kernelScalar},
};

bool supported(const Kernel& k) {
  if (std::strcmp(k.name, "avx512") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(k.name, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return true;
}

const Kernel* widest() {
  __builtin_cpu_init();  // this runs from a static initializer
  for (const Kernel& k : kKernels)
    if (supported(k)) return &k;
  return &kKernels[2];
}

const Kernel* active = widest();

// ---- packing ---------------------------------------------------------------
// op(A)(i, k) = A[i * rsA + k * csA]; op(B)(k, j) = B[k * rsB + j * csB].

// Ap: ceil(mc / MR) panels, each kc x MR (for each k, MR rows' values).
void packA(const float* A, int64_t rsA, int64_t csA, int64_t mc, int64_t kc, int MR, float* Ap) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int64_t rows = std::min<int64_t>(MR, mc - i0);
    const float* a = A + i0 * rsA;
    if (csA == 1) {
      // rows of A are contiguous along k
      for (int64_t r = 0; r < rows; r++) {
        const float* ar = a + r * rsA;
        for (int64_t k = 0; k < kc; k++) Ap[k * MR + r] = ar[k];
      }
    } else {
      for (int64_t k = 0; k < kc; k++)
        for (int64_t r = 0; r < rows; r++) Ap[k * MR + r] = a[k * csA + r * rsA];
    }
    for (int64_t r = rows; r < MR; r++)
      for (int64_t k = 0; k < kc; k++) Ap[k * MR + r] = 0.0f;
    Ap += kc * MR;
  }
}

// Bp: ceil(nc / NR) panels, each kc x NR (for each k, NR columns' values).
void packB(const float* B, int64_t rsB, int64_t csB, int64_t kc, int64_t nc, int NR, float* Bp) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t cols = std::min<int64_t>(NR, nc - j0);
    const float* b = B + j0 * csB;
    if (csB == 1) {
      for (int64_t k = 0; k < kc; k++) {
        std::memcpy(Bp + k * NR, b + k * rsB, cols * sizeof(float));
        for (int64_t j = cols; j < NR; j++) Bp[k * NR + j] = 0.0f;
      }
    } else {
      // B^T: columns of op(B) are contiguous along k
      for (int64_t j = 0; j < cols; j++) {
        const float* bj = b + j * csB;
        for (int64_t k = 0; k < kc; k++) Bp[k * NR + j] = bj[k];
      }
      for (int64_t j = cols; j < NR; j++)
        for (int64_t k = 0; k < kc; k++) Bp[k * NR + j] = 0.0f;
    }
    Bp += kc * NR;
  }
}

// A 64-byte-aligned float buffer that grows and is kept (one per thread).
struct Scratch {
  float* data = nullptr;
  size_t size = 0;
  float* get(size_t n) {
    if (n > size) {
      std::free(data);
      data = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
      size = n;
    }
    return data;
  }
  ~Scratch() { std::free(data); }
};

}  // namespace

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
           int64_t ldb, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; i++) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
    return;
  }
  const Kernel& kern = *active;
  const int MR = kern.MR, NR = kern.NR;
  const int64_t rsA = transA ? 1 : lda, csA = transA ? lda : 1;
  const int64_t rsB = transB ? 1 : ldb, csB = transB ? ldb : 1;

  thread_local Scratch bufA, bufB;
  const int64_t ncMax = std::min(NC, (N + NR - 1) / NR * NR), kcMax = std::min(KC, K);
  const int64_t mcMax = std::min(MC, (M + MR - 1) / MR * MR);
  float* Ap = bufA.get(mcMax * kcMax);
  float* Bp = bufB.get(ncMax * kcMax);
  alignas(64) float edge[12 * 32];  // MR x NR of the widest kernel

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const bool accumulate = pc > 0;
      packB(B + pc * rsB + jc * csB, rsB, csB, kc, nc, NR, Bp);
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        packA(A + ic * rsA + pc * csA, rsA, csA, mc, kc, MR, Ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t cols = std::min<int64_t>(NR, nc - jr);
          const float* bp = Bp + (jr / NR) * kc * NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t rows = std::min<int64_t>(MR, mc - ir);
            const float* ap = Ap + (ir / MR) * kc * MR;
            float* c = C + (ic + ir) * ldc + jc + jr;
            if (rows == MR && cols == NR) {
              kern.run(kc, ap, bp, c, ldc, accumulate);
            } else {
              kern.run(kc, ap, bp, edge, NR, false);
              for (int64_t r = 0; r < rows; r++) {
                float* cr = c + r * ldc;
                const float* er = edge + r * NR;
                if (accumulate) {
                  for (int64_t j = 0; j < cols; j++) cr[j] += er[j];
                } else {
                  std::memcpy(cr, er, cols * sizeof(float));
                }
              }
            }
          }
        }
      }
    }
  }
}

const char* sgemmKernel() { return active->name; }

bool setSgemmKernel(const char* name) {
  if (std::strcmp(name, "auto") == 0) {
    active = widest();
    return true;
  }
  for (const Kernel& k : kKernels) {
    if (std::strcmp(k.name, name) == 0) {
      if (!supported(k)) return false;
      active = &k;
      return true;
    }
  }
  return false;
}

}  // namespace rm
