// The linear probe end to end on a task a frozen random backbone can solve: dark images are class 0,
// bright ones class 1. The probe must learn it, and the backbone must come out bit-identical (the run_lincls
// check throws otherwise, and the test compares the buffers itself too).
#include <gtest/gtest.h>

#include <algorithm>

#include "moco/lincls.h"
#include "moco/linear_probe.h"
#include "tiny_moco.h"

using namespace moco;

using test::DarkBright;

TEST(Lincls, LearnsASeparableTaskAndLeavesTheBackboneUntouched) {
  Encoder enc(test::probe_backbone());
  enc.init(3);
  const std::vector<float> params = enc.params(), stats = enc.stats();
  DarkBright train(64, 1), test(32, 2);
  const LinclsOptions o = test::probe_options(6, 4);
  std::vector<double> losses;
  int scored = 0;
  double best = -1;
  LinclsResult r = run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    losses.push_back(e.loss);
    if (e.scored) {
      ++scored;
      best = std::max(best, e.top1);
      EXPECT_GE(e.top5, e.top1) << "epoch " << e.epoch;
    }
  });
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_EQ(scored, 6) << "main_lincls.py scores the test split after every epoch";
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_GE(r.top1, 90.0);
  EXPECT_EQ(r.top5, 100.0) << "two classes: the label is always among the top five";
  EXPECT_EQ(r.best_top1, best);
  EXPECT_GE(r.best_top1, r.top1);
  EXPECT_GE(r.best_epoch, 0);
  EXPECT_EQ(enc.params(), params);
  EXPECT_EQ(enc.stats(), stats);
}

TEST(Lincls, EvalEveryScoresThoseEpochsAndTheLast) {
  Encoder enc(test::probe_backbone());
  enc.init(3);
  DarkBright train(32, 1), test(16, 2);
  LinclsOptions o = test::probe_options(5, 4);
  o.eval_every = 2;
  std::vector<int> scored;
  run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    if (e.scored) scored.push_back(e.epoch);
  });
  EXPECT_EQ(scored, (std::vector<int>{1, 3, 4}));
  o.eval_every = 0;
  scored.clear();
  run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    if (e.scored) scored.push_back(e.epoch);
  });
  EXPECT_EQ(scored, (std::vector<int>{4}));
}

// Every row scores the classes by the bias alone (zero weight): 0, 2, 2, -1, 2, 1. A label is beaten by each
// greater score and each equal one at a lower class: label 1 by none, 2 by one, 4 by two, 5 by three, 0 by
// four, 3 by five. So of the labels below, the three 1s are top-1 hits and all but the 3 are top-5 hits.
TEST(LinearProbe, TopOneAndTopFiveCountTiesForTheLowerClass) {
  const int64_t d = 5, classes = 6;
  std::vector<float> initial((size_t)(classes * d), 0.f);
  const std::vector<float> bias = {0.f, 2.f, 2.f, -1.f, 2.f, 1.f};
  initial.insert(initial.end(), bias.begin(), bias.end());
  auto probe = make_cpu_linear_probe(d, classes, initial, SgdConfig{0.9f, 0.f});
  const std::vector<int> y = {1, 2, 4, 1, 0, 5, 1, 3, 2};
  Tensor x = Tensor::empty({(int64_t)y.size(), d}, DType::F32);  // (N, D): any values, the weight is zero
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)(i % 7) - 3.f;
  const TopHits h = probe->count_correct(x, y);
  EXPECT_EQ(h.top1, 3);
  EXPECT_EQ(h.top5, 8);
}
