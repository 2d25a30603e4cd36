// BlockCache: a caching allocator for the activations of a training step.
//
// Why this shape: a step allocates and frees the same sizes in the same order every time, so after the
// first step every request finds a freed block of exactly its size. Blocks are kept in free lists by size
// (rounded up to 512 bytes), never split or merged; nothing goes back to the device until the cache dies.
// freeze() after warm-up turns a miss into an error, which asserts "nothing is allocated after warm-up".
//
// Works over any allocate/free pair (cudaMalloc on the GPU; malloc in the tests), single-threaded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moco {

class BlockCache {
 public:
  using AllocFn = void* (*)(size_t);
  using FreeFn = void (*)(void*);
  static constexpr size_t kGranule = 512;

  // `what` names the cache in error messages ("GPU activations").
  BlockCache(AllocFn alloc, FreeFn free, std::string what);
  ~BlockCache();  // returns every block; blocks still handed out must not be used afterwards
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  void* get(size_t bytes);
  void put(void* p, size_t bytes);  // `bytes` as given to get()
  void freeze() { frozen_ = true; }
  bool frozen() const { return frozen_; }

  size_t reserved_bytes() const { return reserved_; }  // everything taken from the device
  size_t live_bytes() const { return live_; }          // handed out now
  size_t peak_live_bytes() const { return peak_live_; }
  int64_t device_allocations() const { return allocations_; }

  static size_t rounded(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }

 private:
  AllocFn alloc_;
  FreeFn free_fn_;
  std::string what_;
  std::map<size_t, std::vector<void*>> free_;  // rounded size -> blocks ready for reuse
  std::vector<void*> all_;                     // every block, for the destructor
  size_t reserved_ = 0, live_ = 0, peak_live_ = 0;
  int64_t allocations_ = 0;
  bool frozen_ = false;
};

}  // namespace moco
