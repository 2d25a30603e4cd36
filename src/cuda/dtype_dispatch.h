// Runs a generic lambda with a null pointer of the element type a DType names, so one body serves the bf16
// and the fp32 instantiations of the kernels:
//   with_compute_type(act, [&](auto* tag) { using T = std::remove_pointer_t<decltype(tag)>; ... });
#pragma once
#include <cuda_bf16.h>

#include <type_traits>

#include "moco/tensor.h"

namespace moco::cuda {

template <class F>
void with_compute_type(DType dt, F&& f) {
  if (dt == DType::BF16) {
    f(static_cast<__nv_bfloat16*>(nullptr));
  } else {
    MOCO_CHECK(dt == DType::F32, "the CUDA backend computes in bf16 or f32, not ", dtype_name(dt));
    f(static_cast<float*>(nullptr));
  }
}

}  // namespace moco::cuda
