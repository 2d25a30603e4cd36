// The layers: shape checks and bookkeeping for the tape; the arithmetic is the backend's (backend.h), so
// the same layer objects run on the CPU and on the GPU.
#include "moco/layers.h"

#include <functional>
#include <set>

namespace moco {

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
  while (!records_.empty()) {
    dy = records_.back().layer->backward(dy, records_.back());
    records_.pop_back();  // a tensor an earlier record also saved stays with that record
  }
  return dy;
}

// ---------------------------------------------------------------- Conv2d
Conv2d::Conv2d(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t ci, int64_t co, int64_t k,
               int64_t stride, int64_t pad)
    : Layer(s), ci_(ci), co_(co), k_(k), stride_(stride), pad_(pad) {
  w_off_ = reg.add(name + ".weight", {co, ci, k, k}, Slot::Param);
}

Tensor Conv2d::forward(const Tensor& x, Record* rec) {
  x.expect_shape({-1, ci_, -1, -1}, "conv2d input");
  cpu::ConvShape s{x.size(0), ci_, x.size(2), x.size(3), co_, k_, k_, stride_, pad_};
  MOCO_CHECK(s.ho() >= 1 && s.wo() >= 1, "conv2d input ", shape_str(x.shape()), " is smaller than its ", k_, "x", k_,
             " kernel; use larger images");
  Tensor y = state_->ops->conv_forward(s, state_->w, w_off_, x);
  if (rec) rec->saved = {x};
  return y;
}

Tensor Conv2d::backward(const Tensor& dy, const Record& rec) {
  const Tensor& x = rec.saved[0];
  cpu::ConvShape s{x.size(0), ci_, x.size(2), x.size(3), co_, k_, k_, stride_, pad_};
  return state_->ops->conv_backward(s, state_->w, w_off_, x, dy, input_grad);
}

void Conv2d::backward_add(const Tensor& dy, const Record& rec, Tensor& dx_sum) {
  const Tensor& x = rec.saved[0];
  cpu::ConvShape s{x.size(0), ci_, x.size(2), x.size(3), co_, k_, k_, stride_, pad_};
  state_->ops->conv_backward_add(s, state_->w, w_off_, x, dy, dx_sum);
}

// ---------------------------------------------------------------- BatchNorm2d
BatchNorm2d::BatchNorm2d(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t c, bool relu)
    : Layer(s), c_(c), relu_(relu) {
  slots_.gamma = reg.add(name + ".weight", {c}, Slot::Param);
  slots_.beta = reg.add(name + ".bias", {c}, Slot::Param);
  slots_.mean = reg.add(name + ".running_mean", {c}, Slot::Stat);
  slots_.var = reg.add(name + ".running_var", {c}, Slot::Stat);
  slots_.count = reg.add(name + ".num_batches_tracked", {}, Slot::Count);
}

Tensor BatchNorm2d::forward(const Tensor& x, Record* rec) { return run(x, nullptr, rec); }

Tensor BatchNorm2d::forward_add(const Tensor& x, const Tensor& residual, Record* rec) {
  MOCO_CHECK(residual.shape() == x.shape(), "residual of shape ", shape_str(residual.shape()),
             " does not match the batchnorm2d input ", shape_str(x.shape()));
  return run(x, &residual, rec);
}

// Saved for backward, in train mode: {x, mean, invstd, the backend's ReLU mask, y}, where y (for the ReLU's
// mask) is undefined without the ReLU or when the backend kept a mask of its own; in eval mode: {x, y}, y
// undefined without the ReLU.
Tensor BatchNorm2d::run(const Tensor& x, const Tensor* residual, Record* rec) {
  x.expect_shape({-1, c_, -1, -1}, "batchnorm2d input");
  Backend& ops = *state_->ops;
  cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), state_->train ? state_->bn_groups : 1};
  MOCO_CHECK(s.n % s.groups == 0, "batch of ", s.n, " does not split into ", s.groups,
             " BN groups; use a batch size divisible by the number of groups");
  Tensor y;
  if (state_->train) {
    BnSaved sv;
    y = ops.bn_train_forward(s, state_->w, slots_, x, residual, relu_, rec ? &sv : nullptr);
    if (rec) rec->saved = {x, sv.mean, sv.invstd, sv.relu_mask, relu_ && !sv.relu_mask.defined() ? y : Tensor()};
  } else {  // eval mode serves feature extraction: BN, add and ReLU one after the other
    y = ops.bn_eval_forward(s, state_->w, slots_, x);
    if (residual) y = relu_ ? ops.add_relu(y, *residual) : ops.add(y, *residual);
    else if (relu_) y = ops.relu_forward(y);
    if (rec) rec->saved = {x, relu_ ? y : Tensor()};
  }
  if (rec) rec->residual = residual != nullptr;
  return y;
}

