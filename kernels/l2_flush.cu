// The benchmarks' L2 flush, second half: a streaming read of the flush buffer after its memset.
//
// What it computes: the XOR of every 32-bit word each thread reads, kept only in the one case in 2^32 where
// it equals a fixed value (so the loads stay). Fuses nothing. CPU reference: none (no result is kept).
//
// Why: bench/gpu_bench.h flushes L2 before each timed run by writing a buffer of twice L2's size. That leaves
// L2 full of dirty lines, and their write-back lands inside the next timed window: at 67 MB (the softmax-CE
// logits) it costs as much as a third of the kernel's own traffic, and a plain read of those bytes then
// measured 0.64 of the copy bandwidth on an H200 (bench/explore/softmax_forms.cu). Reading the buffer after
// the memset writes those lines back before the timing starts and leaves clean ones behind.
#include "../src/cuda/check.h"
#include "l2_flush.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kNeverExpected = 0x9e3779b9u;

__global__ void l2_flush_read_kernel(uint4* buf, size_t n16) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
    const uint4 v = buf[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == kNeverExpected) buf[0].x = acc;
}

}  // namespace

void l2_flush_read(void* buf, size_t bytes, cudaStream_t stream) {
  MOCO_CHECK(bytes % 16 == 0 && reinterpret_cast<uintptr_t>(buf) % 16 == 0,
             "l2_flush_read: needs a 16-byte aligned buffer of a multiple of 16 bytes, got ", bytes, " bytes");
  int dev = 0, sms = 0;
  MOCO_CUDA_CHECK(cudaGetDevice(&dev));
  MOCO_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  if (bytes == 0) return;
  // 8 blocks of 256 threads per SM: enough loads in flight to stream at the read bandwidth
  l2_flush_read_kernel<<<sms * 8, kThreads, 0, stream>>>(static_cast<uint4*>(buf), bytes / 16);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels
