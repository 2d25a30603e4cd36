// GradientBuckets: BucketPlan's bookkeeping driving asynchronous mean all-reduces (grad_buckets.h).
#include "grad_buckets.h"

#include "moco/error.h"

namespace moco::cuda {

static int64_t bucket_elems(size_t bucket_bytes) {
  MOCO_CHECK(bucket_bytes >= sizeof(float), "gradient bucket size ", bucket_bytes, " bytes holds no float; "
             "expected at least ", sizeof(float), " bytes");
  return (int64_t)(bucket_bytes / sizeof(float));
}

GradientBuckets::GradientBuckets(DeviceCommunicator& comm, float* grad, int64_t n, size_t bucket_bytes)
    : comm_(comm), grad_(grad), plan_(n, bucket_elems(bucket_bytes)) {
  MOCO_CHECK(grad != nullptr, "gradient buckets over a null gradient buffer of ", n, " floats");
}

void GradientBuckets::launch(int bucket) {
  const BucketPlan::Range r = plan_.bucket(bucket);
  comm_.start_all_reduce_mean(grad_ + r.begin, r.end - r.begin);
  ++launches_;
}

void GradientBuckets::mark_ready(int64_t begin, int64_t end) {
  for (int k : plan_.mark_ready(begin, end)) launch(k);
}

void GradientBuckets::finish() {
  for (int k : plan_.take_remaining()) launch(k);
  comm_.join();
  plan_.reset();
}

}  // namespace moco::cuda
