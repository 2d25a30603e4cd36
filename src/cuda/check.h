// Checked CUDA, cuBLAS, cuDNN and NCCL calls: every return code is turned into a moco::Error naming the
// call, the code and the place.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include "moco/error.h"

#define MOCO_CUDA_CHECK(call)                                                                        \
  do {                                                                                               \
    cudaError_t err_ = (call);                                                                       \
    if (err_ != cudaSuccess)                                                                         \
      ::moco::fail(#call, " failed: ", cudaGetErrorString(err_), " at ", __FILE__, ":", __LINE__);  \
  } while (0)

#define MOCO_CUBLAS_CHECK(call)                                                                                \
  do {                                                                                                         \
    cublasStatus_t st_ = (call);                                                                               \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                          \
      ::moco::fail(#call, " failed: ", cublasGetStatusString(st_), " at ", __FILE__, ":", __LINE__);          \
  } while (0)

#define MOCO_CUDNN_CHECK(call)                                                                                 \
  do {                                                                                                         \
    cudnnStatus_t st_ = (call);                                                                                \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                                           \
      ::moco::fail(#call, " failed: ", cudnnGetErrorString(st_), " at ", __FILE__, ":", __LINE__);            \
  } while (0)

#define MOCO_NCCL_CHECK(call)                                                                                  \
  do {                                                                                                         \
    ncclResult_t st_ = (call);                                                                                 \
    if (st_ != ncclSuccess)                                                                                    \
      ::moco::fail(#call, " failed: ", ncclGetErrorString(st_), " at ", __FILE__, ":", __LINE__);             \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next unrelated call.
#define MOCO_CUDA_CHECK_LAUNCH() MOCO_CUDA_CHECK(cudaGetLastError())
