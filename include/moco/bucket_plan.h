// BucketPlan: which gradient buckets are ready to all-reduce while backward is still running. Pure bookkeeping
// (no CUDA), so it is unit-tested on the CPU; cuda::GradientBuckets (src/cuda/grad_buckets.h) drives it.
//
// The flat gradient buffer of n floats is cut into contiguous buckets of at most `bucket_elems`, numbered from
// the END: bucket 0 = [n - b, n), bucket 1 = [n - 2b, n - b), ..., the last one starts at 0 and may be
// shorter. Backward makes gradients final from the last layer to the first, i.e. from high offsets to low, so
// bucket 0 fills first and can be all-reduced while the earlier layers' gradients are still being computed
// (PyTorch DDP buckets the same way, 25 MiB by default).
//
// mark_ready(begin, end) records that elements [begin, end) are final; marks may come in any order and may
// overlap. It returns the buckets that this mark completed, in increasing bucket number; over one step (until
// reset) every bucket is returned exactly once, by mark_ready or by take_remaining (a mark over a launched
// bucket never launches it again). All ranks must mark in the
// same order, because the buckets' collectives must be issued in the same order on every rank.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

namespace moco {

class BucketPlan {
 public:
  struct Range {
    int64_t begin = 0, end = 0;  // [begin, end) in elements of the flat buffer
  };

  // n > 0 elements, buckets of bucket_elems > 0 elements (the last one, at offset 0, may be shorter).
  BucketPlan(int64_t n, int64_t bucket_elems);

  int64_t size() const { return n_; }
  int num_buckets() const { return (int)launched_.size(); }
  Range bucket(int k) const;

  // Records [begin, end) as final (0 <= begin < end <= n). Returns the buckets completed by this mark.
  std::vector<int> mark_ready(int64_t begin, int64_t end);
  // The buckets not returned yet (increasing number), now counted as launched; every bucket is launched after.
  std::vector<int> take_remaining();
  bool all_launched() const { return launched_count_ == num_buckets(); }
  int launched_count() const { return launched_count_; }
  // Forget every mark and launch: the next backward starts.
  void reset();

 private:
  bool covered(const Range& r) const;

  int64_t n_, bucket_elems_;
  std::map<int64_t, int64_t> final_;  // disjoint, non-adjacent final ranges: begin -> end
  std::vector<bool> launched_;        // (num_buckets)
  int launched_count_ = 0;
};

}  // namespace moco
