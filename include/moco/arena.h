// Arena: a bump allocator over one block of host or device memory.
//
// Why: a training step allocates the same buffers in the same order every time. The first step runs in
// sizing mode (the arena grows with extra chunks as needed and records its high-water mark); reset() then
// replaces everything with one block of exactly that size, and freeze() makes any later growth an error.
// So after warm-up nothing is allocated, and that is asserted rather than hoped for.
#pragma once
#include <cstddef>
#include <vector>

#include "moco/tensor.h"

namespace moco {

class Arena {
 public:
  using AllocFn = void* (*)(size_t);
  using FreeFn = void (*)(void*);
  static constexpr size_t kAlign = 256;  // cuDNN/cuBLAS and vector loads like 256-byte alignment

  Arena(Device device, AllocFn alloc, FreeFn free);
  static Arena host();
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* alloc(size_t bytes);
  // A contiguous view into the arena; valid until the next reset().
  Tensor tensor(const Shape& shape, DType dtype);
  // Releases every allocation. After a step that grew, the block is resized to the high-water mark.
  void reset();
  // From now on, running out of the block throws instead of growing (the "nothing after warm-up" check).
  void freeze() { frozen_ = true; }

  Device device() const { return device_; }
  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t high_water() const { return high_water_; }
  int grow_events() const { return grow_events_; }  // extra chunks allocated in sizing mode, total

 private:
  Device device_;
  AllocFn alloc_fn_;
  FreeFn free_fn_;
  char* block_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;        // bytes handed out since reset, block and chunks together
  size_t block_used_ = 0;  // bytes handed out from the block
  size_t high_water_ = 0;
  std::vector<void*> chunks_;  // sizing-mode overflow allocations
  bool frozen_ = false;
  int grow_events_ = 0;
};

}  // namespace moco
