// Launcher for the benchmarks' L2 flush read (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moco::kernels {

// Reads `bytes` (a multiple of 16) of device memory at `buf` (16-byte aligned) once, so that L2 ends up
// holding clean lines of it: a timed kernel after it pays for its own traffic only, not for writing back
// what an earlier kernel left dirty in L2. Nothing is written unless a checksum hits one value in 2^32,
// when the first word of `buf` is overwritten (so the compiler cannot drop the reads). CPU reference: none;
// it computes nothing a caller keeps.
void l2_flush_read(void* buf, size_t bytes, cudaStream_t stream);

}  // namespace moco::kernels
