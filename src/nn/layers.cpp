#include "moco/layers.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "moco/cpu_ops.h"

namespace moco {

static void expect_cpu_f32(const Tensor& x, const char* layer) {
  MOCO_CHECK(x.device() == Device::CPU && x.dtype() == DType::F32 && x.is_contiguous(), layer,
             " expects a contiguous cpu f32 tensor, got ", device_name(x.device()), " ", dtype_name(x.dtype()),
             " of shape ", shape_str(x.shape()));
}

Tensor Layer::run_child(Layer& child, const Tensor& x, Record* parent) {
  if (!parent) return child.forward(x, nullptr);
  parent->children.push_back(Record{&child, {}, {}, {}});
  return child.forward(x, &parent->children.back());
}

Tensor Tape::run(Layer& layer, const Tensor& x) {
  records_.push_back(Record{&layer, {}, {}, {}});
  return layer.forward(x, &records_.back());
}

int64_t Tape::saved_bytes() const {
  std::set<const void*> seen;
  int64_t bytes = 0;
  std::function<void(const Record&)> visit = [&](const Record& r) {
    for (const Tensor& t : r.saved)
      if (t.defined() && seen.insert(t.raw()).second) bytes += (int64_t)t.nbytes();
    for (const Record& c : r.children) visit(c);
  };
  for (const Record& r : records_) visit(r);
  return bytes;
}

Tensor Tape::backward(Tensor dy) {
  for (size_t i = records_.size(); i-- > 0;) dy = records_[i].layer->backward(dy, records_[i]);
  return dy;
}

// ---------------------------------------------------------------- Conv2d
Conv2d::Conv2d(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t ci, int64_t co, int64_t k,
               int64_t stride, int64_t pad)
    : Layer(s), ci_(ci), co_(co), k_(k), stride_(stride), pad_(pad) {
  w_off_ = reg.add(name + ".weight", {co, ci, k, k}, Slot::Param);
}

Tensor Conv2d::forward(const Tensor& x, Record* rec) {
  expect_cpu_f32(x, "conv2d");
  x.expect_shape({-1, ci_, -1, -1}, "conv2d input");
  cpu::ConvShape s{x.size(0), ci_, x.size(2), x.size(3), co_, k_, k_, stride_, pad_};
  Tensor y = Tensor::empty({s.n, co_, s.ho(), s.wo()}, DType::F32);
  cpu::conv2d_forward(s, x.data<float>(), state_->w.params + w_off_, y.data<float>());
  if (rec) rec->saved = {x};
  return y;
}

Tensor Conv2d::backward(const Tensor& dy, const Record& rec) {
  const Tensor& x = rec.saved[0];
  cpu::ConvShape s{x.size(0), ci_, x.size(2), x.size(3), co_, k_, k_, stride_, pad_};
  Tensor dx = input_grad ? Tensor::empty(x.shape(), DType::F32) : Tensor();
  cpu::conv2d_backward(s, x.data<float>(), state_->w.params + w_off_, dy.data<float>(),
                       input_grad ? dx.data<float>() : nullptr, state_->w.grads + w_off_);
  return dx;
}

// ---------------------------------------------------------------- BatchNorm2d
BatchNorm2d::BatchNorm2d(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t c) : Layer(s), c_(c) {
  gamma_off_ = reg.add(name + ".weight", {c}, Slot::Param);
  beta_off_ = reg.add(name + ".bias", {c}, Slot::Param);
  mean_off_ = reg.add(name + ".running_mean", {c}, Slot::Stat);
  var_off_ = reg.add(name + ".running_var", {c}, Slot::Stat);
  count_off_ = reg.add(name + ".num_batches_tracked", {}, Slot::Count);
}

Tensor BatchNorm2d::forward(const Tensor& x, Record* rec) {
  expect_cpu_f32(x, "batchnorm2d");
  x.expect_shape({-1, c_, -1, -1}, "batchnorm2d input");
  const WeightsView& w = state_->w;
  cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), state_->train ? state_->bn_groups : 1};
  MOCO_CHECK(s.n % s.groups == 0, "batch of ", s.n, " does not split into ", s.groups,
             " BN groups; use a batch size divisible by the number of groups");
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  if (state_->train) {
    Tensor mean = Tensor::empty({s.groups, c_}, DType::F32), invstd = Tensor::empty({s.groups, c_}, DType::F32);
    cpu::batchnorm_train_forward(s, x.data<float>(), w.params + gamma_off_, w.params + beta_off_, kEps, kMomentum,
                                 y.data<float>(), mean.data<float>(), invstd.data<float>(), w.stats + mean_off_,
                                 w.stats + var_off_, w.counts + count_off_);
    if (rec) rec->saved = {x, mean, invstd};
  } else {
    cpu::batchnorm_eval_forward(s, x.data<float>(), w.params + gamma_off_, w.params + beta_off_, w.stats + mean_off_,
                                w.stats + var_off_, kEps, y.data<float>());
    if (rec) rec->saved = {x};
  }
  return y;
}

