// The emulator itself (emu_runtime.h, emu_streams.h), before it is trusted with the kernels of kernels/: the
// builtin variables, barriers, warp shuffles, blocks and clusters run together, launch-configuration errors,
// stream ordering and the emulated cuBLAS GEMM, each against values worked out by hand. Tests show that a
// kernel missing a __syncthreads or a cluster barrier, or racing between blocks or clusters, computes a wrong
// answer here, and four that a missing stream wait or an early refill of page-locked memory does, which is
// what makes a passing test of the device code mean something. Translated like the kernels (translate_cu.py),
// so the launches below are written as on the device.
#include <cooperative_groups.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "../src/cuda/device_buffer.h"

using moco::cuda::DeviceBuffer;

namespace {

constexpr int kBlock = 64;  // two warps

__global__ void write_linear_ids(int* out) {  // out (grid threads)
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned id = bx * (blockDim.x * blockDim.y * blockDim.z) + tx;
  out[id] += (int)id + 1;  // += so that a thread run twice shows
}

// out[t] = in[n - 1 - t] through shared memory, with or without the barrier between the write and the read.
template <bool kBarrier>
__global__ void reverse_block(const int* in, int* out) {  // in, out (kBlock)
  __shared__ int s[kBlock];
  const int t = threadIdx.x;
  s[t] = in[t];
  if (kBarrier) __syncthreads();
  out[t] = s[kBlock - 1 - t];
}

// Reads its partner's slot, then overwrites its own slot: the second barrier (before the overwrite) is what
// keeps the partner's read valid.
template <bool kSecondBarrier>
__global__ void read_then_overwrite(int* out) {  // out (kBlock)
  __shared__ int s[kBlock];
  const int t = threadIdx.x;
  s[t] = t;
  __syncthreads();
  const int v = s[kBlock - 1 - t];
  if (kSecondBarrier) __syncthreads();
  s[t] = 1000 + t;
  __syncthreads();
  out[t] = v;
}

// Butterfly sum over segments of `width` lanes: every lane ends with its segment's sum.
__global__ void segment_sums(const float* in, float* out, int width) {  // in, out (blockDim.x)
  float v = in[threadIdx.x];
  for (int o = width / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, width);
  out[threadIdx.x] = v;
}

// The upper half-warp returns before a full-mask shuffle: undefined on the device.
__global__ void shuffle_after_partial_return(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

// Half a warp at a shuffle while the other half waits at __syncthreads: a deadlock on the device.
__global__ void shuffle_beside_barrier(float* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
  } else {
    __syncthreads();
  }
}

// Each thread: its block's rank in the cluster, the cluster's size, and what its block's shared memory holds
// after the whole cluster has written its own (the blocks of a cluster share a grid but not shared memory).
__global__ void cluster_identity(int* out) {  // out (grid threads)
  namespace cg = cooperative_groups;
  __shared__ int s[kBlock];
  const cg::cluster_group cluster = cg::this_cluster();
  s[threadIdx.x] = 100 * (int)blockIdx.x + (int)threadIdx.x;
  cluster.sync();
  const int mine = s[kBlock - 1 - threadIdx.x];
  out[blockIdx.x * kBlock + threadIdx.x] = 10000 * (int)cluster.block_rank() + 1000 * (int)cluster.num_blocks() +
                                           (mine == 100 * (int)blockIdx.x + kBlock - 1 - (int)threadIdx.x);
}

// Each block publishes a value in global memory and reads its cluster partner's (rank ^ 1), with or without the
// cluster barrier between the two.
template <bool kClusterSync>
__global__ void swap_with_partner(int* slots, int* out) {  // slots (grid blocks), out (grid blocks)
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const int partner = (int)blockIdx.x - (int)cluster.block_rank() + (int)(cluster.block_rank() ^ 1u);
  if (threadIdx.x == 0) slots[blockIdx.x] = 7 * (int)blockIdx.x + 1;
  if (kClusterSync) cluster.sync();
  if (threadIdx.x == 0) out[blockIdx.x] = slots[partner];
}

// Like swap_with_partner<true>, but the slots are indexed by the rank alone, so two clusters share them: a race
// between clusters on the device.
__global__ void swap_through_rank_slots(int* slots, int* out) {  // slots (cluster size), out (grid blocks)
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) slots[cluster.block_rank()] = 7 * (int)blockIdx.x + 1;
  cluster.sync();
  if (threadIdx.x == 0) out[blockIdx.x] = slots[cluster.block_rank() ^ 1u];
}

