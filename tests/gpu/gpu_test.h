// Shared by the gpu-labelled tests: skip, saying why, when there is no device.
#pragma once
#include <gtest/gtest.h>

#include "moco/cuda_runtime.h"

#define MOCO_REQUIRE_GPU()                                                   \
  do {                                                                       \
    std::string reason_ = ::moco::cuda::no_device_reason();                  \
    if (!reason_.empty()) GTEST_SKIP() << "gpu test skipped: " << reason_;   \
  } while (0)
