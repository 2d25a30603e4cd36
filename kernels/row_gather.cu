// Row gather by index: the pack (rows grouped by destination rank) and the unpack (rows into batch order)
// around the all-to-all of the device permute_row_bytes.
//
// What it computes: dst[i, :] = src[index[i], :] for i < rows, rows of `row_bytes` bytes (fp32 features,
// uint8 key images: the copy does not care what the bytes hold).
// CPU reference: the memcpy loops of Communicator::permute_rows (src/comm/communicator.cpp), which pack with
// RowRoute::pack and unpack with RowRoute::unpack exactly as the device path does.
// Nothing is fused: it is a pure copy, so the measure is the fraction of copy bandwidth. Blocks along y take
// rows, blocks along x take spans of one row, so a 150,528-byte key image is spread over many blocks while a
// 512-byte feature row is one block; 16 or 4 bytes per thread when rows and pointers allow it, else 1.
#include "../src/cuda/check.h"
#include "row_gather.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocksX = 1024;
constexpr int64_t kMaxBlocksY = 65535;  // CUDA's limit for gridDim.y; more rows are strided

template <class V>
__global__ void gather_rows_kernel(const V* __restrict__ src,          // (?, row_v)
                                   const int64_t* __restrict__ index,  // (rows)
                                   int64_t rows, int64_t row_v,
                                   V* __restrict__ dst) {              // (rows, row_v)
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.y; i < rows; i += gridDim.y) {
    const V* s = src + index[i] * row_v;
    V* d = dst + i * row_v;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < row_v; c += step) d[c] = s[c];
  }
}

// Rows of `bytes` bytes at p and q can move in units of `unit` bytes.
bool fits(const void* p, const void* q, int64_t bytes, int64_t unit) {
  return bytes % unit == 0 && reinterpret_cast<uintptr_t>(p) % unit == 0 && reinterpret_cast<uintptr_t>(q) % unit == 0;
}

template <class V>
void launch(const V* src, const int64_t* index, int64_t rows, int64_t row_v, V* dst, cudaStream_t stream) {
  int64_t bx = (row_v + kThreads - 1) / kThreads;
  if (bx > kMaxBlocksX) bx = kMaxBlocksX;
  const dim3 grid((unsigned)bx, (unsigned)(rows < kMaxBlocksY ? rows : kMaxBlocksY));
  gather_rows_kernel<V><<<grid, kThreads, 0, stream>>>(src, index, rows, row_v, dst);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gather_rows(const void* src, const int64_t* index, int64_t rows, int64_t row_bytes, void* dst,
                 cudaStream_t stream) {
  MOCO_CHECK(rows >= 0 && row_bytes >= 0, "gather_rows: ", rows, " rows of ", row_bytes, " bytes; expected sizes >= 0");
  if (rows == 0 || row_bytes == 0) return;
  if (fits(src, dst, row_bytes, 16))
    launch(static_cast<const uint4*>(src), index, rows, row_bytes / 16, static_cast<uint4*>(dst), stream);
  else if (fits(src, dst, row_bytes, 4))
    launch(static_cast<const uint32_t*>(src), index, rows, row_bytes / 4, static_cast<uint32_t*>(dst), stream);
  else
    launch(static_cast<const uint8_t*>(src), index, rows, row_bytes, static_cast<uint8_t*>(dst), stream);
}

}  // namespace moco::kernels
