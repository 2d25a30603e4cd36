// The linear probe's classifier on the GPU (LinearProbe, include/moco/linear_probe.h): fc forward and backward
// as fp32 cuBLAS GEMMs, the loss and its gradient by kernels/softmax_xent.cu with the batch's labels, SGD by
// kernels/flat_update.cu over the flat [weight, bias] buffer. Its reference is the CPU probe
// (make_cpu_linear_probe), which it matches to fp32 rounding (tests/gpu/test_linear_probe.cpp).
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "moco/linear_probe.h"

namespace moco::cuda {

// Runs on `stream` of the current device; features and labels come from the host, one batch at a time.
std::unique_ptr<LinearProbe> make_gpu_linear_probe(int64_t dim, int64_t classes, const std::vector<float>& initial,
                                                   const SgdConfig& sgd, cudaStream_t stream);

}  // namespace moco::cuda
