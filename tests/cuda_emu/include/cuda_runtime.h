// Stand-in for CUDA's <cuda_runtime.h> in the emulated kernel tests (tests/cuda_emu): the function-space
// qualifiers, the builtin variables, the intrinsics the kernels use, and the few runtime calls that the
// kernels, their launchers and the gpu tests make. It is found before the toolkit's header only by the
// emulator's targets; see ../emu_runtime.h for what the emulation models.
#pragma once
#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../emu_runtime.h"
#include "../emu_types.h"

#define CUDART_VERSION 13000  // the runtime the emulator stands in for (its API, not its behaviour in full)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// The block's threads are fibers of one host thread, so a function-local static is shared by exactly them.
#define __shared__ static thread_local

#define threadIdx (::cuda_emu::thread_idx())
#define blockIdx (::cuda_emu::block_idx())
// The same for every thread of a launch, so plain variables that the scheduler sets; not macros, which would
// also rewrite cudaLaunchConfig_t's fields of the same names.
extern thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;

inline void __syncthreads() { ::cuda_emu::sync_threads(); }

template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return ::cuda_emu::shfl_xor(mask, var, lane_mask, width);
}

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
// Cache-hinted global loads and stores (ld/st.global.cs: streamed, evicted from L2 first; ld.global.cg: cached
// in L2 only, never in the SM's L1): plain accesses here, where there is no cache to steer.
template <class T>
T __ldcs(const T* p) {
  return *p;
}
template <class T>
T __ldcg(const T* p) {
  return *p;
}
template <class T>
void __stcs(T* p, T v) {
  *p = v;
}
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
// Rounded separately, never fused (the host compiler targets baseline x86-64, which has no FMA to contract to).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
// Integer atomics: CUDA threads here switch only at barriers and shuffles, so a read-modify-write is never
// interleaved with another thread's and is atomic as it stands. The order in which threads arrive still varies
// (emu_runtime.h), so code that depends on it shows.
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}

// CUDA's global min/max overloads, which device code calls unqualified (the usual arithmetic conversions
// pick the common type, as CUDA's overload set does for the mixes the kernels use).
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
constexpr std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
constexpr std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

// ---- runtime calls (emu_cuda_api.cpp): memory is host memory, every call is synchronous.
cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
// Pinned host memory is ordinary host memory here.
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
constexpr unsigned cudaHostAllocDefault = 0, cudaHostAllocPortable = 1;
// What a pointer is: the emulator remembers its pinned and device allocations (interior pointers included).
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* p);

// ---- the one emulated device (index 0)
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor;
  int multiProcessorCount;
  int warpSize;
  int maxThreadsPerBlock;
};
cudaError_t cudaGetDeviceCount(int* count);
// CUDART_VERSION for both: the emulator is its own driver.
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
enum cudaDeviceAttr { cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMultiProcessorCount = 16, cudaDevAttrL2CacheSize = 38 };
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);

// ---- streams and events: work completes when it is issued, so every query says done
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaStreamGetDevice(cudaStream_t stream, int* device);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t event);
// A host function run in stream order: the stream's later work waits until it returns.
#define CUDART_CB
typedef void (*cudaHostFn_t)(void* user_data);
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
// Host time between the two records (the emulator's time, not a GPU's).
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t err);

// ---- launches with attributes: thread block clusters (sm_90). Only the cluster dimension is modelled; a
// programmatic dependent launch (sm_90) is accepted and runs as an ordinary one, after the launch before it,
// which is one of the orders the device may take (griddepcontrol is device code the emulator never compiles).
enum cudaLaunchAttributeID {
  cudaLaunchAttributeClusterDimension = 4,
  cudaLaunchAttributeProgrammaticStreamSerialization = 6
};
union cudaLaunchAttributeValue {
  struct {
    unsigned x, y, z;
  } clusterDim;
  int programmaticStreamSerializationAllowed;
  char pad[64];
};
struct cudaLaunchAttribute {
  cudaLaunchAttributeID id;
  cudaLaunchAttributeValue val;
};
struct cudaLaunchConfig_t {
  dim3 gridDim, blockDim;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  cudaLaunchAttribute* attrs;
  unsigned numAttrs;
};
namespace cuda_emu {
inline LaunchConfig launch_config_of(const cudaLaunchConfig_t& c) {
  LaunchConfig cfg(c.gridDim, c.blockDim, c.dynamicSmemBytes, c.stream);
  for (unsigned i = 0; i < c.numAttrs; ++i)
    if (c.attrs[i].id == cudaLaunchAttributeClusterDimension) {
      const auto& d = c.attrs[i].val.clusterDim;
      cfg.cluster = dim3(d.x, d.y, d.z);
    }
  return cfg;
}
}  // namespace cuda_emu
// A bad configuration (a cluster that does not tile the grid, or more than 8 blocks: cudaErrorInvalidClusterSize)
// runs nothing and is returned, and, like any runtime call's error, also kept for cudaGetLastError().
template <class... P, class... A>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(P...), A&&... args) {
  const cuda_emu::LaunchConfig cfg = cuda_emu::launch_config_of(*config);
  if (!cuda_emu::launch_ok(cfg)) return cuda_emu::peek_last_error();
  cuda_emu::launch(kernel, cfg, std::forward<A>(args)...);
  return cudaSuccess;
}
// How many such clusters fit on the device at once: here any valid configuration fits, one at a time.
template <class T>
cudaError_t cudaOccupancyMaxActiveClusters(int* clusters, T* /*kernel*/, const cudaLaunchConfig_t* config) {
  if (!cuda_emu::launch_ok(cuda_emu::launch_config_of(*config))) return cuda_emu::peek_last_error();
  *clusters = 1;
  return cudaSuccess;
}
// What a kernel was compiled for: the emulator stands in for sm_90 code.
struct cudaFuncAttributes {
  int binaryVersion, ptxVersion;
};
template <class T>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* /*kernel*/) {
  attr->binaryVersion = attr->ptxVersion = 90;
  return cudaSuccess;
}
