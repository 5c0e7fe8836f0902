#include "gemm.h"

#include <Eigen/Core>

namespace ebm {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using Map = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class L, class R>
void assign(Map& c, const L& l, const R& r, bool accumulate) {
  if (accumulate)
    c.noalias() += l * r;
  else
    c.noalias() = l * r;
}
}  // namespace

void gemm_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  ConstMap A(a, m, k, Eigen::OuterStride<>(lda));
  ConstMap B(b, k, n, Eigen::OuterStride<>(ldb));
  Map C(c, m, n, Eigen::OuterStride<>(ldc));
  assign(C, A, B, accumulate);
}

void gemm_tn(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  ConstMap A(a, k, m, Eigen::OuterStride<>(lda));
  ConstMap B(b, k, n, Eigen::OuterStride<>(ldb));
  Map C(c, m, n, Eigen::OuterStride<>(ldc));
  assign(C, A.transpose(), B, accumulate);
}

void gemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
             int ldc, bool accumulate) {
  ConstMap A(a, m, k, Eigen::OuterStride<>(lda));
  ConstMap B(b, n, k, Eigen::OuterStride<>(ldb));
  Map C(c, m, n, Eigen::OuterStride<>(ldc));
  assign(C, A, B.transpose(), accumulate);
}

}  // namespace ebm
