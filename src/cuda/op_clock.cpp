#include "op_clock.h"


#include "check.h"

namespace moco::cuda {

OpClock::~OpClock() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);  // unchecked: a destructor must not throw
}

size_t OpClock::open(const char* name) {
  const size_t i = pending_.size();
  while (events_.size() < 2 * (i + 1)) {  // the pool grows only in the first steps
    cudaEvent_t e = nullptr;
    MOCO_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  pending_.push_back(name);
  MOCO_CUDA_CHECK(cudaEventRecord(events_[2 * i], stream_));
  return i;
}

void OpClock::close(size_t bracket) { MOCO_CUDA_CHECK(cudaEventRecord(events_[2 * bracket + 1], stream_)); }

void OpClock::collect() {
  for (size_t i = 0; i < pending_.size(); ++i) {
    float ms = 0;
    MOCO_CUDA_CHECK(cudaEventSynchronize(events_[2 * i + 1]));
    MOCO_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
    Total* t = nullptr;
    for (Total& have : totals_)
      if (have.name == pending_[i]) t = &have;
    if (!t) {
      totals_.push_back(Total{pending_[i], 0, 0});
      t = &totals_.back();
    }
    t->ms += ms;
    ++t->calls;
  }
  pending_.clear();
}

void OpClock::reset_totals() { totals_.clear(); }

}  // namespace moco::cuda
