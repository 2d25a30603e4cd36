// Page-locked staging for host <-> device copies that do not block the host (pinned_host.h).
#include "pinned_host.h"

#include <cstring>

namespace moco::cuda {

PinnedBuffer::~PinnedBuffer() {
  if (p_) cudaFreeHost(p_);  // never throws; an error here would be reported by the next checked call
}

void* PinnedBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_) return p_;
  if (p_) MOCO_CUDA_CHECK(cudaFreeHost(p_));
  p_ = nullptr;
  bytes_ = 0;
  void* p = nullptr;
  const cudaError_t err = cudaMallocHost(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("cudaMallocHost(", bytes, " bytes) for a pinned staging buffer failed: ", cudaGetErrorString(err));
  }
  p_ = p;
  bytes_ = bytes;
  return p_;
}

PinnedUploads::PinnedUploads(int slots) : slots_((size_t)(slots > 0 ? slots : 0)) {
  MOCO_CHECK(slots >= 1, "pinned uploads need at least 1 slot, got ", slots);
}

PinnedUploads::~PinnedUploads() {
  for (Slot& s : slots_)
    if (s.copied) cudaEventDestroy(s.copied);
}

void PinnedUploads::upload(void* dev, const void* host, size_t bytes, cudaStream_t stream,
                           const std::function<void(cudaEvent_t)>& wait) {
  if (bytes == 0) return;
  Slot& s = slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  if (!s.copied)  // created at first use, on the device current then (the owner's), not at construction
    MOCO_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
  if (s.used) wait(s.copied);  // the slot's previous copy must have read it before it is refilled (or freed)
  void* staged = s.buffer.reserve(bytes);
  std::memcpy(staged, host, bytes);
  MOCO_CUDA_CHECK(cudaMemcpyAsync(dev, staged, bytes, cudaMemcpyHostToDevice, stream));
  MOCO_CUDA_CHECK(cudaEventRecord(s.copied, stream));
  s.used = true;
}

std::shared_ptr<RecyclingPool> make_pinned_pool(int device) {
  auto allocate = [device](size_t bytes) {
    MOCO_CUDA_CHECK(cudaSetDevice(device));
    void* p = nullptr;
    const cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (err != cudaSuccess) {
      cudaGetLastError();
      fail("cudaHostAlloc(", bytes, " bytes) for a pinned batch of images failed: ", cudaGetErrorString(err),
           "; a smaller --batch-size needs less (about 2 x (1 + prefetch) batches of views are alive at once)");
    }
    return p;
  };
  auto release = [device](void* p) {  // may run on a thread that never chose a device: not GPU 0's context
    cudaSetDevice(device);
    cudaFreeHost(p);  // never throws; an error here would be reported by the next checked call
    cudaGetLastError();
  };
  return RecyclingPool::create(allocate, release, "pinned batches");
}

}  // namespace moco::cuda
