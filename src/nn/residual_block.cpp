// Residual blocks as torchvision builds them. The block owns its backward: the gradient of the output ReLU
// flows into both the main path and the shortcut, and the two input gradients are summed.
#include "moco/layers.h"

namespace moco {

ResidualBlock::ResidualBlock(const NetState* s, ParamRegistry& reg, const std::string& name, bool bottleneck,
                             int64_t inplanes, int64_t planes, int64_t stride)
    : Layer(s) {
  const int64_t expansion = bottleneck ? 4 : 1;
  out_channels_ = planes * expansion;
  auto conv = [&](const char* n, int64_t ci, int64_t co, int64_t k, int64_t st) {
    main_.push_back(std::make_unique<Conv2d>(s, reg, name + "." + n, ci, co, k, st, k / 2));
  };
  auto bn = [&](const char* n, int64_t c) { main_.push_back(std::make_unique<BatchNorm2d>(s, reg, name + "." + n, c)); };
  auto relu = [&] { main_.push_back(std::make_unique<ReLU>(s)); };
  if (bottleneck) {  // v1.5: the stride sits on the 3x3 conv
    conv("conv1", inplanes, planes, 1, 1), bn("bn1", planes), relu();
    conv("conv2", planes, planes, 3, stride), bn("bn2", planes), relu();
    conv("conv3", planes, out_channels_, 1, 1), bn("bn3", out_channels_);
  } else {
    conv("conv1", inplanes, planes, 3, stride), bn("bn1", planes), relu();
    conv("conv2", planes, planes, 3, 1), bn("bn2", planes);
  }
  if (stride != 1 || inplanes != out_channels_) {
    shortcut_.push_back(std::make_unique<Conv2d>(s, reg, name + ".downsample.0", inplanes, out_channels_, 1, stride, 0));
    shortcut_.push_back(std::make_unique<BatchNorm2d>(s, reg, name + ".downsample.1", out_channels_));
  }
}

Tensor ResidualBlock::forward(const Tensor& x, Record* rec) {
  Tensor h = x;
  for (auto& l : main_) h = run_child(*l, h, rec);
  Tensor identity = x;
  for (auto& l : shortcut_) identity = run_child(*l, identity, rec);
  Tensor y = state_->ops->add_relu(h, identity);
  if (rec) rec->saved = {y};
  return y;
}

Tensor ResidualBlock::backward(const Tensor& dy, const Record& rec) {
  // children: main_.size() records of the main path, then shortcut_.size() of the shortcut
  Tensor d = state_->ops->relu_backward(rec.saved[0], dy);
  Tensor d_main = d;
  for (size_t i = main_.size(); i-- > 0;) d_main = main_[i]->backward(d_main, rec.children[i]);
  Tensor d_short = d;
  for (size_t i = shortcut_.size(); i-- > 0;) d_short = shortcut_[i]->backward(d_short, rec.children[main_.size() + i]);
  return state_->ops->add(d_main, d_short);
}

}  // namespace moco
