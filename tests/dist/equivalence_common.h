// The setting of the equivalence tests (test_equivalence.cpp on CPU ranks, test_gpu_equivalence.cpp on GPU
// ranks over NCCL): the tiny MoCo, images any rank can recompute, and the comparisons. See
// test_equivalence.cpp for what is compared and why the two sides agree.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dist_common.h"
#include "moco/moco.h"
#include "../tiny_moco.h"

namespace moco::test {
constexpr int64_t kN = 4;      // images per rank
constexpr int kSteps = 3;
constexpr float kLr = 0.03f;

// 16 px, not 8: with 8 px the small stem leaves layer4 at 1x1, where BN normalises 4 values per channel;
// that is so ill-conditioned that one step's rounding grows to 1e-2 in the next step's gradients, on either
// side alone. At 16 px (2x2 in layer4) the same 3 steps stay at rounding level.
constexpr int64_t kSize = 16;

// Agreement tolerance, relative to the largest entry of the reference tensor. Float32 rounding in another
// summation order, carried through 3 steps, was measured at most 2e-5 (gradients and SGD momentum; W = 2 and
// 4, lr up to 0.05); 1e-4 leaves headroom for other BLAS builds and thread counts. A wrong BN grouping moves
// the loss by far more (checked at the end of test_equivalence.cpp).
constexpr double kRel = 1e-4;

inline MocoConfig tiny(int bn_splits) {
  MocoConfig c = test::tiny_moco(8, 40);  // with W = 4 the 3 enqueues of 16 keys wrap around
  c.momentum = 0.9f;  // the key encoder moves visibly in 3 steps
  c.temperature = 0.2f;
  c.bn_splits = bn_splits;
  c.sgd.momentum = 0.9f;
  c.sgd.weight_decay = 1e-4f;
  c.seed = 3;
  return c;
}

// View `view` of global images [first, first + n) at `step`, (n, 3, kSize, kSize): any image is recomputable by any rank.
inline Tensor views(int64_t first, int64_t n, int step, int view) {
  Tensor x = Tensor::empty({n, 3, kSize, kSize}, DType::F32);
  const int64_t per = 3 * kSize * kSize;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t e = 0; e < per; ++e)
      x.data<float>()[i * per + e] =
          std::cos(0.37f * (float)e + 1.3f * (float)(first + i) + 0.7f * (float)view + 2.1f * (float)step) +
          0.1f * (float)((first + i) % 3);
  return x;
}

// The same views in the 8-bit form GPU training hands its step, (n, kSize, kSize, 3) uint8: 127.5 + 100 times
// the float view above, rounded.
inline Tensor views_u8(int64_t first, int64_t n, int step, int view) {
  const Tensor f = views(first, n, step, view);  // (n, 3, S, S)
  Tensor x = Tensor::empty({n, kSize, kSize, 3}, DType::U8);
  const int64_t plane = kSize * kSize;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < plane; ++p) {
        const float v = f.data<float>()[(i * 3 + c) * plane + p];
        x.data<uint8_t>()[(i * plane + p) * 3 + c] = (uint8_t)std::lround(std::clamp(127.5f + 100.f * v, 0.f, 255.f));
      }
  return x;
}

// max |a - b| over the largest |b|, and a readable failure.
inline void expect_close(const char* what, const float* a, const float* b, size_t n, double rel = kRel) {
  double diff = 0, scale = 0;
  size_t worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs((double)a[i] - (double)b[i]);
    if (d > diff) diff = d, worst = i;
    scale = std::max(scale, std::fabs((double)b[i]));
  }
  EXPECT_LE(diff, rel * scale + 1e-9) << what << ": largest difference " << diff << " at " << worst << " ("
                                      << a[worst] << " vs " << b[worst] << "), largest entry " << scale;
}
inline void expect_close(const char* what, const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size()) << what;
  expect_close(what, a.data(), b.data(), a.size());
}

// The same, tensor by tensor over a buffer laid out by `reg`'s entries of `slot` (parameters, their gradients
// and SGD momentum; BN statistics): each held to the largest entry of its own reference tensor, so a tensor of
// small values (a bias's gradient beside a conv's) is not hidden behind the buffer's largest one.
inline void expect_close_per_tensor(const char* what, const ParamRegistry& reg, Slot slot, const std::vector<float>& a,
                                    const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const RegistryEntry& e : reg.entries())
    if (e.slot == slot)
      expect_close((std::string(what) + " of " + e.name).c_str(), a.data() + e.offset, b.data() + e.offset,
                   (size_t)e.numel());
}

// Every rank holds the same bytes as rank 0.
inline void expect_same_on_every_rank(Communicator& comm, const char* what, const std::vector<float>& v) {
  std::vector<float> root(v);  // (len) rank 0's copy
  comm.broadcast(root.data(), root.size() * sizeof(float), 0);
  EXPECT_EQ(std::memcmp(root.data(), v.data(), v.size() * sizeof(float)), 0)
      << what << " on rank " << comm.rank() << " differs from rank 0's";
}


// After a step: dist's state (this rank's, over W ranks) against ref's (one rank, W BN groups). SGD momentum,
// both encoders' parameters and the queue to kRel; BN running statistics as their mean over ranks (the
// running update is linear); the queue and the parameters bit-identical on every rank.
inline void expect_equivalent(Communicator& comm, Moco& dist, Moco& ref) {
  const ParamRegistry& reg = ref.encoder_q().registry();
  expect_close_per_tensor("SGD momentum", reg, Slot::Param, dist.optimizer().momentum_buffer(),
                          ref.optimizer().momentum_buffer());
  expect_close_per_tensor("query parameters", reg, Slot::Param, dist.encoder_q().params(), ref.encoder_q().params());
  expect_close_per_tensor("key parameters", reg, Slot::Param, dist.encoder_k().params(), ref.encoder_k().params());
  expect_close("queue", dist.queue().keys(), ref.queue().keys());
  EXPECT_EQ(dist.queue().ptr(), ref.queue().ptr());
  for (bool query : {true, false}) {
    std::vector<float> mean_stats = (query ? dist.encoder_q() : dist.encoder_k()).stats();  // (S)
    comm.all_reduce_mean(mean_stats.data(), (int64_t)mean_stats.size());
    expect_close_per_tensor(query ? "query BN running statistics, mean over ranks"
                                  : "key BN running statistics, mean over ranks",
                            reg, Slot::Stat, mean_stats, (query ? ref.encoder_q() : ref.encoder_k()).stats());
  }
  expect_same_on_every_rank(comm, "queue", dist.queue().keys());
  expect_same_on_every_rank(comm, "query parameters", dist.encoder_q().params());
  expect_same_on_every_rank(comm, "key parameters", dist.encoder_k().params());
}

}  // namespace moco::test
