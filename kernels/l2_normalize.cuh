// Launchers for row L2 normalisation (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// y (N, C) = x / max(||x_i||, 1e-12) per row, as torch.nn.functional.normalize(dim=1); norms (N) = ||x_i||,
// saved for the backward. CPU reference: cpu::l2_normalize_forward.
void l2_normalize_forward(int64_t n, int64_t c, const float* x, float* y, float* norms, cudaStream_t stream);

// dx (N, C) = (dy - y * <dy, y>) / ||x_i||, or dy / 1e-12 where ||x_i|| <= 1e-12; dx may alias dy.
// CPU reference: cpu::l2_normalize_backward.
void l2_normalize_backward(int64_t n, int64_t c, const float* y, const float* norms, const float* dy, float* dx,
                           cudaStream_t stream);

}  // namespace moco::kernels