Tensor BatchNorm2d::backward(const Tensor& dy, const Record& rec) {
  const WeightsView& w = state_->w;
  const Tensor& x = rec.saved[0];
  Tensor dx = Tensor::empty(x.shape(), DType::F32);
  if (rec.saved.size() == 3) {  // recorded in train mode
    const Tensor& mean = rec.saved[1];
    cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), mean.size(0)};
    cpu::batchnorm_train_backward(s, x.data<float>(), w.params + gamma_off_, mean.data<float>(),
                                  rec.saved[2].data<float>(), dy.data<float>(), dx.data<float>(),
                                  w.grads + gamma_off_, w.grads + beta_off_);
  } else {
    cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), 1};
    cpu::batchnorm_eval_backward(s, x.data<float>(), w.params + gamma_off_, w.stats + mean_off_, w.stats + var_off_,
                                 kEps, dy.data<float>(), dx.data<float>(), w.grads + gamma_off_, w.grads + beta_off_);
  }
  return dx;
}

// ---------------------------------------------------------------- ReLU, pools
Tensor ReLU::forward(const Tensor& x, Record* rec) {
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  cpu::relu_forward(x.numel(), x.data<float>(), y.data<float>());
  if (rec) rec->saved = {y};
  return y;
}

Tensor ReLU::backward(const Tensor& dy, const Record& rec) {
  Tensor dx = Tensor::empty(dy.shape(), DType::F32);
  cpu::relu_backward(dy.numel(), rec.saved[0].data<float>(), dy.data<float>(), dx.data<float>());
  return dx;
}

static cpu::PoolShape stem_pool_shape(const Shape& x) { return {x[0], x[1], x[2], x[3], 3, 2, 1}; }

Tensor MaxPool::forward(const Tensor& x, Record* rec) {
  expect_cpu_f32(x, "maxpool");
  cpu::PoolShape s = stem_pool_shape(x.shape());
  Tensor y = Tensor::empty({s.n, s.c, s.ho(), s.wo()}, DType::F32);
  Tensor argmax = Tensor::empty(y.shape(), DType::I64);
  cpu::maxpool_forward(s, x.data<float>(), y.data<float>(), argmax.data<int64_t>());
  if (rec) {
    rec->saved = {argmax};
    rec->input_shape = x.shape();
  }
  return y;
}

Tensor MaxPool::backward(const Tensor& dy, const Record& rec) {
  cpu::PoolShape s = stem_pool_shape(rec.input_shape);
  Tensor dx = Tensor::empty(rec.input_shape, DType::F32);
  cpu::maxpool_backward(s, rec.saved[0].data<int64_t>(), dy.data<float>(), dx.data<float>());
  return dx;
}

Tensor GlobalAvgPool::forward(const Tensor& x, Record* rec) {
  expect_cpu_f32(x, "avgpool");
  Tensor y = Tensor::empty({x.size(0), x.size(1)}, DType::F32);
  cpu::avgpool_forward(x.size(0), x.size(1), x.size(2) * x.size(3), x.data<float>(), y.data<float>());
  if (rec) rec->input_shape = x.shape();
  return y;
}

Tensor GlobalAvgPool::backward(const Tensor& dy, const Record& rec) {
  const Shape& s = rec.input_shape;
  Tensor dx = Tensor::empty(s, DType::F32);
  cpu::avgpool_backward(s[0], s[1], s[2] * s[3], dy.data<float>(), dx.data<float>());
  return dx;
}

// ---------------------------------------------------------------- Linear
Linear::Linear(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t in, int64_t out)
    : Layer(s), in_(in), out_(out) {
  w_off_ = reg.add(name + ".weight", {out, in}, Slot::Param);
  b_off_ = reg.add(name + ".bias", {out}, Slot::Param);
}

Tensor Linear::forward(const Tensor& x, Record* rec) {
  expect_cpu_f32(x, "linear");
  x.expect_shape({-1, in_}, "linear input");
  Tensor y = Tensor::empty({x.size(0), out_}, DType::F32);
  cpu::linear_forward(x.size(0), in_, out_, x.data<float>(), state_->w.params + w_off_, state_->w.params + b_off_,
                      y.data<float>());
  if (rec) rec->saved = {x};
  return y;
}

Tensor Linear::backward(const Tensor& dy, const Record& rec) {
  const Tensor& x = rec.saved[0];
  Tensor dx = Tensor::empty(x.shape(), DType::F32);
  cpu::linear_backward(x.size(0), in_, out_, x.data<float>(), state_->w.params + w_off_, dy.data<float>(),
                       dx.data<float>(), state_->w.grads + w_off_, state_->w.grads + b_off_);
  return dx;
}

}  // namespace moco
