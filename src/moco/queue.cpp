#include <algorithm>
#include <cmath>
#include <cstring>

#include "moco/moco.h"
#include "moco/rng.h"

namespace moco {

KeyQueue::KeyQueue(int64_t k, int64_t c) : k_(k), c_(c), keys_((size_t)(k * c), 0.f) {
  MOCO_CHECK(k >= 1 && c >= 1, "queue needs K >= 1 and dim >= 1, got K=", k, " dim=", c);
}

void KeyQueue::init_random(uint64_t seed) {
  for (int64_t r = 0; r < k_; ++r) {
    Rng rng(seed, mix_stream(0x9e0e, r));
    double sq = 0;
    float* row = keys_.data() + r * c_;
    for (int64_t j = 0; j < c_; ++j) {
      row[j] = (float)rng.normal();
      sq += (double)row[j] * row[j];
    }
    const double inv = 1.0 / std::max(std::sqrt(sq), 1e-12);
    for (int64_t j = 0; j < c_; ++j) row[j] = (float)(row[j] * inv);
  }
  ptr_ = 0;
}

void KeyQueue::enqueue(const float* keys, int64_t n) {
  MOCO_CHECK(n >= 0 && n <= k_, "cannot enqueue ", n, " keys into a queue of ", k_,
             "; the global batch must not exceed --moco-k");
  int64_t done = 0;
  while (done < n) {  // at most two contiguous copies: up to the end, then from row 0
    const int64_t rows = std::min(n - done, k_ - ptr_);
    std::memcpy(keys_.data() + ptr_ * c_, keys + done * c_, (size_t)(rows * c_) * sizeof(float));
    ptr_ = (ptr_ + rows) % k_;
    done += rows;
  }
}

void KeyQueue::set_ptr(int64_t p) {
  MOCO_CHECK(p >= 0 && p < k_, "queue pointer ", p, " out of range [0, ", k_, ")");
  ptr_ = p;
}

}  // namespace moco