Tensor BatchNorm2d::backward(const Tensor& dy, const Record& rec) { return backward_add(dy, rec, nullptr); }

Tensor BatchNorm2d::backward_add(const Tensor& dy, const Record& rec, Tensor* d_residual) {
  // a backend may rebuild the ReLU's mask from x when no residual was added (the CUDA one does), so the two
  // calls must pair: forward_add with backward_add, forward with backward
  MOCO_CHECK(rec.residual == (d_residual != nullptr), "batchnorm2d backward: the forward ",
             rec.residual ? "added" : "did not add", " a residual, but this backward ",
             d_residual ? "asks" : "does not ask", " for its gradient (pair forward_add with backward_add)");
  Backend& ops = *state_->ops;
  const Tensor& x = rec.saved[0];
  const Tensor* y = rec.saved.back().defined() ? &rec.saved.back() : nullptr;
  const bool train = rec.saved.size() == 5;
  if (train) {
    const BnSaved sv{rec.saved[1], rec.saved[2], rec.saved[3]};
    cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), sv.mean.size(0)};
    return ops.bn_train_backward(s, state_->w, slots_, x, sv, y, relu_, dy, d_residual);
  }
  const Tensor g = relu_ ? ops.relu_backward(*y, dy) : dy;  // the gradient at the pre-ReLU sum
  if (d_residual) *d_residual = g;
  cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), 1};
  return ops.bn_eval_backward(s, state_->w, slots_, x, g);
}

Tensor BatchNorm2d::recompute_output(const Record& rec) {
  MOCO_CHECK(rec.saved.size() == 5 && !rec.residual, "batchnorm2d: only a train-mode forward without a residual can "
             "rebuild its output");
  const Tensor& x = rec.saved[0];
  const BnSaved sv{rec.saved[1], rec.saved[2], rec.saved[3]};
  cpu::BNShape s{x.size(0), c_, x.size(2) * x.size(3), sv.mean.size(0)};
  return state_->ops->bn_train_recompute(s, state_->w, slots_, x, sv, relu_);
}

// ---------------------------------------------------------------- ReLU, pools
Tensor ReLU::forward(const Tensor& x, Record* rec) {
  Tensor y = state_->ops->relu_forward(x);
  if (rec) rec->saved = {y};
  return y;
}

Tensor ReLU::backward(const Tensor& dy, const Record& rec) { return state_->ops->relu_backward(rec.saved[0], dy); }

static cpu::PoolShape stem_pool_shape(const Shape& x) { return {x[0], x[1], x[2], x[3], 3, 2, 1}; }

Tensor MaxPool::forward(const Tensor& x, Record* rec) {
  MOCO_CHECK(x.dim() == 4, "maxpool input must be (N, C, H, W), got ", shape_str(x.shape()));
  Tensor argmax;  // (N, C, Ho, Wo) the winning input of each window, kept only for a backward
  Tensor y = state_->ops->maxpool_forward(stem_pool_shape(x.shape()), x, rec ? &argmax : nullptr);
  if (rec) {
    rec->saved = {argmax};
    rec->input_shape = x.shape();
  }
  return y;
}

Tensor MaxPool::backward(const Tensor& dy, const Record& rec) {
  return state_->ops->maxpool_backward(stem_pool_shape(rec.input_shape), rec.saved[0], dy);
}

Tensor GlobalAvgPool::forward(const Tensor& x, Record* rec) {
  MOCO_CHECK(x.dim() == 4, "avgpool input must be (N, C, H, W), got ", shape_str(x.shape()));
  Tensor y = state_->ops->avgpool_forward(x);
  if (rec) rec->input_shape = x.shape();
  return y;
}

Tensor GlobalAvgPool::backward(const Tensor& dy, const Record& rec) {
  return state_->ops->avgpool_backward(rec.input_shape, dy);
}

// ---------------------------------------------------------------- Linear
Linear::Linear(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t in, int64_t out)
    : Layer(s), in_(in), out_(out) {
  w_off_ = reg.add(name + ".weight", {out, in}, Slot::Param);
  b_off_ = reg.add(name + ".bias", {out}, Slot::Param);
}

Tensor Linear::forward(const Tensor& x, Record* rec) {
  x.expect_shape({-1, in_}, "linear input");
  Tensor y = state_->ops->linear_forward(state_->w, w_off_, b_off_, in_, out_, x);
  if (rec) rec->saved = {x};
  return y;
}

Tensor Linear::backward(const Tensor& dy, const Record& rec) {
  return state_->ops->linear_backward(state_->w, w_off_, b_off_, in_, out_, rec.saved[0], dy);
}

}  // namespace moco
