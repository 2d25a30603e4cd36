// The runtime and cuBLAS calls of the emulated kernel tests (include/cuda_runtime.h, include/cublas_v2.h):
// device memory is host memory, asynchronous calls are queued on their stream (emu_streams.h), and the GEMM
// is the textbook loop over cuBLAS's column-major definition.
#include <cstdint>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "include/cublas_v2.h"
#include "include/cuda_bf16.h"
#include "include/cuda_runtime.h"
#include "emu_runtime.h"
#include "emu_streams.h"

namespace {

constexpr size_t kDeviceBytes = size_t(16) << 30;  // what cudaMemGetInfo reports as the device's total

// Live device allocations and their sizes, for cudaMemGetInfo and to refuse freeing what was not allocated;
// pinned host allocations, for cudaPointerGetAttributes.
struct Allocations {
  std::mutex mu;
  std::unordered_map<void*, size_t> sizes;  // device
  std::map<const char*, size_t> pinned;     // start -> bytes
  size_t live = 0;
};
Allocations& allocations() {
  static Allocations a;
  return a;
}

// Allocations are whole 256-byte blocks, 256-byte aligned like cudaMalloc's (the launchers' vector paths rely
// on 16); a zero-byte request still gets one block, so it has a distinct address.
size_t block_bytes(size_t bytes) { return bytes == 0 ? 256 : (bytes + 255) / 256 * 256; }

}  // namespace

cudaError_t cudaMalloc(void** p, size_t bytes) {
  const size_t rounded = block_bytes(bytes);
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  if (a.live + rounded > kDeviceBytes) return cudaErrorMemoryAllocation;
  *p = std::aligned_alloc(256, rounded);
  if (!*p) return cudaErrorMemoryAllocation;
  a.sizes[*p] = rounded;
  a.live += rounded;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  cuda_emu::sync_device();  // cudaFree synchronises the device: queued work may still use p
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.sizes.find(p);
  if (it == a.sizes.end()) return cudaErrorInvalidValue;  // as the device does for a pointer it did not allocate
  a.live -= it->second;
  a.sizes.erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  *free_bytes = kDeviceBytes - a.live;
  *total_bytes = kDeviceBytes;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  const size_t rounded = block_bytes(bytes);
  *p = std::aligned_alloc(256, rounded);
  if (!*p) return cudaErrorMemoryAllocation;
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  a.pinned[static_cast<const char*>(*p)] = rounded;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  cuda_emu::sync_device();  // as cudaFree
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  if (a.pinned.erase(static_cast<const char*>(p)) == 0) return cudaErrorInvalidValue;
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* p) {
  *attr = cudaPointerAttributes{cudaMemoryTypeUnregistered, -1, nullptr, nullptr};
  const char* c = static_cast<const char*>(p);
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.pinned.upper_bound(c);
  if (it != a.pinned.begin() && c < (--it)->first + it->second) {
    *attr = cudaPointerAttributes{cudaMemoryTypeHost, 0, const_cast<void*>(p), const_cast<void*>(p)};
    return cudaSuccess;
  }
  for (const auto& [start, bytes] : a.sizes) {
    const char* s0 = static_cast<const char*>(start);
    if (c >= s0 && c < s0 + bytes) {
      *attr = cudaPointerAttributes{cudaMemoryTypeDevice, 0, const_cast<void*>(p), nullptr};
      break;
    }
  }
  return cudaSuccess;
}

namespace {

cudaMemoryType memory_type(const void* p) {
  cudaPointerAttributes a;
  cudaPointerGetAttributes(&a, p);
  return a.type;
}
// Ordinary host memory: neither a device allocation nor page-locked.
bool pageable(const void* p) { return memory_type(p) == cudaMemoryTypeUnregistered; }
bool device_memory(const void* p) { return memory_type(p) == cudaMemoryTypeDevice; }

}  // namespace

