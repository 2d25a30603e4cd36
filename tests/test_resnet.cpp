// ResNet structure against torchvision's facts (SPEC 6): key names, entry count, parameter counts.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "moco/resnet.h"

using namespace moco;

TEST(ResNet, ResNet50HasTorchvisionStateDict) {
  ResNetConfig cfg;
  cfg.depth = 50;
  cfg.head = Head::Linear;
  cfg.out_dim = 1000;
  Encoder enc(cfg, /*with_grads=*/false);
  const auto& entries = enc.registry().entries();
  EXPECT_EQ(entries.size(), 320u);
  EXPECT_EQ(enc.registry().parameter_count(), 25557032);
  EXPECT_EQ(entries.front().name, "conv1.weight");
  EXPECT_EQ(entries[1].name, "bn1.weight");
  EXPECT_EQ(entries[5].name, "bn1.num_batches_tracked");
  EXPECT_EQ(entries[5].slot, Slot::Count);
  EXPECT_EQ(entries.back().name, "fc.bias");
  EXPECT_EQ(enc.registry().find("layer1.0.downsample.0.weight").shape, (Shape{256, 64, 1, 1}));
  EXPECT_EQ(enc.registry().find("layer2.0.conv2.weight").shape, (Shape{128, 128, 3, 3}));
  EXPECT_EQ(enc.registry().find("layer4.2.bn3.running_var").shape, (Shape{2048}));
  EXPECT_EQ(enc.registry().find("fc.weight").shape, (Shape{1000, 2048}));
  EXPECT_THROW(enc.registry().find("layer5.0.conv1.weight"), Error);
}

// torchvision's resnet101 and resnet152 (fc 1000): 44,549,160 and 60,192,808 parameters; 18 state-dict
// entries per bottleneck (3 convs, 3 BNs of 5), 6 per downsample, 6 for the stem and 2 for the fc.
TEST(ResNet, DeeperBottleneckNetworksHaveTorchvisionCounts) {
  for (auto [depth, params, blocks] : {std::tuple<int, int64_t, size_t>{101, 44549160, 33}, {152, 60192808, 50}}) {
    ResNetConfig cfg;
    cfg.depth = depth;
    cfg.head = Head::Linear;
    cfg.out_dim = 1000;
    Encoder enc(cfg, /*with_grads=*/false);
    EXPECT_EQ(enc.registry().parameter_count(), params) << "resnet" << depth;
    EXPECT_EQ(enc.registry().entries().size(), 6 + 18 * blocks + 6 * 4 + 2) << "resnet" << depth;
    EXPECT_EQ(enc.registry().find("layer3." + std::to_string(blocks == 33 ? 22 : 35) + ".conv3.weight").shape,
              (Shape{1024, 256, 1, 1}));
    EXPECT_EQ(enc.config().feature_dim(), 2048);
  }
}

TEST(ResNet, ParameterCountsOfBackboneAndHeads) {
  ResNetConfig cfg;
  cfg.depth = 50;
  Encoder backbone(cfg, false);
  EXPECT_EQ(backbone.registry().parameter_count(), 23508032);
  cfg.head = Head::Linear;
  cfg.out_dim = 128;
  Encoder v1(cfg, false);
  EXPECT_EQ(v1.registry().parameter_count("fc."), 262272);
  cfg.head = Head::Mlp;
  Encoder v2(cfg, false);
  EXPECT_EQ(v2.registry().parameter_count("fc."), 4458624);
  EXPECT_EQ(v2.registry().parameter_count(), 23508032 + 4458624);
}

TEST(ResNet, ResNet18Counts) {
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.head = Head::Linear;
  cfg.out_dim = 1000;
  Encoder enc(cfg, false);
  EXPECT_EQ(enc.registry().parameter_count(), 11689512);  // torchvision resnet18
  EXPECT_EQ(enc.registry().entries().size(), 122u);
}

