// Launchers for batch normalisation over channels-last activations (raw pointers and sizes only; no Tensor).
//
// Layout: x, y, dy, dx are (N, HW, C) with C innermost (NHWC), of type T = float or __nv_bfloat16. The
// affine parameters, the saved statistics and the running statistics are fp32, and every reduction is done
// in fp32 partials combined in double, so a bf16 network still has fp32 BN statistics (the engine's GPU numerics).
//
// Split-BN: with `groups` > 1 the batch splits into `groups` equal runs of N/groups samples along N, each
// normalised with its own mean and variance, exactly as if each run sat on its own rank (SPEC 4).
//
// Fusion: the forward optionally adds a residual (same layout as y) after the affine transform and then
// applies ReLU, which is the tail of every residual block (bn3 + shortcut, ReLU) and, without the residual,
// the bn->relu pair inside it. The backward takes the fused output y to rebuild the ReLU mask, and writes
// the gradient that flows into the residual.
//
// CPU references: cpu::batchnorm_train_forward / _backward and cpu::batchnorm_eval_forward / _backward
// (NCHW), followed by cpu::add_forward and cpu::relu_forward for the fused tail.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moco::kernels {

// Bytes of device workspace any of the launchers below needs for this shape (8-byte aligned, reused freely
// between calls on the same stream).
size_t batchnorm_workspace_bytes(int64_t n, int64_t hw, int64_t c, int64_t groups);

// The ReLU's mask as bits, (N * HW * C / 8) bytes: bit k of byte i is element 8 i + k (channels-last order),
// set when the stored y > 0. A forward given one writes it; a backward given one reads it instead of y, a
// 16th of y's bytes in each of its two passes (worth it with a residual, where x alone does not give the
// mask). Only for T = bf16 with C a multiple of 8 (one byte per thread's 16-byte vector of 8 channels) and
// 16-byte aligned activations; the launchers throw otherwise.
template <class T>
bool batchnorm_relu_mask_fits(int64_t c);

// Train mode. save_mean, save_invstd: (groups, C), the biased batch statistics of each group, kept for the
// backward. Running statistics (nullable, all three together) move with `momentum` towards the group mean
// and the UNBIASED group variance, averaged over groups (torch semantics; see cpu::batchnorm_train_forward),
// and *num_batches_tracked grows by one.
//   y = [relu]( (x - mean_g) * invstd_g * gamma + beta [+ residual] )
// residual: nullable; relu: whether to apply the ReLU. y may not alias x. relu_mask: nullable, written when
// given (batchnorm_relu_mask_fits).
template <class T>
void batchnorm_train_forward(int64_t n, int64_t hw, int64_t c, int64_t groups, const T* x, const float* gamma,
                             const float* beta, float eps, float momentum, const T* residual, bool relu, T* y,
                             float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                             int64_t* num_batches_tracked, void* workspace, cudaStream_t stream,
                             uint8_t* relu_mask = nullptr);

// The train-mode forward's output again, from its input and the statistics it saved, for a forward WITHOUT a
// residual: y = [relu]((x - mean_g) * invstd_g * gamma + beta), bit for bit what batchnorm_train_forward wrote
// (the same apply pass on the same statistics), and nothing else is touched. A network that drops a BN+ReLU
// output after its forward rebuilds it so for the backward of the convolution that read it.
template <class T>
void batchnorm_train_apply(int64_t n, int64_t hw, int64_t c, int64_t groups, const T* x, const float* gamma,
                           const float* beta, const float* save_mean, const float* save_invstd, bool relu, T* y,
                           cudaStream_t stream);

// Backward of the train-mode forward above.
//   y: the forward's output, read for the ReLU's mask (nullable otherwise);
//   relu_mask: the forward's mask bits, read instead of y when given (y may then be null);
//   beta: read instead of y when relu is set and y is null, for a forward WITHOUT a residual: the mask is
//         then recomputed from x, as the forward rounded its output (T(bn(x)) > 0), bit for bit y > 0, and
//         the kernels read 2 bytes an element less in each of their two passes;
//   g = relu ? dy * (y > 0) : dy is the gradient at the pre-ReLU sum;
//   d_residual (nullable) receives g (the residual's gradient; may alias dy);
//   dx = invstd * gamma * (g - mean_g(g) - xhat * mean_g(g * xhat))       (written, not accumulated);
//   dgamma += sum(g * xhat), dbeta += sum(g)                              (fp32 (C), ACCUMULATED).
template <class T>
void batchnorm_train_backward(int64_t n, int64_t hw, int64_t c, int64_t groups, const T* x, const float* gamma,
                              const float* beta, const float* save_mean, const float* save_invstd, const T* y,
                              bool relu, const T* dy, T* d_residual, T* dx, float* dgamma, float* dbeta,
                              void* workspace, cudaStream_t stream, const uint8_t* relu_mask = nullptr);

// Eval mode: normalise with the running statistics (groups do not apply). No fusion: eval mode serves
// feature extraction for the kNN monitor and the linear probe, where a few passes more do not matter.
template <class T>
void batchnorm_eval_forward(int64_t n, int64_t hw, int64_t c, const T* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, T* y, cudaStream_t stream);
// dx = dy * gamma / sqrt(var + eps); dgamma += sum(dy * xhat), dbeta += sum(dy) (ACCUMULATED).
template <class T>
void batchnorm_eval_backward(int64_t n, int64_t hw, int64_t c, const T* x, const float* gamma,
                             const float* running_mean, const float* running_var, float eps, const T* dy, T* dx,
                             float* dgamma, float* dbeta, void* workspace, cudaStream_t stream);

}  // namespace moco::kernels
