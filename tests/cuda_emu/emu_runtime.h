// The CUDA kernel emulator: runs the kernels of kernels/ on the CPU, one fiber per CUDA thread, so that the
// GPU kernels can be checked against their CPU twins on a machine without a GPU (CI) before they ever run on
// one. It is a test tool, not a backend: the product never links it.
//
// What it models, and how:
// - A launch runs its blocks two at a time, or its thread block clusters (cudaLaunchKernelEx) two at a time, so
//   that two blocks or clusters racing on one global slot show. Every CUDA thread is a fiber (ucontext) with its
//   own threadIdx; they run one at a time on the calling host thread and switch only at barriers and at warp
//   shuffles, so a run is deterministic.
// - __syncthreads() is a barrier over the block's threads that have not returned (Volta and later), and
//   cooperative_groups::this_cluster().sync() one over the cluster's. Distributed shared memory (one block
//   reading another's) is not modelled: the kernels exchange through global memory.
// - __shfl_xor_sync() is an exchange among the 32 lanes of a warp. A lane named by the mask that has returned,
//   does not exist (a partial warp) or is waiting at __syncthreads instead is undefined behaviour on the
//   device; here it stops the program with a message.
// - Between two barriers the threads run in ascending order, and between the next two in descending order,
//   and so on (in a cluster, the blocks too). A missing barrier therefore shows: a thread reads a shared slot
//   (or, in a cluster, a global one) its neighbour has not yet written (or has already overwritten), whichever
//   direction that needs.
// - __shared__ variables become per-host-thread statics: the block's threads share them. Each is filled with
//   0xFF bytes (NaN, or -1) when the first thread of a block reaches it, so a read of shared memory that the
//   block has not written gives garbage, as on the device, instead of the previous block's values. The blocks of
//   a cluster take turns in the statics: each switch saves one block's values and restores the next one's.
// - Launch configurations are checked against the device's limits (block size, grid size, shared memory) and a
//   bad one is reported by the next cudaGetLastError(), as on the device, without running anything.
// - Device memory is host memory from malloc, so AddressSanitizer sees out-of-bounds kernel accesses.
//
// - A launch is queued on its stream and runs when the host next needs its result (emu_streams.h), in the most
//   hostile order that stream order and events allow.
//
// What it does not model: concurrency between blocks beyond the two that run together, the memory model, two pieces
// of stream work overlapping in time (they run one at a time, in an adversarial order), device-side rounding of expf/logf (host libm is used; the tests' tolerances
// cover both), and tensor-core accumulation order in the emulated cuBLAS.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu_streams.h"
#include "emu_types.h"

namespace cuda_emu {

struct LaunchConfig {
  dim3 grid, block;
  size_t dynamic_smem;
  cudaStream_t stream;
  dim3 cluster{1, 1, 1};  // blocks per thread block cluster (cudaLaunchKernelEx's attribute)
  LaunchConfig(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr)
      : grid(g), block(b), dynamic_smem(smem), stream(s) {}
};

// threadIdx and blockIdx of the running CUDA thread. Outside a kernel they stop the program.
const uint3& thread_idx();
const uint3& block_idx();

// __syncthreads(): wait until every thread of the block that has not returned is here.
void sync_threads();
// cooperative_groups::this_cluster(): sync() waits until every thread of the cluster that has not returned is
// there; the block's rank in its cluster, and the cluster's number of blocks.
void sync_cluster();
unsigned cluster_block_rank();
unsigned cluster_blocks();

// One warp exchange: this lane offers its 8-byte value, and receives the value of lane `src` once every lane of
// `mask` has offered one. Stops the program on the undefined cases described at the top.
uint64_t warp_exchange(unsigned mask, uint64_t mine, int src_lane);
int lane_id();

// Called after each __shared__ declaration (translate_cu.py adds the call): fills it with 0xFF bytes the first
// time a thread of the current block gets there.
void fresh_shared(void* p, size_t bytes);

// Checks a launch configuration against the device's limits; a bad one is recorded for cudaGetLastError().
bool launch_ok(const LaunchConfig& cfg);

// Runs body once per CUDA thread of the grid (the configuration already checked).
void run_grid(const LaunchConfig& cfg, const std::function<void()>& body);

// MOCO_EMU_COUNT_ONLY=1: kernels, convolutions and GEMMs are checked, queued and ordered as always but compute
// nothing, so a full-size step takes seconds and what it allocates is exactly what the same code allocates on
// a GPU; every value it computes is garbage. For memory studies (`moco_emu bench`), never for tests.
bool count_only();

// What a kernel launch `kernel<<<cfg>>>(args...)` becomes (translate_cu.py writes these calls). The
// arguments are converted to the kernel's parameter types once, at the launch, as a launch copies them; the
// grid runs later on its stream.
template <class... P, class... A>
void launch(void (*kernel)(P...), const LaunchConfig& cfg, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  if (!launch_ok(cfg)) return;
  auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
  enqueue(cfg.stream, [kernel, cfg, params] { run_grid(cfg, [&] { std::apply(kernel, *params); }); });
}

// Errors recorded by launches, returned and cleared by cudaGetLastError().
cudaError_t take_last_error();
cudaError_t peek_last_error();

template <class T>
T shfl_xor(unsigned mask, T var, int lane_mask, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  const int lane = lane_id();
  int src = lane ^ lane_mask;
  if (src / width != lane / width) src = lane;  // outside this lane's segment of `width`: its own value
  bits = warp_exchange(mask, bits, src);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace cuda_emu