// Each block publishes its index in one global slot and reads it back after a barrier: a race between blocks.
__global__ void one_slot_for_all_blocks(int* slot, int* out) {  // slot (1), out (grid blocks)
  if (threadIdx.x == 0) slot[0] = (int)blockIdx.x + 1;
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = slot[0];
}

// Half the block at __syncthreads, the other half at the cluster barrier: a deadlock on the device.
__global__ void barriers_crossed(int* out) {
  if (threadIdx.x < 32)
    __syncthreads();
  else
    cooperative_groups::this_cluster().sync();
  out[0] = 1;
}

// Launches kernel over `blocks` blocks of `threads` in clusters of `cluster` blocks (cudaLaunchKernelEx).
template <class... P, class... A>
cudaError_t launch_clustered(void (*kernel)(P...), unsigned blocks, unsigned threads, unsigned cluster,
                             A... args) {
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = cluster;
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(threads);
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

__global__ void set_one(int* out) { out[0] = 1; }

__global__ void fill_ints(int* out, int n, int value) {  // out (n)
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}

__global__ void copy_ints(const int* in, int* out, int n) {  // in, out (n)
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i];
}

// Two streams and an event, released at the end.
struct TwoStreams {
  cudaStream_t a = nullptr, b = nullptr;
  cudaEvent_t done = nullptr;
  explicit TwoStreams(unsigned flags = cudaStreamDefault) {
    cudaStreamCreateWithFlags(&a, flags);
    cudaStreamCreateWithFlags(&b, flags);
    cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  }
  ~TwoStreams() {
    cudaEventDestroy(done);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
  }
};

constexpr int kInts = 100;

}  // namespace

TEST(CudaEmulator, EveryThreadOfA3dGridRunsOnceWithItsIndices) {
  const dim3 grid(3, 2, 2), block(5, 4, 3);
  const int total = 3 * 2 * 2 * 5 * 4 * 3;
  DeviceBuffer<int> out((size_t)total, "ids");
  out.fill_bytes(0);
  write_linear_ids<<<grid, block>>>(out.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> got = out.download();
  for (int i = 0; i < total; ++i) ASSERT_EQ(got[i], i + 1) << "thread " << i;
}

TEST(CudaEmulator, BarrierMakesSharedWritesVisibleAndItsAbsenceShows) {
  std::vector<int> in(kBlock);
  std::iota(in.begin(), in.end(), 7);
  DeviceBuffer<int> din(in, "in"), good(kBlock, "with barrier"), racy(kBlock, "without barrier");
  reverse_block<true><<<1, kBlock>>>(din.get(), good.get());
  reverse_block<false><<<1, kBlock>>>(din.get(), racy.get());
  const std::vector<int> g = good.download(), r = racy.download();
  int wrong = 0;
  for (int t = 0; t < kBlock; ++t) {
    EXPECT_EQ(g[t], in[kBlock - 1 - t]) << "t=" << t;
    wrong += r[t] != in[kBlock - 1 - t];
  }
  // Without the barrier, the first half reads slots their partners have not written yet.
  EXPECT_GE(wrong, kBlock / 2) << "the emulator hid a missing __syncthreads";
}

TEST(CudaEmulator, AMissingBarrierBeforeAnOverwriteShows) {
  DeviceBuffer<int> good(kBlock, "with barrier"), racy(kBlock, "without barrier");
  read_then_overwrite<true><<<1, kBlock>>>(good.get());
  read_then_overwrite<false><<<1, kBlock>>>(racy.get());
  const std::vector<int> g = good.download(), r = racy.download();
  int wrong = 0;
  for (int t = 0; t < kBlock; ++t) {
    EXPECT_EQ(g[t], kBlock - 1 - t) << "t=" << t;
    wrong += r[t] != kBlock - 1 - t;
  }
  // The phase after the first barrier runs the threads in descending order, so the low threads read slots
  // the high threads have already overwritten.
  EXPECT_GE(wrong, kBlock / 2) << "the emulator hid a missing __syncthreads";
}

TEST(CudaEmulator, ShuffleXorSumsWithinSegments) {
  std::vector<float> in(kBlock);
  for (int i = 0; i < kBlock; ++i) in[i] = (float)(i * i % 13);
  DeviceBuffer<float> din(in, "in");
  for (int width : {32, 16, 4}) {
    DeviceBuffer<float> out(kBlock, "sums");
    segment_sums<<<1, kBlock>>>(din.get(), out.get(), width);
    const std::vector<float> got = out.download();
    for (int i = 0; i < kBlock; ++i) {
      float want = 0;
      for (int j = i / width * width; j < (i / width + 1) * width; ++j) want += in[j];
      EXPECT_EQ(got[i], want) << "width " << width << " lane " << i;
    }
  }
}

TEST(CudaEmulatorDeathTest, UndefinedShufflesStopTheRun) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the CPU backend's thread pool may already be running
  DeviceBuffer<float> out(kBlock, "out");
  // (a launch runs when the host synchronises)
  EXPECT_DEATH({ shuffle_after_partial_return<<<1, 32>>>(out.get()); cudaDeviceSynchronize(); }, "has returned");
  EXPECT_DEATH({ shuffle_beside_barrier<<<1, 32>>>(out.get()); cudaDeviceSynchronize(); }, "waits at __syncthreads");
  EXPECT_DEATH({ segment_sums<<<1, 48>>>(out.get(), out.get(), 32); cudaDeviceSynchronize(); }, "partial warp");
}

