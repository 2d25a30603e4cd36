#include "moco/resnet.h"

#include <cmath>
#include <sstream>

#include "moco/rng.h"

namespace moco {

static std::vector<int> stage_depths(int depth) {
  switch (depth) {
    case 18: return {2, 2, 2, 2};
    case 34: return {3, 4, 6, 3};
    case 50: return {3, 4, 6, 3};
    case 101: return {3, 4, 23, 3};
    case 152: return {3, 8, 36, 3};
  }
  fail("unsupported ResNet depth ", depth, "; expected 18, 34, 50, 101 or 152");
}

int64_t ResNetConfig::feature_dim() const { return (int64_t)width * 8 * (depth >= 50 ? 4 : 1); }

std::string ResNetConfig::describe() const {
  std::ostringstream os;
  os << "resnet" << depth << (small_stem ? "-small-stem" : "") << (width != 64 ? "-w" + std::to_string(width) : "")
     << (head == Head::Linear ? "+fc" : head == Head::Mlp ? "+mlp" : "") << (head != Head::None ? std::to_string(out_dim) : "");
  return os.str();
}

Encoder::Encoder(const ResNetConfig& cfg, bool with_grads) : cfg_(cfg) {
  MOCO_CHECK(cfg.width >= 1, "ResNet width must be >= 1, got ", cfg.width);
  MOCO_CHECK(cfg.head == Head::None || cfg.out_dim >= 1, "head output dimension must be >= 1, got ", cfg.out_dim);
  const std::vector<int> depths = stage_depths(cfg.depth);
  const bool bottleneck = cfg.depth >= 50;
  const NetState* s = &state_;
  ParamRegistry& reg = registry_;

  // stem
  auto conv1 = cfg.small_stem ? std::make_unique<Conv2d>(s, reg, "conv1", cfg.in_channels, cfg.width, 3, 1, 1)
                              : std::make_unique<Conv2d>(s, reg, "conv1", cfg.in_channels, cfg.width, 7, 2, 3);
  conv1->input_grad = false;  // nothing upstream of the image
  layers_.push_back(std::move(conv1));
  layers_.push_back(std::make_unique<BatchNorm2d>(s, reg, "bn1", cfg.width, /*relu=*/true));
  if (!cfg.small_stem) layers_.push_back(std::make_unique<MaxPool>(s));

  // four stages
  int64_t inplanes = cfg.width;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = (int64_t)cfg.width << stage;
    for (int b = 0; b < depths[stage]; ++b) {
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      auto block = std::make_unique<ResidualBlock>(
          s, reg, "layer" + std::to_string(stage + 1) + "." + std::to_string(b), bottleneck, inplanes, planes, stride);
      inplanes = block->out_channels();
      layers_.push_back(std::move(block));
    }
  }
  layers_.push_back(std::make_unique<GlobalAvgPool>(s));
  backbone_layers_ = layers_.size();

  // head
  const int64_t feat = cfg.feature_dim();
  if (cfg.head == Head::Linear) {
    layers_.push_back(std::make_unique<Linear>(s, reg, "fc", feat, cfg.out_dim));
  } else if (cfg.head == Head::Mlp) {
    layers_.push_back(std::make_unique<Linear>(s, reg, "fc.0", feat, feat));
    layers_.push_back(std::make_unique<ReLU>(s));
    layers_.push_back(std::make_unique<Linear>(s, reg, "fc.2", feat, cfg.out_dim));
  }

  params_.assign(reg.size(Slot::Param), 0.f);
  if (with_grads) grads_.assign(reg.size(Slot::Param), 0.f);
  stats_.assign(reg.size(Slot::Stat), 0.f);
  counts_.assign(reg.size(Slot::Count), 0);
  state_.w = host_view();
}

WeightsView Encoder::host_view() {
  WeightsView w;
  w.params = params_.data();
  w.grads = grads_.empty() ? nullptr : grads_.data();
  w.stats = stats_.data();
  w.counts = counts_.data();
  return w;
}