// ---- the devices: one by default; MOCO_EMU_DEVICES=<n> shows n, so that n ranks under mpirun can each
// select their own (local rank = device), as on a node with n GPUs. Each rank is its own process, so the
// devices share nothing but their number. MOCO_EMU_DEVICES=0 shows none, as a machine without a GPU
// (cudaGetDeviceCount: cudaErrorNoDevice).
namespace {

int emulated_devices() {
  static const int n = [] {
    const char* e = std::getenv("MOCO_EMU_DEVICES");
    const int v = e ? std::atoi(e) : 1;
    return v >= 0 && v <= 64 ? v : 1;
  }();
  return n;
}
thread_local int current_device = 0;  // cudaSetDevice is per host thread
bool valid_device(int device) { return device >= 0 && device < emulated_devices(); }

}  // namespace

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (!version) return cudaErrorInvalidValue;
  *version = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) { return cudaRuntimeGetVersion(version); }

cudaError_t cudaGetDeviceCount(int* count) {
  *count = emulated_devices();
  return *count == 0 ? cudaErrorNoDevice : cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (!valid_device(device)) return cudaErrorInvalidDevice;
  current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!valid_device(device)) return cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "CUDA kernel emulator (tests/cuda_emu)");
  prop->totalGlobalMem = kDeviceBytes;
  prop->major = 9;  // the limits it checks are sm_90's
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!valid_device(device)) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 1; return cudaSuccess;
    case cudaDevAttrL2CacheSize: *value = 50 * 1024 * 1024; return cudaSuccess;  // an H100's 50 MiB
  }
  return cudaErrorInvalidValue;
}

// ---- streams and events: queued work, run in the most hostile legal order (emu_streams.h)
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = cuda_emu::create_stream(flags, current_device);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return cudaErrorInvalidResourceHandle;
  cuda_emu::destroy_stream(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return cuda_emu::poll_stream(stream) ? cuda_emu::peek_last_error() : cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (!event) return cudaErrorInvalidResourceHandle;
  cuda_emu::wait_event(stream, event);
  return cudaSuccess;
}
cudaError_t cudaStreamGetDevice(cudaStream_t stream, int* device) {
  *device = stream ? cuda_emu::stream_device(stream) : current_device;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  *event = cuda_emu::create_event(flags);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return cudaErrorInvalidResourceHandle;
  cuda_emu::destroy_event(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return cudaErrorInvalidResourceHandle;
  cuda_emu::record_event(event, stream);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event) return cudaErrorInvalidResourceHandle;
  return cuda_emu::poll_event(event) ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return cudaErrorInvalidResourceHandle;
  cuda_emu::sync_event(event);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end) return cudaErrorInvalidResourceHandle;
  // as the device: timing needs two events made without cudaEventDisableTiming whose records have completed
  if ((cuda_emu::event_flags(start) | cuda_emu::event_flags(end)) & cudaEventDisableTiming)
    return cudaErrorInvalidResourceHandle;
  return cuda_emu::elapsed_ms(start, end, ms) ? cudaSuccess : cudaErrorNotReady;
}

namespace {

// A copy from pageable memory: the bytes are staged now (the caller may reuse src at once), the copy queued.
void queue_staged_copy(cudaStream_t stream, void* dst, const void* src, size_t bytes) {
  auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
  cuda_emu::enqueue(stream, [=] { std::memcpy(dst, staged->data(), bytes); });
}

}  // namespace

