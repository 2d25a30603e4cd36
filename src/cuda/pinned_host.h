// Page-locked host memory for copies that must not block the host: a copy from or to pageable memory may
// wait for the stream to drain (CUDA's "API synchronization behavior"), which would stall the host behind
// the collectives and escape the communicators' watchdog.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "check.h"
#include "moco/tensor.h"

namespace moco::cuda {

// One growable page-locked buffer. Growing frees the old block, so the caller grows only when no copy
// still uses it.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  // At least `bytes` of pinned memory; the contents are lost when it grows.
  void* reserve(size_t bytes);

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Host -> device copies that return at once: each goes through the next of a few pinned slots, and a slot is
// refilled only after the copy that last used it has run. `wait` blocks until an event completes (the
// communicators pass their bounded wait); it is called only when the host is that far ahead of the stream.
// Nothing touches CUDA before the first upload, whose current device must be the stream's.
class PinnedUploads {
 public:
  explicit PinnedUploads(int slots = 4);
  ~PinnedUploads();
  PinnedUploads(const PinnedUploads&) = delete;
  PinnedUploads& operator=(const PinnedUploads&) = delete;

  // dev (bytes) = host (bytes), enqueued on `stream`; `host` may be reused as soon as this returns.
  void upload(void* dev, const void* host, size_t bytes, cudaStream_t stream,
              const std::function<void(cudaEvent_t)>& wait);

 private:
  struct Slot {
    PinnedBuffer buffer;
    cudaEvent_t copied = nullptr;  // recorded after the slot's last copy
    bool used = false;
  };
  std::vector<Slot> slots_;
  size_t next_ = 0;
};

// Page-locked host tensors for the loader's views, so that the step's upload of a batch is a DMA at full
// PCIe rate that does not block the host, instead of a staged copy from pageable memory. Pinning is slow (the
// driver locks every page), so each block is pinned once and recycled by exact size: a tensor taken here
// gives its block back when its last view dies, and the loader's next batch reuses it. Blocks in use are
// bounded by the batches alive at once (prefetched or being built, and the one being trained on). Thread-safe: loader
// workers take, the training thread releases. The pool lives until its last tensor is gone.
//
// The caller must not release a tensor while a copy from it may still be running: GpuMoco::step reads the
// loss back at its end, after the uploads in stream order, so a batch is free again once step returns. (A
// step that throws midway may release its batch while the copy still reads it; a worker may then refill the
// block, and only that dying step sees the mixed bytes.)
class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
 public:
  // device: the GPU whose context pins the blocks; set on every thread that allocates, so that loader
  // threads do not open a context on GPU 0 (which would cost every rank of a node memory on GPU 0).
  static std::shared_ptr<PinnedPool> create(int device);
  ~PinnedPool();
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;

  // A contiguous host tensor in pinned memory, uninitialised.
  Tensor take(const Shape& shape, DType dtype);
  size_t pinned_bytes() const;  // all blocks, free or in use
  size_t blocks() const;

 private:
  explicit PinnedPool(int device) : device_(device) {}
  void give_back(void* p, size_t bytes);

  const int device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;  // bytes -> block
  std::vector<void*> all_;             // every block, for the destructor
  size_t pinned_bytes_ = 0;
};

}  // namespace moco::cuda