TEST(CudaEmulator, BadLaunchConfigurationsAreReportedAndRunNothing) {
  DeviceBuffer<int> out(1, "out");
  out.fill_bytes(0);
  set_one<<<1, 1025>>>(out.get());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaGetLastError clears the error";
  set_one<<<dim3(1, 65536), 32>>>(out.get());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  set_one<<<0, 32>>>(out.get());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(out.download()[0], 0);
  set_one<<<1, 1024>>>(out.get());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out.download()[0], 1);
}

TEST(CudaEmulator, ClusterBlocksKnowTheirRankAndKeepTheirOwnSharedMemory) {
  DeviceBuffer<int> out((size_t)(6 * kBlock), "out");  // (6 blocks, kBlock)
  out.fill_bytes(0);
  ASSERT_EQ(launch_clustered(cluster_identity, 6, kBlock, 3, out.get()), cudaSuccess);
  const std::vector<int> got = out.download();
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < kBlock; ++t)
      ASSERT_EQ(got[(size_t)(b * kBlock + t)], 10000 * (b % 3) + 3000 + 1) << "block " << b << " thread " << t;
}

TEST(CudaEmulator, ClusterBarrierPublishesGlobalWritesAndItsAbsenceShows) {
  DeviceBuffer<int> slots(8, "slots"), out(8, "out");  // (8 blocks) each
  auto run = [&](auto kernel) {
    slots.fill_bytes(0xFF);  // -1: not yet published
    out.fill_bytes(0);
    EXPECT_EQ(launch_clustered(kernel, 8, kBlock, 4, slots.get(), out.get()), cudaSuccess);
    return out.download();
  };
  const std::vector<int> with = run(swap_with_partner<true>);
  for (int b = 0; b < 8; ++b) EXPECT_EQ(with[(size_t)b], 7 * (b ^ 1) + 1) << "block " << b;
  // without the barrier, a block that runs first reads its partner's slot before it is written
  const std::vector<int> without = run(swap_with_partner<false>);
  int unpublished = 0;
  for (int b = 0; b < 8; ++b) unpublished += without[(size_t)b] == -1;
  EXPECT_GT(unpublished, 0);
}

