// Shared by the gpu-labelled tests: skip, saying why, when there is no device.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "../../src/cuda/check.h"
#include "moco/cuda_runtime.h"

// Whether device 0 is the CUDA emulator (tests/cuda_emu), where a test may check what only the emulator can
// arrange (a refused engine, a failing search) or expect its exact sums. Call after MOCO_REQUIRE_GPU.
inline bool on_the_emulator() {
  return ::moco::cuda::device_description(0).find("emulator") != std::string::npos;
}

// Buffers filled on the legacy default stream (DeviceBuffer's upload and poison: cudaMemcpy from pageable
// memory, cudaMemset) may still be landing when the call returns, and non-blocking streams (a communicator's,
// the step's) do not wait for it: the device finishes them before such a stream reads or writes the buffers.
inline void buffers_ready() { MOCO_CUDA_CHECK(cudaDeviceSynchronize()); }

#define MOCO_REQUIRE_GPU()                                                   \
  do {                                                                       \
    std::string reason_ = ::moco::cuda::no_device_reason();                  \
    if (!reason_.empty()) GTEST_SKIP() << "gpu test skipped: " << reason_;   \
  } while (0)
