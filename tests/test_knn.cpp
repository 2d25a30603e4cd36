// The kNN vote against hand-computed cases, and the index sampler.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "moco/knn.h"

using namespace moco;

static FeatureSet points(std::vector<std::vector<float>> rows, std::vector<int> labels) {
  FeatureSet f;
  f.n = (int64_t)rows.size();
  f.dim = (int64_t)rows[0].size();
  for (auto& r : rows) {
    double s = 0;
    for (float v : r) s += v * v;
    for (float v : r) f.features.push_back((float)(v / std::sqrt(s)));
  }
  f.labels = std::move(labels);
  return f;
}

TEST(Knn, WeightedVoteOfTheNearest) {
  // bank: two class-0 points near +x, three class-1 points near +y
  FeatureSet bank = points({{1, 0.1f}, {1, -0.1f}, {0.1f, 1}, {-0.1f, 1}, {0, 1}}, {0, 0, 1, 1, 1});
  // query between them, a little closer to +x: with k = 5 the three class-1 votes outnumber two class-0
  // votes only if the weights exp(sim / t) do not make up for it
  FeatureSet q = points({{1, 0.8f}}, {0});
  const double c = 1 / std::sqrt(1.64);  // cos of the query with (1, 0.8) normalised
  auto sim = [&](float x, float y) { return (x * 1 + y * 0.8) * c / std::sqrt(x * x + y * y); };
  for (double t : {0.05, 1.0}) {
    const double v0 = std::exp(sim(1, 0.1f) / t) + std::exp(sim(1, -0.1f) / t);
    const double v1 = std::exp(sim(0.1f, 1) / t) + std::exp(sim(-0.1f, 1) / t) + std::exp(sim(0, 1) / t);
    const double want = v0 > v1 ? 100.0 : 0.0;
    EXPECT_DOUBLE_EQ(knn_top1(bank, q, 2, 5, t), want) << "t=" << t;
  }
  // k = 1: the single nearest neighbour decides
  EXPECT_DOUBLE_EQ(knn_top1(bank, q, 2, 1, 0.1), 100.0);
}

TEST(Knn, SampleIndicesIsASeededSubsetWithoutRepeats) {
  const auto a = sample_indices(100, 30, 7), b = sample_indices(100, 30, 7), c = sample_indices(100, 30, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 30u);
  for (int64_t i : a) EXPECT_TRUE(i >= 0 && i < 100);
  EXPECT_EQ(sample_indices(5, 0, 1), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

// The CPU feature extractor evaluates with BN in eval mode and leaves the encoder's mode as it found it (the
// kNN monitor runs in the middle of training).
TEST(Features, CpuExtractorUsesEvalModeAndRestoresTrainMode) {
  Encoder enc(ResNetConfig{18, true, 2, Head::None, 0, 3});
  enc.init(3);
  Tensor x = Tensor::empty({4, 3, 8, 8}, DType::F32);  // (N, 3, 8, 8)
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)std::sin(0.3 * (double)i);
  enc.set_train(false);
  const Tensor want = enc.features(x);  // (N, D) in eval mode
  enc.set_train(true);
  CpuFeatures fx(enc);
  const Tensor got = fx.features(x, FeatureLayer::Backbone);
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < got.numel(); ++i) EXPECT_EQ(got.data<float>()[i], want.data<float>()[i]) << i;
  EXPECT_TRUE(enc.is_train());
  EXPECT_EQ(enc.counts()[0], 0) << "eval mode must not count a BN batch";
}

// Head features are the backbone's put through the v2 MLP head by hand (fc.2(relu(fc.0(f))), in double), in
// eval mode, before any normalisation: what the authors' CIFAR-10 demo scores.
TEST(Features, HeadFeaturesAreTheBackboneThroughTheMlpHead) {
  ResNetConfig cfg{18, true, 2, Head::Mlp, 5, 3};
  Encoder enc(cfg);
  enc.init(4);
  Tensor x = Tensor::empty({3, 3, 8, 8}, DType::F32);  // (N, 3, 8, 8)
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)std::cos(0.7 * (double)i);
  CpuFeatures fx(enc);
  const Tensor f = fx.features(x, FeatureLayer::Backbone);  // (N, D)
  const Tensor h = fx.features(x, FeatureLayer::Head);      // (N, 5)
  const int64_t d = cfg.feature_dim();
  ASSERT_EQ(f.shape(), (Shape{3, d}));
  ASSERT_EQ(h.shape(), (Shape{3, 5}));
  EXPECT_EQ(feature_width(cfg, FeatureLayer::Head), 5);
  const float* w0 = enc.tensor("fc.0.weight").data<float>();  // (D, D)
  const float* b0 = enc.tensor("fc.0.bias").data<float>();    // (D)
  const float* w2 = enc.tensor("fc.2.weight").data<float>();  // (5, D)
  const float* b2 = enc.tensor("fc.2.bias").data<float>();    // (5)
  for (int64_t n = 0; n < 3; ++n) {
    std::vector<double> hidden((size_t)d);  // (D)
    for (int64_t o = 0; o < d; ++o) {
      double acc = b0[o];
      for (int64_t i = 0; i < d; ++i) acc += (double)w0[o * d + i] * f.data<float>()[n * d + i];
      hidden[(size_t)o] = std::max(acc, 0.0);
    }
    for (int64_t o = 0; o < 5; ++o) {
      double acc = b2[o];
      for (int64_t i = 0; i < d; ++i) acc += (double)w2[o * d + i] * hidden[(size_t)i];
      EXPECT_NEAR(h.data<float>()[n * 5 + o], acc, 1e-5) << "image " << n << ", output " << o;
    }
  }
  EXPECT_EQ(enc.counts()[0], 0) << "eval mode must not count a BN batch";
}

TEST(Features, LayerNamesAndWidths) {
  EXPECT_EQ(parse_feature_layer("backbone", "--knn-feature"), FeatureLayer::Backbone);
  EXPECT_EQ(parse_feature_layer("head", "--knn-feature"), FeatureLayer::Head);
  EXPECT_STREQ(feature_layer_name(FeatureLayer::Head), "head");
  try {
    parse_feature_layer("fc", "--knn-feature");
    ADD_FAILURE() << "fc was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--knn-feature fc: expected backbone"), std::string::npos) << e.what();
  }
  ResNetConfig no_head{18, true, 2, Head::None, 0, 3};
  EXPECT_EQ(feature_width(no_head, FeatureLayer::Backbone), no_head.feature_dim());
  EXPECT_THROW(feature_width(no_head, FeatureLayer::Head), Error);
}
