// Launcher for the row gather of the device permute_rows (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// dst (rows, row) row i = src row index[i]; index (rows) is DEVICE memory and every entry must be a row of
// src (the caller checked them on the host). dst must not overlap src. CPU reference: the pack and unpack
// loops of Communicator::permute_rows (src/comm/communicator.cpp).
void gather_rows(const float* src, const int64_t* index, int64_t rows, int64_t row, float* dst, cudaStream_t stream);

}  // namespace moco::kernels
