// The two forms a batch of views reaches the GPU in (LoaderConfig::view_dtype), shared by the MoCo step and
// the evaluation features: normalised fp32 (N, 3, H, W), or 8-bit (N, H, W, 3), normalised on the device.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "moco/tensor.h"

namespace moco::cuda {

struct ViewBatch {
  int64_t n = 0, h = 0, w = 0;
  DType pixel = DType::F32;  // U8: (N, H, W, 3); F32: (N, 3, H, W)
};

// Checks that x is a contiguous batch in one of the two forms (what names it in the error) and reads its sizes.
ViewBatch view_batch(const Tensor& x, const char* what);

// staged (N, 3*H*W) of v.pixel on the device -> out (N, H, W, 3) in the compute dtype `act`: 8-bit views
// normalised (ToTensor + Normalize, kernels/image_normalize.cu), fp32 ones (already normalised) moved to
// channels-last.
void to_network_input(const ViewBatch& v, const void* staged, DType act, void* out, cudaStream_t stream);

}  // namespace moco::cuda
