// Page-locked host memory for copies that must not block the host: a copy from or to pageable memory may
// wait for the stream to drain (CUDA's "API synchronization behavior"), which would stall the host behind
// the collectives and escape the communicators' watchdog.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "check.h"
#include "moco/recycling_pool.h"

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
// driver locks every page), so the blocks are recycled by size (RecyclingPool): a batch's views go back to
// the pool when the batch dies, and a later batch reuses them.
//
// device: the GPU whose context pins the blocks, made current before every allocation and the final frees,
// so that loader threads do not open a context on GPU 0 (which would cost every rank of a node memory there).
//
// The caller must not release a tensor while a copy from it may still be running: the training step holds
// a batch's views until their copy is known to have run (train_step.cpp, StagedBatch::host), and drains its
// copy stream before it lets them go when it is torn down.
std::shared_ptr<RecyclingPool> make_pinned_pool(int device);

}  // namespace moco::cuda
