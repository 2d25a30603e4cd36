// The linear probe end to end on a task a frozen random backbone can solve: dark images are class 0,
// bright ones class 1. The probe must learn it, and the backbone must come out bit-identical (the run_lincls
// check throws otherwise, and the test compares the buffers itself too).
#include <gtest/gtest.h>

#include "moco/lincls.h"

using namespace moco;

namespace {
class DarkBright : public Dataset {
 public:
  explicit DarkBright(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  int64_t size() const override { return n_; }
  int num_classes() const override { return 2; }
  int label(int64_t i) const override { return (int)(i % 2); }
  bool load(int64_t i, Image& out, std::string*) const override {
    Rng rng(seed_, (uint64_t)i);
    out.h = out.w = 8;
    out.pixels.resize(8 * 8 * 3);  // (8, 8, 3)
    for (auto& p : out.pixels) p = (uint8_t)((i % 2 ? 150 : 20) + rng.below(80));
    return true;
  }
  std::string name() const override { return "dark-bright"; }
  std::string source(int64_t i) const override { return "dark-bright[" + std::to_string(i) + "]"; }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  int64_t n_;
  uint64_t seed_;
  std::vector<std::string> names_ = {"dark", "bright"};
};
}  // namespace

TEST(Lincls, LearnsASeparableTaskAndLeavesTheBackboneUntouched) {
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.width = 2;
  cfg.small_stem = true;
  cfg.head = Head::Linear;
  cfg.out_dim = 4;
  Encoder enc(cfg);
  enc.init(3);
  const std::vector<float> params = enc.params(), stats = enc.stats();
  DarkBright train(64, 1), test(32, 2);
  LinclsOptions o;
  o.epochs = 6;
  o.lr = 1.0;
  o.schedule = {4};
  o.batch_size = 16;
  o.image_size = 8;
  std::vector<double> losses;
  LinclsResult r = run_lincls(enc, train, test, o, [&](int, double loss) { losses.push_back(loss); });
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_GE(r.top1, 90.0);
  EXPECT_EQ(enc.params(), params);
  EXPECT_EQ(enc.stats(), stats);
}
