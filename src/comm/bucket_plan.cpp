// BucketPlan: coverage of the flat gradient buffer by final ranges, and the buckets that became complete.
#include "moco/bucket_plan.h"

#include <iterator>

#include "moco/error.h"

namespace moco {

BucketPlan::BucketPlan(int64_t n, int64_t bucket_elems) : n_(n), bucket_elems_(bucket_elems) {
  MOCO_CHECK(n > 0, "gradient buckets: the flat buffer has ", n, " elements, expected at least 1");
  MOCO_CHECK(bucket_elems > 0, "gradient buckets: bucket size is ", bucket_elems, " elements, expected at least 1");
  launched_.assign((size_t)((n + bucket_elems - 1) / bucket_elems), false);
}

BucketPlan::Range BucketPlan::bucket(int k) const {
  MOCO_CHECK(k >= 0 && k < num_buckets(), "gradient bucket ", k, " does not exist (", num_buckets(), " buckets)");
  const int64_t end = n_ - (int64_t)k * bucket_elems_;
  return {end - bucket_elems_ > 0 ? end - bucket_elems_ : 0, end};
}

// True when one merged final range contains all of r (the ranges are merged on insert, so one suffices).
bool BucketPlan::covered(const Range& r) const {
  auto it = final_.upper_bound(r.begin);  // first range starting after r.begin
  if (it == final_.begin()) return false;
  --it;
  return it->first <= r.begin && it->second >= r.end;
}

std::vector<int> BucketPlan::mark_ready(int64_t begin, int64_t end) {
  MOCO_CHECK(0 <= begin && begin < end && end <= n_, "gradient buckets: mark_ready([", begin, ", ", end,
             ")) is not a non-empty range inside the flat buffer [0, ", n_, ")");
  // Merge [begin, end) with every range it overlaps or touches.
  auto it = final_.upper_bound(begin);
  if (it != final_.begin() && std::prev(it)->second >= begin) --it;
  int64_t b = begin, e = end;
  while (it != final_.end() && it->first <= e) {
    if (it->first < b) b = it->first;
    if (it->second > e) e = it->second;
    it = final_.erase(it);
  }
  final_[b] = e;
  // Only buckets overlapping the new range can have become complete.
  std::vector<int> done;
  const int first = (int)((n_ - end) / bucket_elems_);            // bucket holding element end - 1
  const int last = (int)((n_ - 1 - begin) / bucket_elems_);       // bucket holding element begin
  for (int k = first; k <= last; ++k)
    if (!launched_[(size_t)k] && covered(bucket(k))) {
      launched_[(size_t)k] = true;
      ++launched_count_;
      done.push_back(k);
    }
  return done;
}

std::vector<int> BucketPlan::take_remaining() {
  std::vector<int> rest;
  for (int k = 0; k < num_buckets(); ++k)
    if (!launched_[(size_t)k]) {
      launched_[(size_t)k] = true;
      rest.push_back(k);
    }
  launched_count_ = num_buckets();
  return rest;
}

void BucketPlan::reset() {
  final_.clear();
  launched_.assign(launched_.size(), false);
  launched_count_ = 0;
}

}  // namespace moco
