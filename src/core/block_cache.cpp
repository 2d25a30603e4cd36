#include "moco/block_cache.h"

#include "moco/error.h"

namespace moco {

BlockCache::BlockCache(AllocFn alloc, FreeFn free, std::string what)
    : alloc_(alloc), free_fn_(free), what_(std::move(what)) {}

BlockCache::~BlockCache() {
  for (void* p : all_) free_fn_(p);
}

void* BlockCache::get(size_t bytes) {
  const size_t size = rounded(bytes == 0 ? 1 : bytes);
  void* p = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
  } else {
    MOCO_CHECK(!frozen_, what_, ": a request for ", bytes, " bytes found no free block after warm-up (",
               reserved_, " bytes reserved, ", live_, " live); the step allocated something new after its first "
               "iterations");
    p = alloc_(size);
    MOCO_CHECK(p != nullptr, what_, ": out of memory allocating ", size, " bytes (", reserved_,
               " bytes already reserved, ", live_, " live); lower the batch size");
    all_.push_back(p);
    reserved_ += size;
    ++allocations_;
  }
  live_ += size;
  if (live_ > peak_live_) peak_live_ = live_;
  return p;
}

void BlockCache::put(void* p, size_t bytes) {
  const size_t size = rounded(bytes == 0 ? 1 : bytes);
  live_ -= size;
  free_[size].push_back(p);
}

}  // namespace moco
