// The matrix products the layers need, row-major, behind one interface so the kernel behind it
// can change (Eigen today) without touching the layers. ld* are row strides in floats.
#pragma once

namespace ebm {

// C[m, n] = A[m, k] * B[k, n]           (C += ... when accumulate)
void gemm_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate = false);
// C[m, n] = A[k, m]^T * B[k, n]
void gemm_tn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate = false);
// C[m, n] = A[m, k] * B[n, k]^T
void gemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate = false);

}  // namespace ebm
