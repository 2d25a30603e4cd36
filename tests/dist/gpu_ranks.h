// Helpers of the dist tests on GPU ranks (one GPU per rank): each rank's own device, and a stream on it.
#pragma once
#include <gtest/gtest.h>

#include "../../src/cuda/check.h"
#include "../../src/cuda/device_communicator.h"
#include "dist_common.h"

namespace moco::test {

// Each rank takes its own GPU (by the launcher's local rank) before any stream is made: streams belong to the
// device current at their creation. Returns how many ranks found none, the same count on every rank, so that
// all of them stop together instead of the others waiting for the missing one inside NCCL's set-up. A rank
// without its GPU reports why as a test failure.
inline int ranks_without_their_gpu(MpiCommunicator& host, const LaunchInfo& li) {
  float missing = 0;
  try {
    cuda::select_device(li);
  } catch (const Error& e) {
    ADD_FAILURE() << e.what();
    missing = 1;
  }
  host.all_reduce_sum(&missing, 1);
  return (int)missing;
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
};

}  // namespace moco::test
