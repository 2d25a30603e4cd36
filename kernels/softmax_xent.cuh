// Launcher for the (1+K)-way softmax cross-entropy with label 0 (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moco::kernels {

// Bytes of device workspace softmax_xent_label0 needs for n rows (per-row losses and ranks).
size_t softmax_xent_label0_workspace_bytes(int64_t n);

// Rows of logits (N, M) with label 0 for every row:
//   loss[0]   = mean_i (logsumexp(z_i) - z_i0)                     (device fp32 scalar; reduced in double)
//   dlogits   = (softmax(z_i) - onehot0) / N                        (N, M); nullable (loss only); may equal
//                                                                  logits (computed in place)
//   hits[0/1] = rows whose z_i0 is beaten by fewer than 1 / 5 negatives (strictly greater ones; a tie does
//               not beat the positive)                             (device int64 (2)); nullable
// workspace: softmax_xent_label0_workspace_bytes(n) bytes of device memory, 8-byte aligned.
// Deterministic: the same inputs give bit-identical outputs (no floating-point atomics).
// CPU references: cpu::softmax_xent_label0 and cpu::count_label0_in_topk (topk 1 and 5).
void softmax_xent_label0(int64_t n, int64_t m, const float* logits, float* dlogits, float* loss, int64_t* hits,
                         void* workspace, cudaStream_t stream);

// summary (3) fp32 = {loss[0], hits[0], hits[1]}: the step's numbers as one small buffer that the ranks can
// average with one all-reduce and the host can read back with one copy. CPU reference: the float array the
// CPU step all-reduces (Moco::step_with_permutation).
void loss_summary(const float* loss, const int64_t* hits, float* summary, cudaStream_t stream);

}  // namespace moco::kernels
