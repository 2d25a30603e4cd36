// Launcher for the MoCo queue update (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// Copies keys (n, C) into rows [ptr, ptr + n) of queue (K, C), wrapping past row K - 1 to row 0, and returns
// the new pointer (ptr + n) mod K. Needs 0 <= n <= K and 0 <= ptr < K. Asynchronous on `stream`; keys and
// queue are device memory. CPU reference: KeyQueue::enqueue (src/moco/queue.cpp).
int64_t enqueue(int64_t k, int64_t c, int64_t ptr, int64_t n, const float* keys, float* queue, cudaStream_t stream);
// The same for a bf16 queue (the bf16 logits path).
int64_t enqueue(int64_t k, int64_t c, int64_t ptr, int64_t n, const __nv_bfloat16* keys, __nv_bfloat16* queue,
                cudaStream_t stream);

}  // namespace moco::kernels