TEST(CudaEmulator, ClustersRunTogetherSoARaceBetweenThemShows) {
  DeviceBuffer<int> slots(4, "slots"), out(8, "out");  // (cluster size), (8 blocks)
  slots.fill_bytes(0xFF);
  out.fill_bytes(0);
  ASSERT_EQ(launch_clustered(swap_through_rank_slots, 8, kBlock, 4, slots.get(), out.get()), cudaSuccess);
  const std::vector<int> got = out.download();
  int others = 0;  // blocks that read another cluster's value instead of their partner's
  for (int b = 0; b < 8; ++b) others += got[(size_t)b] != 7 * (b ^ 1) + 1;
  EXPECT_GT(others, 0);
}

TEST(CudaEmulator, BlocksRunTogetherSoARaceBetweenThemShows) {
  DeviceBuffer<int> slot(1, "slot"), out(4, "out");  // (1), (4 blocks)
  out.fill_bytes(0);
  one_slot_for_all_blocks<<<4, kBlock>>>(slot.get(), out.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> got = out.download();
  int others = 0;  // blocks that read another block's index instead of their own
  for (int b = 0; b < 4; ++b) others += got[(size_t)b] != b + 1;
  EXPECT_GT(others, 0);
}

TEST(CudaEmulator, BadClusterConfigurationsAreReturnedAndRunNothing) {
  DeviceBuffer<int> out(1, "out");
  out.fill_bytes(0);
  EXPECT_EQ(launch_clustered(set_one, 6, 32, 4, out.get()), cudaErrorInvalidClusterSize)
      << "4 does not tile 6 blocks";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidClusterSize) << "a runtime call's error is also the last error";
  EXPECT_EQ(launch_clustered(set_one, 16, 32, 16, out.get()), cudaErrorInvalidClusterSize)
      << "more than the portable 8 blocks";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidClusterSize);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out.download()[0], 0);
  int clusters = 0;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = 8;
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(16);
  cfg.blockDim = dim3(512);
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  EXPECT_EQ(cudaOccupancyMaxActiveClusters(&clusters, set_one, &cfg), cudaSuccess);
  EXPECT_GE(clusters, 1);
}

TEST(CudaEmulatorDeathTest, CrossedBarriersStopTheRun) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DeviceBuffer<int> out(1, "out");
  EXPECT_DEATH({ launch_clustered(barriers_crossed, 2, kBlock, 2, out.get()); cudaDeviceSynchronize(); },
               "some threads wait at __syncthreads and the others at the cluster barrier");
}

// C = alpha * op(A) op(B) (+ beta * C), column-major, against products worked out by hand.
TEST(CudaEmulator, GemmFollowsCublasColumnMajorDefinition) {
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  // A (2, 3) column-major = [[1, 3, 5], [2, 4, 6]]; B (3, 2) = [[1, 0], [0, 1], [1, 1]]
  const float a[] = {1, 2, 3, 4, 5, 6}, b[] = {1, 0, 1, 0, 1, 1};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float c[] = {nan, nan, -1, nan, nan, -1};  // (2, 2) with ldc 3; the -1 rows must stay
  const float alpha = 2, beta = 0;
  ASSERT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &alpha, a, CUDA_R_32F, 2, b, CUDA_R_32F, 3, &beta, c,
                         CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the GEMM is queued; it runs now
  // A B = [[1 + 5, 3 + 5], [2 + 6, 4 + 6]] = [[6, 8], [8, 10]], times 2; beta = 0 ignores the NaNs
  const float want[] = {12, 16, -1, 16, 20, -1};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c[i], want[i]) << i;
  // op = T: A^T (3, 2) . A (2, 3) would need lda >= 2 for the stored (2, 3): C = A^T A (3, 3), beta = 1
  float ata[9];
  for (float& v : ata) v = 1;
  const float one = 1;
  ASSERT_EQ(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 3, 2, &one, a, CUDA_R_32F, 2, a, CUDA_R_32F, 2, &one, ata,
                         CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // (A^T A)[i][j] = <column i, column j> of A: columns (1,2), (3,4), (5,6)
  const float gram[] = {5, 11, 17, 11, 25, 39, 17, 39, 61};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(ata[i], gram[i] + 1) << i;
  // A leading dimension shorter than the stored rows is refused, as cuBLAS does.
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &alpha, a, CUDA_R_32F, 1, b, CUDA_R_32F, 3, &beta, c,
                         CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  // An operand of more than 2^31 - 1 values (ImageNet's kNN bank, 1281167 x 2048) is refused before anything is
  // read, where some cuBLAS kernels would fail at run time: moco must slice it.
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 1281167, 1, 2048, &alpha, a, CUDA_R_32F, 2048, b, CUDA_R_32F,
                         2048, &beta, c, CUDA_R_32F, 1281167, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  cublasDestroy(h);
}

