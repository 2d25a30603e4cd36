#include <cstdio>

#include <cudnn.h>
#include <nccl.h>

#include "check.h"
#include "moco/cuda_runtime.h"

namespace moco::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later checks are not confused
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device (") + cudaGetErrorString(err) + ")";
  }
  return n == 0 ? "no CUDA device present" : "";
}

std::string device_description(int device) {
  cudaDeviceProp p{};
  MOCO_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
                (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

namespace {

// CUDA's 12040 as "12.4"; cuDNN 9's 91900 as "9.19.0"; NCCL's 22803 as "2.28.3" (2.8 and before: 2801).
std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string cudnn_version(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}
std::string nccl_version(int v) {
  if (v < 10000) return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 100) + "." + std::to_string(v % 100);
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}

}  // namespace

std::string library_versions() {
  int runtime = 0, driver = 0, nccl = 0;
  const bool have_runtime = cudaRuntimeGetVersion(&runtime) == cudaSuccess;
  const bool have_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0;
  cudaGetLastError();  // neither error is sticky; cleared so later checks are not confused
  const bool have_nccl = ncclGetVersion(&nccl) == ncclSuccess;
  std::string out = "CUDA runtime " + (have_runtime ? cuda_version(runtime) : std::string("?")) + " (driver " +
                    (have_driver ? cuda_version(driver) : std::string("none")) + "), cuDNN " +
                    cudnn_version(cudnnGetVersion()) + ", NCCL " + (have_nccl ? nccl_version(nccl) : std::string("?"));
  out += "; built against CUDA " + cuda_version(CUDART_VERSION) + ", cuDNN " + cudnn_version(CUDNN_VERSION) +
         ", NCCL " + nccl_version(NCCL_VERSION_CODE);
  return out;
}

}  // namespace moco::cuda
