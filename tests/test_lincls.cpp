// The linear probe end to end on a task a frozen random backbone can solve: dark images are class 0,
// bright ones class 1. The probe must learn it, and the backbone must come out bit-identical (the run_lincls
// check throws otherwise, and the test compares the buffers itself too).
#include <gtest/gtest.h>

#include "moco/lincls.h"
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
  LinclsResult r = run_lincls(enc, train, test, o, [&](int, double loss) { losses.push_back(loss); });
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_GE(r.top1, 90.0);
  EXPECT_EQ(enc.params(), params);
  EXPECT_EQ(enc.stats(), stats);
}