// ---- stream ordering (emu_streams.h)

// Read after write: stream b copies what stream a fills. Without b waiting for a's event, the copy runs first.
TEST(CudaEmulatorStreams, AMissingWaitBeforeARead) {
  for (bool wait : {true, false}) {
    TwoStreams s;
    DeviceBuffer<int> x(kInts, "x"), y(kInts, "y");
    x.fill_bytes(0);
    fill_ints<<<1, 128, 0, s.a>>>(x.get(), kInts, 7);
    cudaEventRecord(s.done, s.a);
    if (wait) cudaStreamWaitEvent(s.b, s.done, 0);
    copy_ints<<<1, 128, 0, s.b>>>(x.get(), y.get(), kInts);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(y.download(), std::vector<int>(kInts, wait ? 7 : 0)) << (wait ? "with" : "without") << " the wait";
  }
}

// Write after read: stream b overwrites what stream a still has to read. Without the wait, the overwrite wins.
TEST(CudaEmulatorStreams, AMissingWaitBeforeAnOverwrite) {
  for (bool wait : {true, false}) {
    TwoStreams s;
    DeviceBuffer<int> x(std::vector<int>(kInts, 7), "x"), y(kInts, "y");
    copy_ints<<<1, 128, 0, s.a>>>(x.get(), y.get(), kInts);
    cudaEventRecord(s.done, s.a);
    if (wait) cudaStreamWaitEvent(s.b, s.done, 0);
    fill_ints<<<1, 128, 0, s.b>>>(x.get(), kInts, 9);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(y.download(), std::vector<int>(kInts, wait ? 7 : 9)) << (wait ? "with" : "without") << " the wait";
  }
}

// A host function runs in its stream's order: after the work queued before it, before the work after it
// (bench/gpu_bench.h holds the stream on one so that the timed work is queued before the device reaches it).
void record_first_value(void* arg) {
  auto* probe = static_cast<std::pair<const int*, int>*>(arg);
  probe->second = probe->first[0];  // emulated device memory is host memory
}
TEST(CudaEmulatorStreams, AHostFunctionRunsInStreamOrder) {
  TwoStreams s;
  DeviceBuffer<int> x(kInts, "x");
  x.fill_bytes(0);
  std::pair<const int*, int> probe{x.get(), -1};
  fill_ints<<<1, 128, 0, s.a>>>(x.get(), kInts, 4);
  ASSERT_EQ(cudaLaunchHostFunc(s.a, &record_first_value, &probe), cudaSuccess);
  fill_ints<<<1, 128, 0, s.a>>>(x.get(), kInts, 8);
  ASSERT_EQ(cudaStreamSynchronize(s.a), cudaSuccess);
  EXPECT_EQ(probe.second, 4);
  EXPECT_EQ(x.download(), std::vector<int>(kInts, 8));
  EXPECT_EQ(cudaLaunchHostFunc(s.a, nullptr, nullptr), cudaErrorInvalidValue);
}

// A copy from page-locked memory reads it when the copy runs, so refilling it before the copy's event has
// completed corrupts the upload; pageable memory is staged at the call, so the caller may reuse it at once.
TEST(CudaEmulatorStreams, PageLockedMemoryIsReadWhenTheCopyRuns) {
  TwoStreams s;
  DeviceBuffer<int> d(kInts, "d");
  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), kInts * sizeof(int)), cudaSuccess);
  std::fill(pinned, pinned + kInts, 5);
  cudaMemcpyAsync(d.get(), pinned, kInts * sizeof(int), cudaMemcpyHostToDevice, s.a);
  std::fill(pinned, pinned + kInts, 6);  // too early: the copy has not run
  cudaStreamSynchronize(s.a);
  EXPECT_EQ(d.download(), std::vector<int>(kInts, 6));
  cudaFreeHost(pinned);

  std::vector<int> pageable(kInts, 5);
  cudaMemcpyAsync(d.get(), pageable.data(), kInts * sizeof(int), cudaMemcpyHostToDevice, s.a);
  std::fill(pageable.begin(), pageable.end(), 6);  // allowed: the call staged it
  cudaStreamSynchronize(s.a);
  EXPECT_EQ(d.download(), std::vector<int>(kInts, 5));
}

