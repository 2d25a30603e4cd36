// Launcher for the row gather of the device permute_row_bytes (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// dst (rows, row_bytes) row i = src row index[i], rows of `row_bytes` bytes of any element type (fp32
// features, uint8 images); index (rows) is DEVICE memory and every entry must be a row of src (the caller
// checked them on the host). dst must not overlap src. CPU reference: the pack and unpack loops of
// Communicator::permute_rows (src/comm/communicator.cpp).
void gather_rows(const void* src, const int64_t* index, int64_t rows, int64_t row_bytes, void* dst,
                 cudaStream_t stream);

}  // namespace moco::kernels
