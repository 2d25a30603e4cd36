// The CUDA device runtime seen from host code: device discovery, checked calls, device memory.
// Everything here compiles only with the CUDA backend (MOCO_HAVE_CUDA).
#pragma once
#include <cstddef>
#include <string>

#include "moco/arena.h"

namespace moco::cuda {

// Number of usable CUDA devices; 0 (never an exception) when there is no driver or no GPU.
int device_count();
// Why no device can be used ("no CUDA driver", "0 devices", ...), or "" when one can.
std::string no_device_reason();
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB".
std::string device_description(int device);

// A device arena: the same sizing-then-freeze discipline as the host arena, over cudaMalloc.
Arena device_arena();

void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void synchronize();

}  // namespace moco::cuda
