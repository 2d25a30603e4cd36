// The page-locked host memory of src/cuda/pinned_host.h. make_pinned_pool, the home of `moco train`'s batches:
// its tensors are pinned host memory that a copy on a non-blocking stream reads correctly, blocks come back
// when a tensor dies and are reused by size, and a thread that never chose a device allocates for the pool's
// device. PinnedUploads: a staging slot is not refilled before its copy has read it.
#include <cuda_runtime.h>

#include <thread>
#include <vector>

#include "../../src/cuda/check.h"
#include "../../src/cuda/device_buffer.h"
#include "../../src/cuda/pinned_host.h"
#include "gpu_test.h"

using namespace moco;

TEST(GpuPinnedPool, TensorsArePinnedRecycledAndCopyAsynchronously) {
  MOCO_REQUIRE_GPU();
  auto pool = cuda::make_pinned_pool(0);
  const Shape shape{3, 3, 5, 7};  // (N, 3, H, W), an odd size
  const size_t n = (size_t)shape_numel(shape);
  void* first = nullptr;
  {
    Tensor t = pool->take(shape, DType::F32);
    first = t.raw();
    cudaPointerAttributes attr{};
    MOCO_CUDA_CHECK(cudaPointerGetAttributes(&attr, t.raw()));
    EXPECT_EQ(attr.type, cudaMemoryTypeHost) << "the pool's tensor is not page-locked";
    for (size_t i = 0; i < n; ++i) t.data<float>()[i] = 0.5f * (float)i - 3.f;
    // the copy the step does: async on a non-blocking stream, then read back
    cudaStream_t s = nullptr;
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float* dev = nullptr;
    MOCO_CUDA_CHECK(cudaMalloc(&dev, t.nbytes()));
    MOCO_CUDA_CHECK(cudaMemcpyAsync(dev, t.raw(), t.nbytes(), cudaMemcpyHostToDevice, s));
    std::vector<float> back(n);
    MOCO_CUDA_CHECK(cudaMemcpyAsync(back.data(), dev, t.nbytes(), cudaMemcpyDeviceToHost, s));
    MOCO_CUDA_CHECK(cudaStreamSynchronize(s));
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], 0.5f * (float)i - 3.f) << i;
    MOCO_CUDA_CHECK(cudaFree(dev));
    MOCO_CUDA_CHECK(cudaStreamDestroy(s));
  }
  EXPECT_EQ(pool->blocks(), 1u);
  Tensor again = pool->take(shape, DType::F32);
  EXPECT_EQ(again.raw(), first) << "a freed block of the same size must be reused";
  Tensor other = pool->take(shape, DType::F32);  // the first is in use: a second block
  EXPECT_NE(other.raw(), first);
  Tensor bigger = pool->take({4, 3, 5, 7}, DType::F32);  // another size: its own block
  EXPECT_EQ(pool->blocks(), 3u);
  EXPECT_EQ(pool->bytes(), 2 * n * sizeof(float) + (size_t)4 * 3 * 5 * 7 * sizeof(float));

  // From a fresh thread (a loader worker): pinned as well, and usable after the pool handle is dropped,
  // since each tensor keeps the pool alive.
  Tensor from_worker;
  std::thread worker([&] { from_worker = pool->take({2, 3, 4, 4}, DType::F32); });
  worker.join();
  pool.reset();
  cudaPointerAttributes attr{};
  MOCO_CUDA_CHECK(cudaPointerGetAttributes(&attr, from_worker.raw()));
  EXPECT_EQ(attr.type, cudaMemoryTypeHost);
  from_worker.data<float>()[31] = 1.f;
}

// PinnedUploads, the page-locked staging of the communicators' small uploads: a slot is refilled only after
// its previous copy has read it, so more uploads than slots, queued with no synchronisation between them, all
// arrive intact. (On the emulator the copies run only at the final synchronisation, so a slot refilled too
// early hands its new contents to the older copy every time.)
TEST(GpuPinnedPool, UploadsRefillASlotOnlyAfterItsCopyRan) {
  MOCO_REQUIRE_GPU();
  constexpr int kSlots = 2, kUploads = 5, kInts = 33;
  cudaStream_t s = nullptr;
  MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::vector<cuda::DeviceBuffer<int>> dev;  // kUploads x (kInts)
  for (int i = 0; i < kUploads; ++i) dev.emplace_back((size_t)kInts, "upload target");
  int waits = 0;
  {
    cuda::PinnedUploads uploads(kSlots);
    for (int i = 0; i < kUploads; ++i) {
      std::vector<int> host(kInts, i + 1);  // reused by the caller at once: the upload must not need it
      uploads.upload(dev[i].get(), host.data(), kInts * sizeof(int), s, [&](cudaEvent_t e) {
        ++waits;
        MOCO_CUDA_CHECK(cudaEventSynchronize(e));
      });
    }
    MOCO_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  EXPECT_EQ(waits, kUploads - kSlots) << "each reuse of a slot waits for its previous copy, and only a reuse";
  for (int i = 0; i < kUploads; ++i) EXPECT_EQ(dev[i].download(), std::vector<int>(kInts, i + 1)) << "upload " << i;
  MOCO_CUDA_CHECK(cudaStreamDestroy(s));
}
