// GradientBuckets: the gradient all-reduce overlapped with backward, bucket by bucket (PyTorch DDP's scheme).
//
// The flat gradient buffer (device, n floats) is cut into buckets of `bucket_bytes` numbered from the end
// (BucketPlan, include/moco/bucket_plan.h). Backward calls mark_ready(begin, end) as soon as it has enqueued
// the kernels that finish grad[begin, end); a bucket whose elements are all final is launched at once: a mean
// all-reduce on the communicator's stream, ordered after those kernels, which the compute stream does NOT wait
// for, so it runs while backward continues with the earlier layers. finish() launches the buckets never
// completed (parameters without gradient this step) and makes the compute stream wait for all of them; the
// optimiser step enqueued after finish() reads the averaged gradients. Then the next backward starts afresh.
//
// Contract: between a bucket's launch and finish(), nothing on the compute stream may write that bucket's
// range (backward only writes lower offsets, which belong to later buckets). Every rank must mark the same
// ranges in the same order, so the buckets' collectives are issued in the same order everywhere.
#pragma once
#include <cstddef>
#include <cstdint>

#include "device_communicator.h"
#include "moco/bucket_plan.h"

namespace moco::cuda {

class GradientBuckets {
 public:
  static constexpr size_t kDefaultBucketBytes = size_t(25) << 20;  // 25 MiB, as PyTorch DDP

  // grad: (n) floats on the device, averaged in place over comm's ranks.
  GradientBuckets(DeviceCommunicator& comm, float* grad, int64_t n, size_t bucket_bytes = kDefaultBucketBytes);

  // grad[begin, end) is final (its kernels are enqueued on the compute stream): launch what became complete.
  void mark_ready(int64_t begin, int64_t end);
  // Launch the rest; the compute stream waits for every bucket. Resets the plan for the next backward.
  void finish();

  const BucketPlan& plan() const { return plan_; }
  // All-reduces launched since construction (one per bucket per step).
  int64_t launches() const { return launches_; }

 private:
  void launch(int bucket);

  DeviceCommunicator& comm_;
  float* grad_;  // (n) device
  BucketPlan plan_;
  int64_t launches_ = 0;
};

}  // namespace moco::cuda
