// The bundled single-precision GEMM: what the native backend multiplies with
// when it is built without OpenBLAS (RETROMAE_BLAS=bundled, or no
// libopenblas-dev), and what `gemm("bundled")` switches to in a build that has
// both. Goto/BLIS structure: B is packed into kc x NR panels, A into MR x kc
// panels, and a register-blocked microkernel computes each MR x NR tile of C.
// Microkernels for AVX-512 (12 x 32), AVX2+FMA (6 x 16) and portable C++
// (4 x 16) are compiled in; the widest the CPU supports is chosen at run time.
// One call runs on the calling thread; kernels.cc splits products across
// OpenMP threads over tiles of C, as it does for OpenBLAS.
#pragma once
#include <cstdint>

namespace rm {

// C[M, N] = op(A) op(B), row-major; op(A) is [M, K] (A is [K, M] when transA,
// leading dimension lda either way), op(B) is [K, N]. C is overwritten.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
           int64_t ldb, float* C, int64_t ldc);

// The microkernel in use: "avx512", "avx2" or "scalar".
const char* sgemmKernel();
// Force one ("avx512", "avx2", "scalar"), or "auto" for the widest this CPU
// runs; false when this CPU can't run the one named.
bool setSgemmKernel(const char* name);

}  // namespace rm