// The blocking cudaMemcpy runs on the legacy default stream, which waits for earlier work on blocking streams
// but not on streams made with cudaStreamNonBlocking.
TEST(CudaEmulatorStreams, TheLegacyStreamJoinsOnlyBlockingStreams) {
  for (unsigned flags : {(unsigned)cudaStreamDefault, (unsigned)cudaStreamNonBlocking}) {
    TwoStreams s(flags);
    DeviceBuffer<int> x(kInts, "x");
    x.fill_bytes(0);
    fill_ints<<<1, 128, 0, s.a>>>(x.get(), kInts, 3);
    const int want = flags == cudaStreamNonBlocking ? 0 : 3;
    EXPECT_EQ(x.download(), std::vector<int>(kInts, want)) << "stream flags " << flags;
    cudaStreamSynchronize(s.a);
  }
}

// A query does not block: it lets one piece of queued work run and says whether the stream (or event) is done,
// so a host polling with a deadline sees the work finish.
TEST(CudaEmulatorStreams, QueriesLetTheDeviceProgress) {
  TwoStreams s;
  DeviceBuffer<int> x(kInts, "x");
  for (int v = 1; v <= 3; ++v) fill_ints<<<1, 128, 0, s.a>>>(x.get(), kInts, v);
  cudaEventRecord(s.done, s.a);
  EXPECT_EQ(cudaEventQuery(s.done), cudaErrorNotReady);
  int polls = 1;
  while (cudaStreamQuery(s.a) == cudaErrorNotReady) ASSERT_LT(++polls, 10);
  EXPECT_EQ(polls, 4) << "four pieces of work (three launches, a record), one per query, the event query's included";
  EXPECT_EQ(cudaEventQuery(s.done), cudaSuccess);
  EXPECT_EQ(x.download(), std::vector<int>(kInts, 3));
}

// The two shapes of a missing wait that one order alone does not cover (emu_streams.h). Both must give the
// right answer with the wait; without it, the order named catches it (ctest runs these under both orders).
//   behind: the late read on b sits behind earlier work on b   -> caught by the tail order
//   ahead:  the early write on a has later work behind it on a  -> caught by the head order (the default)
TEST(CudaEmulatorStreams, EachShapeOfAMissingWaitIsCaughtByOneOrder) {
  for (bool behind : {true, false})
    for (bool wait : {true, false}) {
      TwoStreams s;
      DeviceBuffer<int> x(kInts, "x"), y(kInts, "y"), other(kInts, "other");
      x.fill_bytes(0);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      if (behind) fill_ints<<<1, 128, 0, s.b>>>(other.get(), kInts, 1);  // earlier work on b
      fill_ints<<<1, 128, 0, s.a>>>(x.get(), kInts, 7);                  // the write
      cudaEventRecord(s.done, s.a);
      if (wait) cudaStreamWaitEvent(s.b, s.done, 0);
      copy_ints<<<1, 128, 0, s.b>>>(x.get(), y.get(), kInts);            // the read
      if (!behind) fill_ints<<<1, 128, 0, s.a>>>(other.get(), kInts, 2);  // later work on a
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<int> got = y.download();
      const char* shape = behind ? "behind" : "ahead";
      if (wait) {
        EXPECT_EQ(got, std::vector<int>(kInts, 7)) << shape << ", with the wait";
      } else if (behind == (cuda_emu::stream_order() == cuda_emu::StreamOrder::LatestTail)) {
        EXPECT_EQ(got, std::vector<int>(kInts, 0)) << shape << ": the order meant to catch it did not";
      }
    }
}
