// RecyclingPool (recycling_pool.h).
#include "moco/recycling_pool.h"

#include <cstdlib>

#include "moco/error.h"

namespace moco {

std::shared_ptr<RecyclingPool> RecyclingPool::create(Allocate allocate, Free free, std::string what) {
  return std::shared_ptr<RecyclingPool>(new RecyclingPool(std::move(allocate), std::move(free), std::move(what)));
}

std::shared_ptr<RecyclingPool> RecyclingPool::host() {
  return create([](size_t bytes) { return std::aligned_alloc(64, ((bytes + 63) / 64) * 64); },
                [](void* p) { std::free(p); }, "host batches");
}

RecyclingPool::RecyclingPool(Allocate allocate, Free free, std::string what)
    : allocate_(std::move(allocate)), free_(std::move(free)), what_(std::move(what)) {}

RecyclingPool::~RecyclingPool() {
  for (void* p : all_) free_(p);  // every tensor holding a block is gone by now
}

Tensor RecyclingPool::take(const Shape& shape, DType dtype) {
  for (int64_t d : shape) MOCO_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  const size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
  if (bytes == 0) return Tensor::empty(shape, dtype);  // nothing to recycle
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(bytes);
    if (it != idle_.end()) {
      p = it->second;
      idle_.erase(it);
    }
  }
  if (!p) {
    p = allocate_(bytes);
    MOCO_CHECK(p != nullptr, "out of memory allocating ", bytes, " bytes of ", what_, " for shape ", shape_str(shape));
    try {
      std::lock_guard<std::mutex> lock(mu_);
      all_.push_back(p);
      bytes_ += bytes;
    } catch (...) {
      free_(p);
      throw;
    }
  }
  std::shared_ptr<RecyclingPool> self = shared_from_this();
  return Tensor::adopt(p, bytes, shape, dtype, Device::CPU, [self, bytes](void* q) { self->give_back(q, bytes); });
}

void RecyclingPool::give_back(void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.emplace(bytes, p);
}

size_t RecyclingPool::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t RecyclingPool::blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return all_.size();
}

}  // namespace moco
