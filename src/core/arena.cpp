#include "moco/arena.h"

#include <algorithm>
#include <cstdlib>

namespace moco {

static size_t round_up(size_t n) { return (n + Arena::kAlign - 1) / Arena::kAlign * Arena::kAlign; }
static void* host_alloc(size_t n) { return std::aligned_alloc(Arena::kAlign, round_up(std::max<size_t>(n, 1))); }
static void host_free(void* p) { std::free(p); }

Arena::Arena(Device device, AllocFn alloc, FreeFn free) : device_(device), alloc_fn_(alloc), free_fn_(free) {}

Arena Arena::host() { return Arena(Device::CPU, &host_alloc, &host_free); }

Arena::~Arena() {
  for (void* c : chunks_) free_fn_(c);
  if (block_) free_fn_(block_);
}

void* Arena::alloc(size_t bytes) {
  size_t n = round_up(std::max<size_t>(bytes, 1));
  if (block_used_ + n <= capacity_) {
    void* p = block_ + block_used_;
    block_used_ += n;
    used_ += n;
    high_water_ = std::max(high_water_, used_);
    return p;
  }
  MOCO_CHECK(!frozen_, "arena on ", device_name(device_), " is frozen after warm-up but needs ", n,
             " more bytes (capacity ", capacity_, ", in use ", used_,
             "): a step allocated more than the first one did; shapes must not change between steps");
  void* p = alloc_fn_(n);
  MOCO_CHECK(p != nullptr, "out of ", device_name(device_), " memory allocating ", n, " bytes (arena in use ", used_, ")");
  chunks_.push_back(p);
  ++grow_events_;
  used_ += n;
  high_water_ = std::max(high_water_, used_);
  return p;
}

Tensor Arena::tensor(const Shape& shape, DType dtype) {
  return Tensor::wrap(alloc((size_t)shape_numel(shape) * dtype_size(dtype)), shape, dtype, device_);
}

void Arena::reset() {
  if (!chunks_.empty()) {
    for (void* c : chunks_) free_fn_(c);
    chunks_.clear();
    if (block_) free_fn_(block_);
    capacity_ = high_water_;
    block_ = static_cast<char*>(alloc_fn_(capacity_));
    MOCO_CHECK(block_ != nullptr, "out of ", device_name(device_), " memory sizing the arena to ", capacity_, " bytes");
  }
  used_ = 0;
  block_used_ = 0;
}

}  // namespace moco