TEST(ResNet, TinyForwardShapesAndInit) {
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.small_stem = true;
  cfg.width = 4;
  cfg.head = Head::Mlp;
  cfg.out_dim = 8;
  Encoder enc(cfg);
  enc.init(1);
  EXPECT_FLOAT_EQ(enc.tensor("bn1.weight").data<float>()[0], 1.f);
  EXPECT_FLOAT_EQ(enc.tensor("layer1.0.bn1.running_var").data<float>()[3], 1.f);
  Tensor x = Tensor::zeros({2, 3, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)((i * 37) % 11) / 11.f;
  Tape tape;
  Tensor y = enc.forward(x, &tape);
  EXPECT_EQ(y.shape(), (Shape{2, 8}));
  EXPECT_EQ(enc.counts()[0], 1);  // train-mode BN counted one batch
  Tensor dx = enc.backward(Tensor::zeros({2, 8}), tape);
  EXPECT_FALSE(dx.defined());  // the stem conv computes no input gradient
}

// features() is the backbone alone: applying the fc head to it by hand gives forward()'s output.
TEST(ResNet, FeaturesAreTheHeadInput) {
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.small_stem = true;
  cfg.width = 2;
  cfg.head = Head::Linear;
  cfg.out_dim = 3;
  Encoder enc(cfg);
  enc.init(2);
  enc.set_train(false);  // eval BN: both calls see the same statistics
  Tensor x = Tensor::zeros({2, 3, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)((i * 13) % 7) / 7.f - 0.4f;
  Tensor f = enc.features(x);
  ASSERT_EQ(f.shape(), (Shape{2, cfg.feature_dim()}));
  Tensor y = enc.forward(x, nullptr);
  const float* w = enc.tensor("fc.weight").data<float>();
  const float* b = enc.tensor("fc.bias").data<float>();
  for (int n = 0; n < 2; ++n)
    for (int o = 0; o < 3; ++o) {
      double acc = b[o];
      for (int64_t i = 0; i < cfg.feature_dim(); ++i) acc += (double)f.data<float>()[n * cfg.feature_dim() + i] * w[o * cfg.feature_dim() + i];
      EXPECT_NEAR(y.data<float>()[n * 3 + o], acc, 1e-5);
    }
}

TEST(ResNet, BadConfigsAreRejected) {
  ResNetConfig cfg;
  cfg.depth = 200;
  EXPECT_THROW({ Encoder e(cfg); }, Error);
  cfg.depth = 18;
  Encoder e(cfg);
  EXPECT_THROW(e.forward(Tensor::zeros({2, 1, 8, 8}), nullptr), Error);
}

// The tape's saved bytes count each buffer once: conv -> ReLU -> conv keeps the input image (first conv)
// and the ReLU output, which the second conv saves again as its input.
TEST(Tape, SavedBytesCountEachBufferOnce) {
  ParamRegistry reg;
  NetState state;
  Conv2d conv1(&state, reg, "a", 3, 4, 3, 1, 1), conv2(&state, reg, "b", 4, 2, 1, 1, 0);
  ReLU relu(&state);
  std::vector<float> params((size_t)reg.size(Slot::Param), 0.01f), grads(params.size(), 0.f);
  state.w = {params.data(), grads.data(), nullptr, nullptr};
  Tensor x = Tensor::zeros({2, 3, 5, 5});
  Tape tape;
  Tensor h = tape.run(relu, tape.run(conv1, x));
  tape.run(conv2, h);
  EXPECT_EQ(tape.saved_bytes(), (int64_t)(2 * 3 * 5 * 5 + 2 * 4 * 5 * 5) * 4);
}

// Tape::backward drops each record once its backward has run: when the first layer's backward runs, only
// what that layer saved (its input) is still held; the ReLU output the later layers kept is gone.
TEST(Tape, BackwardDropsEachRecordWhenDone) {
  struct Probe : Layer {
    using Layer::Layer;
    const Tape* tape = nullptr;
    int64_t saved_at_backward = -1;
    Tensor forward(const Tensor& x, Record* rec) override {
      if (rec) rec->saved = {x};
      return x;
    }
    Tensor backward(const Tensor& dy, const Record&) override {
      saved_at_backward = tape->saved_bytes();
      return dy;
    }
  };
  ParamRegistry reg;
  NetState state;
  Probe probe(&state);
  Conv2d conv1(&state, reg, "a", 3, 4, 3, 1, 1), conv2(&state, reg, "b", 4, 2, 1, 1, 0);
  ReLU relu(&state);
  std::vector<float> params((size_t)reg.size(Slot::Param), 0.01f), grads(params.size(), 0.f);
  state.w = {params.data(), grads.data(), nullptr, nullptr};
  Tape tape;
  probe.tape = &tape;
  Tensor y = tape.run(conv2, tape.run(relu, tape.run(conv1, tape.run(probe, Tensor::zeros({2, 3, 5, 5})))));
  EXPECT_EQ(tape.saved_bytes(), (int64_t)(2 * 3 * 5 * 5 + 2 * 4 * 5 * 5) * 4);
  tape.backward(Tensor::zeros(y.shape()));
  EXPECT_EQ(probe.saved_at_backward, (int64_t)(2 * 3 * 5 * 5) * 4);
  EXPECT_EQ(tape.size(), 0u);
}

// A BN's backward must pair with its forward: a backend may rebuild the ReLU's mask from x when the forward
// added no residual (the CUDA one does), which is only right if backward_add follows forward_add and backward
// follows forward. A mismatched pair is refused, naming the fix; matched pairs run.
TEST(Tape, BatchNormBackwardPairsWithItsForward) {
  ParamRegistry reg;
  NetState state;
  BatchNorm2d bn(&state, reg, "bn", 4, /*relu=*/true);
  std::vector<float> params((size_t)reg.size(Slot::Param), 1.f), grads(params.size(), 0.f);
  std::vector<float> stats((size_t)reg.size(Slot::Stat), 0.f);
  std::vector<int64_t> counts((size_t)reg.size(Slot::Count), 0);
  state.w = {params.data(), grads.data(), stats.data(), counts.data()};
  Tensor x = Tensor::zeros({2, 4, 3, 3}), res = Tensor::zeros({2, 4, 3, 3}), dy = Tensor::zeros({2, 4, 3, 3});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)(i % 7) - 3.f;
  Record plain, added;
  bn.forward(x, &plain);
  bn.forward_add(x, res, &added);
  Tensor d_res;
  EXPECT_NO_THROW(bn.backward(dy, plain));
  EXPECT_NO_THROW(bn.backward_add(dy, added, &d_res));
  try {
    bn.backward(dy, added);
    ADD_FAILURE() << "backward on a forward_add record was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pair forward_add with backward_add"), std::string::npos) << e.what();
  }
  EXPECT_THROW(bn.backward_add(dy, plain, &d_res), Error);
}

// The ranges the GPU step hands to the gradient all-reduce as each tensor's gradient becomes final: one per
// learnable tensor, each covering the tensor, and together exactly the flat buffer (padding included).
TEST(Registry, ParamExtentsTileTheFlatBuffer) {
  Encoder enc(ResNetConfig{50, false, 64, Head::Mlp, 128, 3});
  const ParamRegistry& reg = enc.registry();
  const auto extents = reg.param_extents();
  int64_t covered = 0, entries = 0;
  for (const RegistryEntry& e : reg.entries()) {
    if (e.slot != Slot::Param) continue;
    ++entries;
    ASSERT_EQ(extents.count(e.offset), 1u) << e.name;
    EXPECT_GE(extents.at(e.offset), e.offset + e.numel()) << e.name << " is cut short";
    EXPECT_EQ(e.offset % ParamRegistry::kParamAlign, 0) << e.name;
  }
  EXPECT_EQ((int64_t)extents.size(), entries);
  int64_t expect_start = 0;
  for (const auto& [begin, end] : extents) {
    EXPECT_EQ(begin, expect_start) << "a gap or an overlap before offset " << begin;
    covered += end - begin;
    expect_start = end;
  }
  EXPECT_EQ(covered, reg.size(Slot::Param));
}
