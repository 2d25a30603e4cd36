// RecyclingPool: host tensors whose memory is recycled by exact size. The loader's batches come from one:
// each batch's views are the same few sizes, so after the first batches every view reuses a block a
// finished batch gave back, instead of fresh pages the kernel must fault in and zero (10-15% of the data
// path, bench_loader). The GPU path gives it page-locked blocks (cuda::make_pinned_pool), whose allocation
// is slower still.
//
// A tensor taken here hands its block back when its last view dies, from any thread; the pool lives as long
// as any of its tensors (each holds a reference), and frees every block when the last one goes. Blocks are
// never freed before that, so the pool holds its high-water mark: as many blocks as were alive at once.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "moco/tensor.h"

namespace moco {

class RecyclingPool : public std::enable_shared_from_this<RecyclingPool> {
 public:
  using Allocate = std::function<void*(size_t bytes)>;  // throws (or returns null) when it cannot
  using Free = std::function<void(void*)>;              // must not throw
  // what: named in the error when an allocation fails ("host batches", "pinned batches").
  static std::shared_ptr<RecyclingPool> create(Allocate allocate, Free free, std::string what);
  // Ordinary host memory, 64-byte aligned like Tensor::empty.
  static std::shared_ptr<RecyclingPool> host();
  ~RecyclingPool();
  RecyclingPool(const RecyclingPool&) = delete;
  RecyclingPool& operator=(const RecyclingPool&) = delete;

  // A contiguous CPU tensor, uninitialised. Thread-safe.
  Tensor take(const Shape& shape, DType dtype);
  size_t bytes() const;   // all blocks, free or in use
  size_t blocks() const;

 private:
  RecyclingPool(Allocate allocate, Free free, std::string what);
  void give_back(void* p, size_t bytes);

  Allocate allocate_;
  Free free_;
  std::string what_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> idle_;  // bytes -> block not in use
  std::vector<void*> all_;             // every block, for the destructor
  size_t bytes_ = 0;
};

}  // namespace moco
