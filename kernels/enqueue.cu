// MoCo's dequeue-and-enqueue: the newest keys overwrite the oldest rows of the queue.
//
// What it computes: queue (K, C) rows [ptr, ptr + n) mod K = keys (n, C); returns (ptr + n) mod K.
// CPU reference: KeyQueue::enqueue (src/moco/queue.cpp).
//
// Why no kernel: the queue is stored K x C (DESIGN decision 7), so the rows to overwrite are at most two
// contiguous ranges (up to the end, then from row 0); two device-to-device cudaMemcpyAsync calls move them
// at copy bandwidth, stay in stream order and are capturable in a CUDA graph.
#include <algorithm>

#include "../src/cuda/check.h"
#include "enqueue.cuh"

namespace moco::kernels {

namespace {

int64_t enqueue_rows(int64_t k, int64_t c, int64_t ptr, int64_t n, const void* keys, void* queue, size_t elem,
                     cudaStream_t stream) {
  MOCO_CHECK(k >= 1 && c >= 1, "enqueue: need K, C >= 1, got K=", k, " C=", c);
  MOCO_CHECK(n >= 0 && n <= k, "enqueue: cannot enqueue ", n, " keys into a queue of ", k,
             "; the global batch must not exceed --moco-k");
  MOCO_CHECK(ptr >= 0 && ptr < k, "enqueue: queue pointer ", ptr, " out of range [0, ", k, ")");
  const size_t row_bytes = (size_t)c * elem;
  const char* src = static_cast<const char*>(keys);  // (n, C)
  char* dst = static_cast<char*>(queue);             // (K, C)
  int64_t done = 0;
  while (done < n) {  // at most two ranges
    const int64_t rows = std::min(n - done, k - ptr);
    MOCO_CUDA_CHECK(cudaMemcpyAsync(dst + (size_t)ptr * row_bytes, src + (size_t)done * row_bytes,
                                    (size_t)rows * row_bytes, cudaMemcpyDeviceToDevice, stream));
    ptr = (ptr + rows) % k;
    done += rows;
  }
  return ptr;
}

}  // namespace

int64_t enqueue(int64_t k, int64_t c, int64_t ptr, int64_t n, const float* keys, float* queue, cudaStream_t stream) {
  return enqueue_rows(k, c, ptr, n, keys, queue, sizeof(float), stream);
}

int64_t enqueue(int64_t k, int64_t c, int64_t ptr, int64_t n, const __nv_bfloat16* keys, __nv_bfloat16* queue,
                cudaStream_t stream) {
  return enqueue_rows(k, c, ptr, n, keys, queue, sizeof(__nv_bfloat16), stream);
}

}  // namespace moco::kernels
