// Residual blocks as torchvision builds them. Each BN that a ReLU follows does that ReLU itself, and the last
// BN of the block also adds the shortcut before its ReLU (BatchNorm2d::forward_add), which is the fusion the
// GPU wants; the arithmetic is torchvision's. The block owns its backward: the gradient at the block's sum
// flows into both the main path and the shortcut, and the two input gradients are summed: the shortcut's
// first, then the main path's first conv adds its own into it (Conv2d::backward_add), which on the GPU
// costs no pass over the sum of its own.
//
// With NetState::recompute_bn_relu the outputs of the BN+ReLU pairs inside the main path (each the input of
// the next convolution) are not kept for backward: the forward drops them from the records, and the backward
// rebuilds each from the BN's input and statistics, bit for bit, just before the convolution's backward that
// reads it. The forward drops both references, the convolution's and the BN's own (the CPU's BN reads its
// ReLU's mask from it; the GPU's takes the mask from x), so nothing holds the output between the passes:
// about a sixth of what ResNet-50 saves, for one more elementwise pass per inner BN.
#include "moco/layers.h"

namespace moco {

ResidualBlock::ResidualBlock(const NetState* s, ParamRegistry& reg, const std::string& name, bool bottleneck,
                             int64_t inplanes, int64_t planes, int64_t stride)
    : Layer(s) {
  const int64_t expansion = bottleneck ? 4 : 1;
  out_channels_ = planes * expansion;
  auto conv = [&](const char* n, int64_t ci, int64_t co, int64_t k, int64_t st) {
    auto c = std::make_unique<Conv2d>(s, reg, name + "." + n, ci, co, k, st, k / 2);
    if (main_.empty()) conv1_ = c.get();
    main_.push_back(std::move(c));
  };
  auto bn_relu = [&](const char* n, int64_t c) {
    main_.push_back(std::make_unique<BatchNorm2d>(s, reg, name + "." + n, c, /*relu=*/true));
  };
  // registration order is torchvision's state_dict order: convs and BNs of the main path, then downsample
  if (bottleneck) {  // v1.5: the stride sits on the 3x3 conv
    conv("conv1", inplanes, planes, 1, 1), bn_relu("bn1", planes);
    conv("conv2", planes, planes, 3, stride), bn_relu("bn2", planes);
    conv("conv3", planes, out_channels_, 1, 1);
    last_bn_ = std::make_unique<BatchNorm2d>(s, reg, name + ".bn3", out_channels_, /*relu=*/true);
  } else {
    conv("conv1", inplanes, planes, 3, stride), bn_relu("bn1", planes);
    conv("conv2", planes, planes, 3, 1);
    last_bn_ = std::make_unique<BatchNorm2d>(s, reg, name + ".bn2", out_channels_, /*relu=*/true);
  }
  if (stride != 1 || inplanes != out_channels_) {
    shortcut_.push_back(std::make_unique<Conv2d>(s, reg, name + ".downsample.0", inplanes, out_channels_, 1, stride, 0));
    shortcut_.push_back(std::make_unique<BatchNorm2d>(s, reg, name + ".downsample.1", out_channels_));
  }
}

// Records: main_.size() children of the main path, shortcut_.size() of the shortcut, then the last BN's.
Tensor ResidualBlock::forward(const Tensor& x, Record* rec) {
  Tensor h = x;
  for (auto& l : main_) h = run_child(*l, h, rec);
  if (rec && state_->train && state_->recompute_bn_relu)
    for (size_t i = 2; i < main_.size(); i += 2) {  // convs 2 and 3 read the outputs of BNs 1 and 2
      rec->children[i].saved.clear();
      rec->children[i - 1].saved.back() = Tensor();  // the BN's own copy (its ReLU's mask on the CPU)
    }
  Tensor identity = x;
  for (auto& l : shortcut_) identity = run_child(*l, identity, rec);
  if (!rec) return last_bn_->forward_add(h, identity, nullptr);
  rec->children.push_back(Record{last_bn_.get(), {}, {}, {}});
  return last_bn_->forward_add(h, identity, &rec->children.back());
}

Tensor ResidualBlock::backward_main(Tensor d_main, const Record& rec) {
  const bool rebuild = state_->train && state_->recompute_bn_relu;
  std::vector<Record> kids;  // with rebuild: the main path's records, where rebuilt outputs go back for a while
  if (rebuild) kids.assign(rec.children.begin(), rec.children.begin() + (std::ptrdiff_t)main_.size());
  for (size_t i = main_.size(); i-- > 1;) {
    if (!rebuild) {
      d_main = main_[i]->backward(d_main, rec.children[i]);
      continue;
    }
    if (i % 2 == 0) {  // a conv that read BN i - 1's output: rebuilt for it and for that BN's backward
      const Tensor y = static_cast<BatchNorm2d&>(*main_[i - 1]).recompute_output(kids[i - 1]);
      kids[i].saved = {y};
      kids[i - 1].saved.back() = y;
    }
    d_main = main_[i]->backward(d_main, kids[i]);
    kids[i] = Record{};  // its saved tensors, the rebuilt output among them, go as soon as they are used
  }
  return d_main;
}

Tensor ResidualBlock::backward(const Tensor& dy, const Record& rec) {
  Tensor d_short;  // the gradient at the block's sum, which the shortcut receives unchanged
  Tensor d_main = backward_main(last_bn_->backward_add(dy, rec.children.back(), &d_short), rec);
  for (size_t i = shortcut_.size(); i-- > 0;) d_short = shortcut_[i]->backward(d_short, rec.children[main_.size() + i]);
  // d_short is the shortcut's input gradient, a fresh tensor (a downsample conv's dx, or last_bn_'s d_residual,
  // which its ReLU makes a tensor of its own, never dy itself): conv1 adds the main path's into it
  conv1_->backward_add(d_main, rec.children[0], d_short);
  return d_short;
}

}  // namespace moco
