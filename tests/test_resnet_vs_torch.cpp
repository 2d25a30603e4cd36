// Tiny ResNet-18 (small stem) and ResNet-50 (ImageNet stem) forward and backward against the PyTorch twin's
// float64 run, and our ResNet key
// names and shapes against torchvision's own.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "model_io.h"

using namespace moco;
using namespace moco::test;

static void forward_backward_matches(const char* file, int depth, bool small_stem) {
  Fixture f(file);
  ResNetConfig cfg;
  cfg.depth = depth;
  cfg.width = 4;
  cfg.small_stem = small_stem;
  cfg.head = Head::Linear;
  cfg.out_dim = 10;
  Encoder enc(cfg);
  load_state(enc, f, "init.");
  Tape tape;
  Tensor y = enc.forward(f.get("x"), &tape);
  expect_within_torch_f32("y", y.data<float>(), f.get("y"), f.get("err32.y").data<double>()[0]);
  enc.backward(f.get("dy"), tape);
  for (const auto& e : enc.registry().entries()) {
    if (e.slot != Slot::Param) continue;
    const std::string key = "grad." + e.name;
    expect_within_torch_f32(key, enc.grad(e.name).data<float>(), f.get(key), f.get("err32." + key).data<double>()[0]);
  }
  // running statistics and counters after the train-mode forward
  expect_encoder_within_torch_f32(enc, f, "after.", "after.", "err32.after.");
}

TEST(ResNetVsTorch, TinyResNet18SmallStemForwardBackward) { forward_backward_matches("resnet18_tiny.bin", 18, true); }
TEST(ResNetVsTorch, TinyResNet50ImageNetStemForwardBackward) { forward_backward_matches("resnet50_tiny.bin", 50, false); }

static void expect_same_keys_as_torchvision(int depth, const char* file) {
  std::ifstream in(std::string(MOCO_FIXTURE_DIR) + "/" + file);
  ASSERT_TRUE(in.good()) << file;
  ResNetConfig cfg;
  cfg.depth = depth;
  cfg.head = Head::Linear;
  cfg.out_dim = 1000;
  Encoder enc(cfg, false);
  const auto& entries = enc.registry().entries();
  std::string line;
  size_t i = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string name;
    ls >> name;
    Shape shape;
    int64_t d;
    while (ls >> d) shape.push_back(d);
    ASSERT_LT(i, entries.size()) << "torchvision has more keys than ours, next: " << name;
    EXPECT_EQ(entries[i].name, name) << "entry " << i;
    EXPECT_EQ(entries[i].shape, shape) << name;
    ++i;
  }
  EXPECT_EQ(i, entries.size());
}

TEST(ResNetVsTorch, ResNet50KeysAndShapesEqualTorchvision) { expect_same_keys_as_torchvision(50, "torchvision_resnet50_keys.txt"); }
TEST(ResNetVsTorch, ResNet18KeysAndShapesEqualTorchvision) { expect_same_keys_as_torchvision(18, "torchvision_resnet18_keys.txt"); }
