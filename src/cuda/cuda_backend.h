// The CUDA backend: the Backend interface (include/moco/backend.h) on one GPU stream.
//
// Activations are channels-last in bf16 (training) or fp32 (the all-fp32 mode the tests hold tightly
// against the CPU). Convolutions go through cuDNN (convolution.h), linear layers through cuBLAS, and the rest
// through the kernels of kernels/batchnorm_nhwc.cuh and kernels/nhwc_ops.cuh. Weights: BN reads the fp32
// master parameters; convolutions and linear layers read the compute copy (WeightsView::compute) and write
// their weight gradients into WeightsView::compute_grads, which the step folds into the fp32 gradients as
// soon as each is computed (on_gradient_ready, kernels::unpack_weight_grad). Each conv and linear weight is
// used once per pass in a ResNet, so those gradients are written, not accumulated.
//
// Memory: activations come from a BlockCache (freeze() after warm-up turns any new device allocation into
// an error); the cuDNN workspace and the BN workspace grow only while new shapes arrive.
#pragma once
#include <cuda_runtime.h>

#include <functional>
#include <memory>

#include "moco/backend.h"
#include "convolution.h"
#include "moco/block_cache.h"
#include "op_clock.h"

namespace moco::cuda {

class CudaBackend final : public Backend {
 public:
  // act: DType::BF16 or DType::F32. All work is issued on `stream` (the caller's).
  CudaBackend(DType act, cudaStream_t stream);
  ~CudaBackend() override;

  Device device() const override { return Device::CUDA; }
  DType activation_dtype() const override { return act_; }
  Tensor empty(const Shape& shape, DType dtype) override;

  Tensor conv_forward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x) override;
  Tensor conv_backward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                       const Tensor& dy, bool want_dx) override;
  void conv_backward_add(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                         const Tensor& dy, Tensor& dx_sum) override;
  Tensor bn_train_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                          const Tensor* residual, bool relu, BnSaved* saved) override;
  Tensor bn_train_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                           const BnSaved& saved, const Tensor* y, bool relu, const Tensor& dy,
                           Tensor* d_residual) override;
  Tensor bn_train_recompute(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                            const BnSaved& saved, bool relu) override;
  Tensor bn_eval_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x) override;
  Tensor bn_eval_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                          const Tensor& dy) override;
  Tensor relu_forward(const Tensor& x) override;
  Tensor relu_backward(const Tensor& y, const Tensor& dy) override;
  Tensor add(const Tensor& a, const Tensor& b) override;
  Tensor add_relu(const Tensor& a, const Tensor& b) override;
  Tensor maxpool_forward(const cpu::PoolShape& s, const Tensor& x, Tensor* argmax) override;
  Tensor maxpool_backward(const cpu::PoolShape& s, const Tensor& argmax, const Tensor& dy) override;
  Tensor avgpool_forward(const Tensor& x) override;
  Tensor avgpool_backward(const Shape& x_shape, const Tensor& dy) override;
  Tensor linear_forward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                        const Tensor& x) override;
  Tensor linear_backward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                         const Tensor& x, const Tensor& dy) override;

  // Called with a Param offset as soon as a backward op has enqueued the last write of that tensor's
  // gradient (a conv or linear weight: into the compute-layout gradients; BN affine and linear biases: into
  // the fp32 gradients), so the step can fold it and start its all-reduce while backward goes on.
  void on_gradient_ready(std::function<void(int64_t offset)> f) { grad_ready_ = std::move(f); }

  // How the host waits for the stream before a cuDNN search or a workspace growth (warm-up only); see
  // Convolutions::set_host_wait. Empty: cudaStreamSynchronize.
  void set_host_wait(std::function<void()> wait);

  // After warm-up: no new device memory from here on (asserted by the caches).
  void freeze();
  BlockCache& activations() { return *cache_; }
  size_t workspace_bytes() const;  // cuDNN + BN workspaces
  // The convolutions' chosen cuDNN plans as text, and such text given back (Convolutions::plans/use_plans).
  std::string conv_plans() const;
  ConvApi conv_api() const;  // the API the convolutions were made with (MOCO_CONV_API)
  std::string describe_convs() const;
  void use_conv_plans(const std::string& text);
  // Device time per kind of op (off unless enabled; see op_clock.h). The step brackets its own kernels too.
  OpClock& op_clock() { return clock_; }

 private:
  // conv_backward and conv_backward_add: dw into the gradient buffer, then (dx non-null) the data gradient
  // written into dx, or with `add` added to what it holds
  void conv_gradients(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                      const Tensor& dy, const Tensor* dx, bool add);
  struct Impl;
  DType act_;
  cudaStream_t stream_;
  OpClock clock_;
  std::unique_ptr<BlockCache> cache_;
  std::unique_ptr<Impl> impl_;
  std::function<void(int64_t)> grad_ready_;
  std::function<void()> host_wait_;  // set_host_wait
  void* bn_workspace(const cpu::BNShape& s);
  void ready(int64_t offset) {
    if (grad_ready_) grad_ready_(offset);
  }
  // Runs f(T* tag) for the activation type, bracketed by the op clock under `name` (defined, and used, in
  // cuda_backend.cpp).
  template <class F>
  void timed(const char* name, F&& f);
};

}  // namespace moco::cuda