// Copies: pageable host memory is staged (read) at the call and written before it returns, as CUDA does;
// device and page-locked memory are touched only when the copy runs.
//
// The "synchronous" cudaMemcpy and cudaMemset run on the legacy default stream, and CUDA documents how far
// they are synchronous with the host: a copy device to device, a memset of device memory, and the DMA of a
// copy from pageable memory (staged after the legacy stream's earlier work) may still be running when they
// return. So here they stay queued, and a kernel on a non-blocking stream that uses their result without a
// synchronisation first reads what was there before. Copies to the host, and from page-locked memory, have
// finished when they return.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes == 0) return cudaSuccess;
  if (device_memory(dst) && device_memory(src)) {
    cuda_emu::enqueue(nullptr, [=] { std::memmove(dst, src, bytes); });
  } else if (device_memory(dst) && pageable(src)) {
    cuda_emu::sync_stream(nullptr);
    queue_staged_copy(nullptr, dst, src, bytes);
  } else {
    cuda_emu::run_blocking(nullptr, [=] { std::memmove(dst, src, bytes); });
  }
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (pageable(dst)) {
    cuda_emu::run_blocking(stream, [=] { std::memmove(dst, src, bytes); });
  } else if (pageable(src)) {
    queue_staged_copy(stream, dst, src, bytes);
  } else {
    cuda_emu::enqueue(stream, [=] { std::memmove(dst, src, bytes); });
  }
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (device_memory(p))
    cuda_emu::enqueue(nullptr, [=] { std::memset(p, value, bytes); });
  else
    cuda_emu::run_blocking(nullptr, [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (bytes) cuda_emu::enqueue(stream, [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (!fn) return cudaErrorInvalidValue;
  cuda_emu::enqueue(stream, [=] { fn(user_data); });
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  cuda_emu::sync_device();
  return cuda_emu::peek_last_error();
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  cuda_emu::sync_stream(stream);
  return cuda_emu::peek_last_error();
}
cudaError_t cudaGetLastError() { return cuda_emu::take_last_error(); }
cudaError_t cudaPeekAtLastError() { return cuda_emu::peek_last_error(); }
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidClusterSize: return "invalid cluster size";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
  }
  return "unknown error";
}

// ---- cuBLAS
struct cublasContext {
  cublasPointerMode_t mode = CUBLAS_POINTER_MODE_HOST;
  cudaStream_t stream = nullptr;  // where calls are queued
};

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

namespace {

double element(const void* base, cudaDataType_t type, long long index) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[index];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
}

}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* a, cudaDataType_t atype, int lda, const void* b,
                            cudaDataType_t btype, int ldb, const void* beta, void* c, cudaDataType_t ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (handle->mode != CUBLAS_POINTER_MODE_HOST) return CUBLAS_STATUS_NOT_SUPPORTED;  // alpha/beta read as host
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  // A is stored (m, k) column-major for OP_N, (k, m) for OP_T; B (k, n) or (n, k); C (m, n).
  const int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
  if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1))
    return CUBLAS_STATUS_INVALID_VALUE;
  // An operand spanning more than 2^31 - 1 values: some cuBLAS kernels index it with 32 bits and fail at run
  // time, so the emulator refuses it outright (moco slices such operands, cuda::bank_similarities).
  const long long a_cols = transa == CUBLAS_OP_N ? k : m, b_cols = transb == CUBLAS_OP_N ? n : k;
  if ((long long)lda * a_cols > INT32_MAX || (long long)ldb * b_cols > INT32_MAX || (long long)ldc * n > INT32_MAX)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  // the combinations cuBLAS documents for CUBLAS_COMPUTE_32F that moco uses: A = B = fp32 or bf16, C fp32 or
  // (with bf16 inputs) bf16
  if (compute != CUBLAS_COMPUTE_32F || atype != btype || (ctype == CUDA_R_16BF && atype != CUDA_R_16BF))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  // host pointer mode: alpha and beta are read at the call, the matrices when the GEMM runs
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  cuda_emu::enqueue(handle->stream, [=] {
    if (cuda_emu::count_only()) return;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l) {
          const long long ai = transa == CUBLAS_OP_N ? i + (long long)l * lda : l + (long long)i * lda;
          const long long bi = transb == CUBLAS_OP_N ? l + (long long)j * ldb : j + (long long)l * ldb;
          acc += element(a, atype, ai) * element(b, btype, bi);
        }
        const long long ci = i + (long long)j * ldc;
        // beta = 0: C is not read (it may hold NaN)
        const float v = be == 0.f ? (float)(al * acc) : (float)(al * acc + be * element(c, ctype, ci));
        if (ctype == CUDA_R_32F) static_cast<float*>(c)[ci] = v;
        else static_cast<__nv_bfloat16*>(c)[ci] = __float2bfloat16_rn(v);
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}

size_t cuda_emu::device_bytes_from(const void* p) {
  Allocations& a = allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  const char* q = static_cast<const char*>(p);
  for (const auto& [base, bytes] : a.sizes) {
    const char* b = static_cast<const char*>(base);
    if (q >= b && q < b + bytes) return (size_t)(b + bytes - q);
  }
  return 0;
}
