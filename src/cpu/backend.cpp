// The CPU backend: each op checks its input, allocates its output on the heap and runs the reference loop
// of cpu_ops.h. Everything is contiguous NCHW fp32.
#include "moco/backend.h"

namespace moco {
namespace {

const float* f32(const Tensor& t, const char* what) {
  MOCO_CHECK(t.device() == Device::CPU && t.dtype() == DType::F32 && t.is_contiguous(), what,
             " expects a contiguous cpu f32 tensor, got ", device_name(t.device()), " ", dtype_name(t.dtype()),
             " of shape ", shape_str(t.shape()));
  return t.data<float>();
}

Tensor like(const Shape& s) { return Tensor::empty(s, DType::F32); }

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  DType activation_dtype() const override { return DType::F32; }
  Tensor empty(const Shape& shape, DType dtype) override { return Tensor::empty(shape, dtype); }

  Tensor conv_forward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x) override {
    Tensor y = like({s.n, s.co, s.ho(), s.wo()});  // (N, Co, Ho, Wo)
    cpu::conv2d_forward(s, f32(x, "conv2d"), w.params + w_off, y.data<float>());
    return y;
  }
  Tensor conv_backward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                       const Tensor& dy, bool want_dx) override {
    Tensor dx = want_dx ? like(x.shape()) : Tensor();  // (N, Ci, H, W)
    cpu::conv2d_backward(s, f32(x, "conv2d"), w.params + w_off, f32(dy, "conv2d gradient"),
                         want_dx ? dx.data<float>() : nullptr, w.grads + w_off);
    return dx;
  }
  void conv_backward_add(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                         const Tensor& dy, Tensor& dx_sum) override {
    MOCO_CHECK(dx_sum.shape() == x.shape(), "conv2d input gradient sum of shape ", shape_str(dx_sum.shape()),
               " does not match the input ", shape_str(x.shape()));
    const Tensor dx = conv_backward(s, w, w_off, x, dy, true);
    float* sum = const_cast<float*>(f32(dx_sum, "conv2d input gradient sum"));
    cpu::add_forward(dx.numel(), sum, dx.data<float>(), sum);
  }

  Tensor bn_train_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                          const Tensor* residual, bool relu, BnSaved* saved) override {
    Tensor y = like(x.shape());
    BnSaved local;  // when no backward follows: the statistics are still computed, then dropped
    BnSaved& sv = saved ? *saved : local;
    sv.mean = like({s.groups, s.c});    // (groups, C)
    sv.invstd = like({s.groups, s.c});  // (groups, C)
    sv.relu_mask = Tensor();            // the backward takes the mask from y
    cpu::batchnorm_train_forward(s, f32(x, "batchnorm2d"), w.params + o.gamma, w.params + o.beta, kBnEps, kBnMomentum,
                                 y.data<float>(), sv.mean.data<float>(), sv.invstd.data<float>(),
                                 w.stats + o.mean, w.stats + o.var, w.counts + o.count);
    // the fused tail, as separate passes: the CPU is the reference, not the fast path
    if (residual) cpu::add_forward(y.numel(), y.data<float>(), f32(*residual, "residual"), y.data<float>());
    if (relu) cpu::relu_forward(y.numel(), y.data<float>(), y.data<float>());
    return y;
  }
  // The forward computes y from statistics in double, which it does not keep: computing them again from x in
  // the same order gives the same y, bit for bit (the float ones in `saved` would not).
  Tensor bn_train_recompute(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                            const BnSaved& /*saved*/, bool relu) override {
    Tensor y = like(x.shape());
    Tensor mean = like({s.groups, s.c}), invstd = like({s.groups, s.c});  // (groups, C), recomputed and dropped
    cpu::batchnorm_train_forward<float>(s, f32(x, "batchnorm2d"), w.params + o.gamma, w.params + o.beta, kBnEps,
                                        kBnMomentum, y.data<float>(), mean.data<float>(), invstd.data<float>(),
                                        nullptr, nullptr, nullptr);
    if (relu) cpu::relu_forward(y.numel(), y.data<float>(), y.data<float>());
    return y;
  }
  Tensor bn_train_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                           const BnSaved& saved, const Tensor* y, bool relu, const Tensor& dy,
                           Tensor* d_residual) override {
    MOCO_CHECK(!relu || y != nullptr, "batchnorm2d backward through its ReLU needs the forward's output");
    const Tensor g = relu ? relu_backward(*y, dy) : dy;  // the gradient at the pre-ReLU sum
    if (d_residual) *d_residual = g;
    Tensor dx = like(x.shape());
    cpu::batchnorm_train_backward(s, f32(x, "batchnorm2d"), w.params + o.gamma, saved.mean.data<float>(),
                                  saved.invstd.data<float>(), f32(g, "batchnorm2d gradient"), dx.data<float>(),
                                  w.grads + o.gamma, w.grads + o.beta);
    return dx;
  }
  Tensor bn_eval_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x) override {
    Tensor y = like(x.shape());
    cpu::batchnorm_eval_forward(s, f32(x, "batchnorm2d"), w.params + o.gamma, w.params + o.beta, w.stats + o.mean,
                                w.stats + o.var, kBnEps, y.data<float>());
    return y;
  }
  Tensor bn_eval_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                          const Tensor& dy) override {
    Tensor dx = like(x.shape());
    cpu::batchnorm_eval_backward(s, f32(x, "batchnorm2d"), w.params + o.gamma, w.stats + o.mean, w.stats + o.var,
                                 kBnEps, f32(dy, "batchnorm2d gradient"), dx.data<float>(), w.grads + o.gamma,
                                 w.grads + o.beta);
    return dx;
  }

  Tensor relu_forward(const Tensor& x) override {
    Tensor y = like(x.shape());
    cpu::relu_forward(x.numel(), f32(x, "relu"), y.data<float>());
    return y;
  }
  Tensor relu_backward(const Tensor& y, const Tensor& dy) override {
    Tensor dx = like(dy.shape());
    cpu::relu_backward(dy.numel(), f32(y, "relu"), f32(dy, "relu gradient"), dx.data<float>());
    return dx;
  }
  Tensor add(const Tensor& a, const Tensor& b) override {
    MOCO_CHECK(a.shape() == b.shape(), "add of shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()));
    Tensor y = like(a.shape());
    cpu::add_forward(y.numel(), f32(a, "add"), f32(b, "add"), y.data<float>());
    return y;
  }
  Tensor add_relu(const Tensor& a, const Tensor& b) override {
    Tensor y = add(a, b);
    cpu::relu_forward(y.numel(), y.data<float>(), y.data<float>());
    return y;
  }

  Tensor maxpool_forward(const cpu::PoolShape& s, const Tensor& x, Tensor* kept_argmax) override {
    Tensor y = like({s.n, s.c, s.ho(), s.wo()});                 // (N, C, Ho, Wo)
    const Tensor argmax = Tensor::empty(y.shape(), DType::I64);  // (N, C, Ho, Wo) the reference always writes it
    cpu::maxpool_forward(s, f32(x, "maxpool"), y.data<float>(), argmax.data<int64_t>());
    if (kept_argmax) *kept_argmax = argmax;
    return y;
  }
  Tensor maxpool_backward(const cpu::PoolShape& s, const Tensor& argmax, const Tensor& dy) override {
    Tensor dx = like({s.n, s.c, s.h, s.w});  // (N, C, H, W)
    cpu::maxpool_backward(s, argmax.data<int64_t>(), f32(dy, "maxpool gradient"), dx.data<float>());
    return dx;
  }
  Tensor avgpool_forward(const Tensor& x) override {
    Tensor y = like({x.size(0), x.size(1)});  // (N, C)
    cpu::avgpool_forward(x.size(0), x.size(1), x.size(2) * x.size(3), f32(x, "avgpool"), y.data<float>());
    return y;
  }
  Tensor avgpool_backward(const Shape& s, const Tensor& dy) override {
    Tensor dx = like(s);
    cpu::avgpool_backward(s[0], s[1], s[2] * s[3], f32(dy, "avgpool gradient"), dx.data<float>());
    return dx;
  }

  Tensor linear_forward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                        const Tensor& x) override {
    Tensor y = like({x.size(0), out});  // (N, out)
    cpu::linear_forward(x.size(0), in, out, f32(x, "linear"), w.params + w_off, w.params + b_off, y.data<float>());
    return y;
  }
  Tensor linear_backward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                         const Tensor& x, const Tensor& dy) override {
    Tensor dx = like(x.shape());  // (N, in)
    cpu::linear_backward(x.size(0), in, out, f32(x, "linear"), w.params + w_off, f32(dy, "linear gradient"),
                         dx.data<float>(), w.grads + w_off, w.grads + b_off);
    return dx;
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace moco
