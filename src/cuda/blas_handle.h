// A cuBLAS handle owned by one object: created checked, destroyed once, movable, not copyable. Kernels take
// the raw cublasHandle_t (blas.get()); this type only answers "who destroys it".
#pragma once
#include <utility>

#include "check.h"

namespace moco::cuda {

class BlasHandle {
 public:
  BlasHandle() {
    MOCO_CUBLAS_CHECK(cublasCreate(&h_));
    // alpha and beta are host scalars everywhere in this engine
    MOCO_CUBLAS_CHECK(cublasSetPointerMode(h_, CUBLAS_POINTER_MODE_HOST));
  }
  ~BlasHandle() {
    if (h_) cublasDestroy(h_);  // a destructor must not throw; a failing destroy leaks nothing we can recover
  }
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  BlasHandle(BlasHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  BlasHandle& operator=(BlasHandle&& o) noexcept {
    if (this != &o) {
      if (h_) cublasDestroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace moco::cuda
