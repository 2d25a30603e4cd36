// Backend: the leaf ops of one device at the tensor level, which is all a Layer calls. The CPU backend runs
// the reference loops of cpu_ops.h on contiguous NCHW fp32 tensors; the CUDA backend (src/cuda) runs cuDNN,
// cuBLAS and the kernels of kernels/ on channels-last tensors in bf16 or fp32. Layers, the tape, the ResNet
// builder and the parameter registry are the same objects on both devices: an Encoder switches
// device by switching its backend and its flat buffers.
//
// Conventions, as in cpu_ops.h: outputs and input gradients are fresh tensors; parameter gradients
// ACCUMULATE into the encoder's gradient buffer (which the step zeroes once).
#pragma once
#include <cstdint>

#include "moco/cpu_ops.h"
#include "moco/registry.h"
#include "moco/tensor.h"

namespace moco {

// Offsets of one BatchNorm2d's tensors in the flat buffers (Param, Param, Stat, Stat, Count).
struct BnSlots {
  int64_t gamma, beta, mean, var, count;
};
// torch.nn.BatchNorm2d's defaults.
constexpr float kBnEps = 1e-5f, kBnMomentum = 0.1f;

// What a train-mode BatchNorm forward keeps for its backward, besides its input.
struct BnSaved {
  Tensor mean, invstd;  // (groups, C) fp32: each split-BN group's batch mean and inverse std
  // The ReLU's mask in the backend's own form, when it keeps one, which its backward then reads instead of
  // the output (the CUDA backend in bf16: a bit an element, for a forward that added a residual); else
  // undefined, and the backward needs the forward's output for the mask.
  Tensor relu_mask;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // The dtype of activations and of their gradients (F32 on the CPU; BF16 or F32 on the GPU).
  virtual DType activation_dtype() const = 0;
  // Uninitialised memory of this device: 4-D shapes get the backend's activation layout.
  virtual Tensor empty(const Shape& shape, DType dtype) = 0;

  // Convolution without bias; the weight is "<w_off>" in the Param buffer, (Co, Ci, kh, kw).
  virtual Tensor conv_forward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x) = 0;
  // Returns dx (undefined when !want_dx); dw accumulates into the gradient buffer.
  virtual Tensor conv_backward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                               const Tensor& dy, bool want_dx) = 0;
  // The same, with dx added into dx_sum (x's shape) in place instead of returned: a residual block's two
  // paths meet at its input, and the GPU adds as the convolution writes (no pass of its own over the sum).
  // dx_sum must not share its storage with a tensor still in use.
  virtual void conv_backward_add(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                                 const Tensor& dy, Tensor& dx_sum) = 0;

  // BatchNorm in train mode (batch statistics per split-BN group, running statistics updated), fused with
  // the tail that follows it in a ResNet: y = [relu](bn(x) [+ residual]). What the backward needs besides x
  // is returned through `saved`; null when no backward follows (the key encoder), so nothing is kept for one.
  virtual Tensor bn_train_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                  const Tensor* residual, bool relu, BnSaved* saved) = 0;
  // Its backward: y is the forward's output (read only when relu and saved.relu_mask is undefined, for the
  // mask; may be null otherwise); d_residual (nullable) receives the gradient of the residual input, and is
  // asked for exactly when the forward had one (a backend may rebuild the mask from x when it was not).
  virtual Tensor bn_train_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                   const BnSaved& saved, const Tensor* y, bool relu, const Tensor& dy,
                                   Tensor* d_residual) = 0;
  // The output of a train-mode forward without a residual, again, bit for bit, from its input and the
  // statistics it saved (the running statistics are not touched): a network that drops a BN+ReLU output after
  // its forward rebuilds it for the backward of the convolution that read it (NetState::recompute_bn_relu).
  virtual Tensor bn_train_recompute(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                    const BnSaved& saved, bool relu) = 0;
  // BatchNorm in eval mode (running statistics).
  virtual Tensor bn_eval_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x) = 0;
  virtual Tensor bn_eval_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                  const Tensor& dy) = 0;

  virtual Tensor relu_forward(const Tensor& x) = 0;
  virtual Tensor relu_backward(const Tensor& y, const Tensor& dy) = 0;  // from the forward OUTPUT y
  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;
  virtual Tensor add_relu(const Tensor& a, const Tensor& b) = 0;         // relu(a + b): a residual block's tail

  // The ImageNet stem's 3x3 stride-2 max-pool; argmax is the backend's own index tensor, null when no
  // backward follows (none is then kept).
  virtual Tensor maxpool_forward(const cpu::PoolShape& s, const Tensor& x, Tensor* argmax) = 0;
  virtual Tensor maxpool_backward(const cpu::PoolShape& s, const Tensor& argmax, const Tensor& dy) = 0;
  // (N, C, H, W) -> (N, C) and back.
  virtual Tensor avgpool_forward(const Tensor& x) = 0;
  virtual Tensor avgpool_backward(const Shape& x_shape, const Tensor& dy) = 0;

  // y (N, out) = x (N, in) W^T + b, with W "<w_off>" (out, in) and b "<b_off>" (out) in the Param buffer.
  virtual Tensor linear_forward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                                const Tensor& x) = 0;
  virtual Tensor linear_backward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                                 const Tensor& x, const Tensor& dy) = 0;
};

// The reference backend: cpu_ops.h on contiguous NCHW fp32 tensors from the heap.
Backend& cpu_backend();

}  // namespace moco
