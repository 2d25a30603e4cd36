// ResNet in torchvision's v1.5 topology (depths 18, 34, 50, 101, 152), with the ImageNet stem or the small-image stem
// (3x3 stride-1 conv, no max-pool), a width multiplier for tiny test models, and an optional head:
//   Head::Linear -> "fc"               in_features -> out_dim           (MoCo v1, or a classifier)
//   Head::Mlp    -> "fc.0", ReLU, "fc.2" in_features -> in_features -> out_dim  (MoCo v2)
// An Encoder owns its flat buffers (params, grads, BN stats, counters) and runs forward/backward.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "moco/layers.h"
#include "moco/registry.h"

namespace moco {

enum class Head { None, Linear, Mlp };

struct ResNetConfig {
  int depth = 50;           // 18, 34, 50, 101 or 152
  bool small_stem = false;  // CIFAR-style: conv1 3x3 stride 1, no max-pool
  int width = 64;           // channels of the stem and of layer1 (torchvision: 64)
  Head head = Head::None;
  int out_dim = 128;        // head output (MoCo dim, or number of classes)
  int in_channels = 3;

  int64_t feature_dim() const;  // backbone output: width * 8 * expansion (2048 for ResNet-50)
  std::string describe() const;
};

class Encoder {
 public:
  explicit Encoder(const ResNetConfig& cfg, bool with_grads = true);
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  const ResNetConfig& config() const { return cfg_; }
  const ParamRegistry& registry() const { return registry_; }

  // torchvision's initialisation from a counter-based generator keyed by (seed, entry index):
  // convs Kaiming normal (fan_out, ReLU gain); BN weight 1, bias 0, running mean 0, var 1, count 0;
  // Linear weight and bias uniform(+-1/sqrt(fan_in)).
  void init(uint64_t seed);

  // Backbone (+ head) forward. With a tape the layers record for backward; without one nothing is kept.
  Tensor forward(const Tensor& x, Tape* tape);
  // The backbone alone (no head), without a tape: (N, feature_dim()) pooled features, for kNN and the
  // linear probe.
  Tensor features(const Tensor& x);
  // dx for the tape's input; parameter gradients accumulate into grads().
  Tensor backward(const Tensor& dy, Tape& tape);

  // Runs the same layers on another device: `ops` is that device's backend and `w` points at this
  // encoder's flat buffers there (the caller owns them). bind(&cpu_backend(), host_view()) goes back.
  void bind(Backend* ops, const WeightsView& w);
  WeightsView host_view();  // the host buffers this object owns
  Backend& backend() const { return *state_.ops; }
  void set_train(bool train) { state_.train = train; }
  bool is_train() const { return state_.train; }
  void set_bn_groups(int groups) { state_.bn_groups = groups; }
  void set_recompute_bn_relu(bool on) { state_.recompute_bn_relu = on; }
  int bn_groups() const { return state_.bn_groups; }
  void zero_grad();

  std::vector<float>& params() { return params_; }    // (registry().size(Param))
  std::vector<float>& grads() { return grads_; }      // (registry().size(Param)); empty without grads
  std::vector<float>& stats() { return stats_; }      // (registry().size(Stat))
  std::vector<int64_t>& counts() { return counts_; }  // (registry().size(Count))
  const std::vector<float>& params() const { return params_; }
  const std::vector<float>& stats() const { return stats_; }
  const std::vector<int64_t>& counts() const { return counts_; }
  // A view of one named tensor in whichever buffer holds it (F32, or I64 for counters).
  Tensor tensor(const std::string& name);
  Tensor grad(const std::string& name);

 private:
  ResNetConfig cfg_;
  ParamRegistry registry_;
  NetState state_;
  std::vector<std::unique_ptr<Layer>> layers_;
  size_t backbone_layers_ = 0;  // layers_[0, backbone_layers_) end with the global average pool
  std::vector<float> params_, grads_, stats_;
  std::vector<int64_t> counts_;
};

}  // namespace moco
