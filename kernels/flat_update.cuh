// Launchers for the flat-buffer update kernels (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// theta_k = theta_k * m + theta_q * (1 - m) over n floats, m and 1 - m rounded to float from double (as
// PyTorch does). CPU reference: cpu::momentum_update.
void momentum_update(int64_t n, double m, const float* theta_q, float* theta_k, cudaStream_t stream);

// PyTorch SGD with momentum and weight decay over n floats. CPU reference: cpu::sgd_momentum_step.
void sgd_momentum_step(int64_t n, float lr, float momentum, float weight_decay, float* param, const float* grad,
                       float* buf, cudaStream_t stream);

}  // namespace moco::kernels