void Encoder::bind(Backend* ops, const WeightsView& w) {
  MOCO_CHECK(ops != nullptr && w.params && w.stats && w.counts, "Encoder::bind needs a backend and parameter, "
             "statistics and counter buffers");
  state_.ops = ops;
  state_.w = w;
}

void Encoder::init(uint64_t seed) {
  const auto& entries = registry_.entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    const RegistryEntry& e = entries[i];
    Rng rng(seed, mix_stream(0x1417, i));
    const std::string& n = e.name;
    auto ends_with = [&](const char* suf) {
      std::string s(suf);
      return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
    };
    if (e.slot == Slot::Count) {
      counts_[e.offset] = 0;
    } else if (e.slot == Slot::Stat) {
      float v = ends_with("running_var") ? 1.f : 0.f;
      for (int64_t j = 0; j < e.numel(); ++j) stats_[e.offset + j] = v;
    } else if (e.shape.size() == 4) {  // conv: Kaiming normal, fan_out, gain sqrt(2)
      const double std = std::sqrt(2.0 / (double)(e.shape[0] * e.shape[2] * e.shape[3]));
      for (int64_t j = 0; j < e.numel(); ++j) params_[e.offset + j] = (float)(std * rng.normal());
    } else if (n.rfind("fc", 0) == 0) {  // Linear: weight (out, in) and bias (out), bound 1/sqrt(in)
      const int64_t fan_in = ends_with(".weight") ? e.shape[1] : registry_.find(n.substr(0, n.size() - 4) + "weight").shape[1];
      const double bound = 1.0 / std::sqrt((double)fan_in);
      for (int64_t j = 0; j < e.numel(); ++j) params_[e.offset + j] = (float)rng.uniform(-bound, bound);
    } else {  // BN affine
      float v = ends_with(".weight") ? 1.f : 0.f;
      for (int64_t j = 0; j < e.numel(); ++j) params_[e.offset + j] = v;
    }
  }
}

Tensor Encoder::forward(const Tensor& x, Tape* tape) {
  MOCO_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_channels, "encoder input must be (N, ", cfg_.in_channels,
             ", H, W), got ", shape_str(x.shape()));
  MOCO_CHECK(tape == nullptr || state_.w.grads != nullptr,
             "this encoder has no gradient buffer; run it without a tape");
  Tensor h = x;
  for (auto& l : layers_) h = tape ? tape->run(*l, h) : l->forward(h, nullptr);
  return h;
}

Tensor Encoder::features(const Tensor& x) {
  MOCO_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_channels, "encoder input must be (N, ", cfg_.in_channels,
             ", H, W), got ", shape_str(x.shape()));
  Tensor h = x;
  for (size_t i = 0; i < backbone_layers_; ++i) h = layers_[i]->forward(h, nullptr);
  return h;
}

Tensor Encoder::backward(const Tensor& dy, Tape& tape) { return tape.backward(dy); }

void Encoder::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.f); }

Tensor Encoder::tensor(const std::string& name) {
  const RegistryEntry& e = registry_.find(name);
  switch (e.slot) {
    case Slot::Param: return Tensor::wrap(params_.data() + e.offset, e.shape, DType::F32);
    case Slot::Stat: return Tensor::wrap(stats_.data() + e.offset, e.shape, DType::F32);
    case Slot::Count: return Tensor::wrap(counts_.data() + e.offset, e.shape, DType::I64);
  }
  fail("unreachable");
}

Tensor Encoder::grad(const std::string& name) {
  const RegistryEntry& e = registry_.find(name);
  MOCO_CHECK(e.slot == Slot::Param && !grads_.empty(), "'", name, "' has no gradient");
  return Tensor::wrap(grads_.data() + e.offset, e.shape, DType::F32);
}

}  // namespace moco
