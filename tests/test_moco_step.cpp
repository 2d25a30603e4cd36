// Properties of the MoCo step that the PyTorch fixtures do not cover: a non-finite loss stops the step
// before the optimizer touches the query encoder, and the enqueue wraps around the end of the queue; and the
// premise of the tight GPU step tests, that the well-conditioned network's test batches stay clear of near-ties.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "moco/moco.h"
#include "tiny_moco.h"

using namespace moco;

static MocoConfig tiny(int64_t k) {
  MocoConfig c = test::tiny_moco(4, k);
  c.bn_splits = 1;
  return c;
}

static Tensor images(int64_t n, float phase) { return test::wave_images(n, 0.29f, phase); }

TEST(MocoStep, NonFiniteLossStopsBeforeTheUpdate) {
  SingleCommunicator comm;
  Moco m(tiny(8), comm);
  m.init();
  const std::vector<float> params = m.encoder_q().params(), queue = m.queue().keys();
  Tensor bad = images(2, 0.f);
  bad.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  try {
    m.step(bad, images(2, 1.f), 0.1f);
    FAIL() << "a NaN loss must stop the step";
  } catch (const Error& e) {
    // "nan" or "-nan": which NaN's sign bit reaches the loss depends on how the threads split the sums
    const std::string what = e.what();
    EXPECT_TRUE(what.find("loss is nan") != std::string::npos || what.find("loss is -nan") != std::string::npos)
        << what;
  }
  EXPECT_EQ(m.encoder_q().params(), params);  // no SGD step
  EXPECT_EQ(m.queue().keys(), queue);         // no enqueue
  EXPECT_EQ(m.steps_done(), 0);
}

TEST(MocoStep, InversePermutationUndoesAndRejectsNonPermutations) {
  const std::vector<int64_t> perm = {2, 0, 3, 1};
  const std::vector<int64_t> inv = inverse_permutation(perm);
  for (size_t j = 0; j < perm.size(); ++j) EXPECT_EQ(inv[(size_t)perm[j]], (int64_t)j);
  EXPECT_THROW(inverse_permutation({0, 0, 1}), Error);  // repeated
  EXPECT_THROW(inverse_permutation({0, 3, 1}), Error);  // out of range
}

TEST(MocoStep, EnqueueWrapsAroundTheEnd) {
  KeyQueue q(5, 2);
  const float a[6] = {1, 2, 3, 4, 5, 6}, b[8] = {7, 8, 9, 10, 11, 12, 13, 14};
  q.enqueue(a, 3);  // rows 0..2
  EXPECT_EQ(q.ptr(), 3);
  q.enqueue(b, 4);  // rows 3, 4, then 0, 1
  EXPECT_EQ(q.ptr(), 2);
  EXPECT_EQ(q.keys(), (std::vector<float>{11, 12, 13, 14, 5, 6, 7, 8, 9, 10}));
  EXPECT_THROW(q.enqueue(b, 6), Error);  // more keys than the queue holds
}

// With recompute_bn_relu the query encoder keeps none of its residual blocks' inner BN+ReLU outputs for
// backward and rebuilds each before the backward that reads it: the same steps, bit for bit (loss, weights,
// SGD buffers, BN statistics, queue), with exactly those outputs' bytes less saved. The oracle for the bytes is
// the tiny ResNet-18's shapes at 8 px, small stem: each basic block drops its bn1 output, (N, planes, H, W)
// with planes 2, 4, 8, 16 at 8, 4, 2, 1 px, two blocks a stage.
TEST(MocoStep, RecomputedBnReluOutputsGiveTheSameStepsWithLessSaved) {
  SingleCommunicator comm_a, comm_b;
  MocoConfig kept = tiny(16);
  kept.bn_splits = 2;
  MocoConfig rebuilt = kept;
  rebuilt.recompute_bn_relu = true;
  Moco a(kept, comm_a), b(rebuilt, comm_b);
  a.init();
  b.init();
  const int64_t n = 4;
  const int64_t dropped = n * 4 * 2 * (2 * 8 * 8 + 4 * 4 * 4 + 8 * 2 * 2 + 16 * 1 * 1);  // fp32 bytes
  for (int step = 0; step < 3; ++step) {
    const Tensor xq = images(n, 0.3f * (float)step), xk = images(n, 0.3f * (float)step + 1.f);
    const StepStats sa = a.step(xq, xk, 0.1f), sb = b.step(xq, xk, 0.1f);
    EXPECT_EQ(std::memcmp(&sa.loss, &sb.loss, sizeof(float)), 0) << sa.loss << " against " << sb.loss;
    EXPECT_EQ(sa.activation_bytes - sb.activation_bytes, dropped) << sa.activation_bytes << " saved against "
                                                                  << sb.activation_bytes;
    EXPECT_EQ(a.encoder_q().params(), b.encoder_q().params()) << "step " << step;
    EXPECT_EQ(a.encoder_q().stats(), b.encoder_q().stats()) << "step " << step;
    EXPECT_EQ(a.optimizer().momentum_buffer(), b.optimizer().momentum_buffer()) << "step " << step;
    EXPECT_EQ(a.encoder_k().params(), b.encoder_k().params()) << "step " << step;
    EXPECT_EQ(a.queue().keys(), b.queue().keys()) << "step " << step;
  }
}

// The tight GPU step tests (tests/gpu/test_gpu_moco_step.cpp) compare gradients to 1e-4, which holds only where
// rounding-level differences cannot flip a ReLU near-tie (tests/tiny_moco.h). Here the CPU step itself is put
// to that: on each of the three batches from kClearOfTiesBatch, from the CPU's own state, copies whose query
// weights are nudged by 3e-7 of their size (several float ulps, more than the GPU and CPU differ by) must give
// the same SGD buffer to 1e-4, whole and per tensor, as the GPU tests ask (a flipped tie: 1e-3 and more). Four
// nudges here; bench/explore/near_tie_margin.cpp runs more. If this fails, the GPU tests' batches are no
// longer clear on this machine's CPU path, and a GPU test failing beside it is no evidence of a GPU fault.
TEST(MocoStep, WellConditionedBatchesStayClearOfNearTies) {
  SingleCommunicator comm;
  Moco run(test::well_conditioned_moco(), comm);
  run.init();
  for (uint64_t step = 0; step < 3; ++step) {
    const uint64_t batch = test::kClearOfTiesBatch + step;
    const Tensor xq = test::smooth_noisy_images(32, 16, batch, 0), xk = test::smooth_noisy_images(32, 16, batch, 1);
    const test::NudgeSpread spread = test::nudged_step_spread(run, xq, xk, 3e-7, 1234 + step, 4);
    EXPECT_LE(spread.whole, 1e-4) << "batch " << batch << ": the whole SGD buffer";
    EXPECT_LE(spread.tensor, 1e-4) << "batch " << batch << ": one tensor of the SGD buffer";
    run.step(xq, xk, 0.03f);
  }
}
