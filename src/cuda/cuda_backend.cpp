#include "cuda_backend.h"

#include <cuda_bf16.h>

#include "batchnorm_nhwc.cuh"
#include "blas_handle.h"
#include "check.h"
#include "convolution.h"
#include "dtype_dispatch.h"
#include "nhwc_ops.cuh"

namespace moco::cuda {

namespace {

void* cuda_alloc(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n) != cudaSuccess) {
    cudaGetLastError();  // not sticky: the cache reports the failure with its own numbers
    return nullptr;
  }
  return p;
}
void cuda_free(void* p) { cudaFree(p); }

cudaDataType blas_type(DType dt) { return dt == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

}  // namespace

struct CudaBackend::Impl {
  explicit Impl(cudaStream_t stream) : conv(stream) {
    MOCO_CUBLAS_CHECK(cublasSetStream(blas.get(), stream));
  }
  Convolutions conv;
  BlasHandle blas;
  void* bn_ws = nullptr;  // grown to the largest BN workspace seen
  size_t bn_ws_bytes = 0;
};

CudaBackend::CudaBackend(DType act, cudaStream_t stream)
    : act_(act),
      stream_(stream),
      clock_(stream),
      cache_(std::make_unique<BlockCache>(&cuda_alloc, &cuda_free, "GPU activations")),
      impl_(std::make_unique<Impl>(stream)) {
  MOCO_CHECK(act == DType::BF16 || act == DType::F32, "GPU activations must be bf16 or f32, got ", dtype_name(act));
}

CudaBackend::~CudaBackend() {
  if (impl_ && impl_->bn_ws) cudaFree(impl_->bn_ws);
}

void CudaBackend::set_host_wait(std::function<void()> wait) {
  host_wait_ = wait;
  impl_->conv.set_host_wait(std::move(wait));
}

void CudaBackend::freeze() {
  cache_->freeze();
  impl_->conv.freeze();
}

std::string CudaBackend::conv_plans() const { return impl_->conv.plans(); }
ConvApi CudaBackend::conv_api() const { return impl_->conv.api(); }
std::string CudaBackend::describe_convs() const { return impl_->conv.describe(); }
void CudaBackend::use_conv_plans(const std::string& text) { impl_->conv.use_plans(text); }

size_t CudaBackend::workspace_bytes() const { return impl_->conv.workspace_bytes() + impl_->bn_ws_bytes; }

Tensor CudaBackend::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape) MOCO_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  const size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
  void* p = cache_->get(bytes);
  BlockCache* cache = cache_.get();
  return Tensor::adopt(p, bytes, shape, dtype, Device::CUDA, [cache, bytes](void* q) { cache->put(q, bytes); },
                       shape.size() == 4 ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous);
}

void* CudaBackend::bn_workspace(const cpu::BNShape& s) {
  const size_t need = kernels::batchnorm_workspace_bytes(s.n, s.hw, s.c, s.groups);
  if (need > impl_->bn_ws_bytes) {
    MOCO_CHECK(!cache_->frozen(), "the BN workspace must grow to ", need, " bytes after warm-up (shape n=", s.n,
               " hw=", s.hw, " c=", s.c, ")");
    if (impl_->bn_ws) {
      if (host_wait_)  // the old workspace may still be in use
        host_wait_();
      else
        MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));
      MOCO_CUDA_CHECK(cudaFree(impl_->bn_ws));
    }
    impl_->bn_ws = nullptr;
    MOCO_CUDA_CHECK(cudaMalloc(&impl_->bn_ws, need));
    impl_->bn_ws_bytes = need;
  }
  return impl_->bn_ws;
}

// ---- argument checks: every GPU op takes activations of this backend's dtype, on the device, 4-D ones
// channels-last, and names the op in its complaint.
static void expect_act(const Tensor& t, DType act, const char* what) {
  MOCO_CHECK(t.defined() && t.device() == Device::CUDA && t.dtype() == act, what, " expects a cuda ", dtype_name(act),
             " tensor, got ", t.defined() ? device_name(t.device()) : "undefined", " ", dtype_name(t.dtype()),
             " of shape ", shape_str(t.shape()));
  MOCO_CHECK(t.dim() == 4 ? t.is_channels_last() : t.is_contiguous(), what, " expects ",
             t.dim() == 4 ? "a channels-last" : "a contiguous", " tensor of shape ", shape_str(t.shape()));
}

static char* at(void* base, DType dt, int64_t offset) {
  MOCO_CHECK(base != nullptr, "the encoder has no compute copy of its weights on the GPU");
  return static_cast<char*>(base) + (size_t)offset * dtype_size(dt);
}

template <class F>
void CudaBackend::timed(const char* name, F&& f) {
  clock_.time(name, [&] { with_compute_type(act_, f); });
}

// ------------------------------------------------------------------------------------ convolution
Tensor CudaBackend::conv_forward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x) {
  expect_act(x, act_, "conv2d");
  Tensor y = empty({s.n, s.co, s.ho(), s.wo()}, act_);  // (N, Co, Ho, Wo) channels-last
  clock_.time("conv forward", [&] { impl_->conv.forward(s, act_, x.raw(), at(w.compute, act_, w_off), y.raw()); });
  return y;
}

void CudaBackend::conv_gradients(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                                 const Tensor& dy, const Tensor* dx, bool add) {
  expect_act(x, act_, "conv2d"), expect_act(dy, act_, "conv2d gradient");
  clock_.time("conv filter gradient",
              [&] { impl_->conv.backward_filter(s, act_, x.raw(), dy.raw(), at(w.compute_grads, act_, w_off)); });
  ready(w_off);
  if (!dx) return;
  clock_.time("conv data gradient",
              [&] { impl_->conv.backward_data(s, act_, dy.raw(), at(w.compute, act_, w_off), dx->raw(), add); });
}

Tensor CudaBackend::conv_backward(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                                  const Tensor& dy, bool want_dx) {
  Tensor dx = want_dx ? empty(x.shape(), act_) : Tensor();  // (N, Ci, H, W) channels-last
  conv_gradients(s, w, w_off, x, dy, want_dx ? &dx : nullptr, /*add=*/false);
  return dx;
}

void CudaBackend::conv_backward_add(const cpu::ConvShape& s, const WeightsView& w, int64_t w_off, const Tensor& x,
                                    const Tensor& dy, Tensor& dx_sum) {
  expect_act(dx_sum, act_, "conv2d input gradient sum");
  MOCO_CHECK(dx_sum.shape() == x.shape(), "conv2d input gradient sum of shape ", shape_str(dx_sum.shape()),
             " does not match the input ", shape_str(x.shape()));
  conv_gradients(s, w, w_off, x, dy, &dx_sum, /*add=*/true);
}

// ------------------------------------------------------------------------------------ batch norm
// One pass for statistics, one for the normalisation with the residual add and the ReLU fused in.
// With a residual and a ReLU (each block's last BN) the bf16 forward also writes the ReLU's mask as bits,
// which the backward reads instead of y (kernels/batchnorm_nhwc.cuh): 2 bytes an element less in each of its
// two passes. Without a residual the backward rebuilds the mask from x and needs neither; without a backward to
// come (saved null: the key encoder) no mask is written.
Tensor CudaBackend::bn_train_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                     const Tensor* residual, bool relu, BnSaved* saved) {
  expect_act(x, act_, "batchnorm2d");
  if (residual) expect_act(*residual, act_, "batchnorm2d residual");
  Tensor y = empty(x.shape(), act_);
  BnSaved local;  // when no backward follows: the statistics are still written (the kernels need somewhere)
  BnSaved& sv = saved ? *saved : local;
  sv.mean = empty({s.groups, s.c}, DType::F32);    // (groups, C)
  sv.invstd = empty({s.groups, s.c}, DType::F32);  // (groups, C)
  const bool bits = saved && relu && residual && act_ == DType::BF16 &&
                    kernels::batchnorm_relu_mask_fits<__nv_bfloat16>(s.c);
  sv.relu_mask = bits ? empty({s.n * s.hw * s.c / 8}, DType::U8) : Tensor();  // (N * HW * C / 8) bytes
  void* ws = bn_workspace(s);
  timed("bn forward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::batchnorm_train_forward<T>(s.n, s.hw, s.c, s.groups, static_cast<const T*>(x.raw()), w.params + o.gamma,
                                        w.params + o.beta, kBnEps, kBnMomentum,
                                        residual ? static_cast<const T*>(residual->raw()) : nullptr, relu,
                                        static_cast<T*>(y.raw()), sv.mean.data<float>(), sv.invstd.data<float>(),
                                        w.stats + o.mean, w.stats + o.var, w.counts + o.count, ws, stream_,
                                        bits ? sv.relu_mask.data<uint8_t>() : nullptr);
  });
  return y;
}

Tensor CudaBackend::bn_train_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                      const BnSaved& saved, const Tensor* y, bool relu, const Tensor& dy,
                                      Tensor* d_residual) {
  expect_act(x, act_, "batchnorm2d"), expect_act(dy, act_, "batchnorm2d gradient");
  MOCO_CHECK(w.grads != nullptr, "batchnorm2d backward needs the encoder's gradient buffer");
  const bool bits = saved.relu_mask.defined();
  MOCO_CHECK(!relu || y != nullptr || bits, "batchnorm2d backward through its ReLU needs the forward's output or "
             "its mask");
  // Without a residual (no d_residual asked: the forward added none) the kernels rebuild the ReLU's mask from x,
  // which they read anyway, bit for bit as y gave it, and skip reading y (kernels/batchnorm_nhwc.cuh); with
  // one they read the mask bits the forward wrote, or y.
  const bool mask_needs_y = relu && d_residual != nullptr && !bits;
  Tensor dx = empty(x.shape(), act_);
  if (d_residual) *d_residual = empty(x.shape(), act_);
  void* ws = bn_workspace(s);
  timed("bn backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::batchnorm_train_backward<T>(s.n, s.hw, s.c, s.groups, static_cast<const T*>(x.raw()), w.params + o.gamma,
                                         w.params + o.beta, saved.mean.data<float>(), saved.invstd.data<float>(),
                                         mask_needs_y ? static_cast<const T*>(y->raw()) : nullptr, relu,
                                         static_cast<const T*>(dy.raw()),
                                         d_residual ? static_cast<T*>(d_residual->raw()) : nullptr,
                                         static_cast<T*>(dx.raw()), w.grads + o.gamma, w.grads + o.beta, ws, stream_,
                                         bits ? saved.relu_mask.data<uint8_t>() : nullptr);
  });
  ready(o.gamma), ready(o.beta);
  return dx;
}

// The forward's apply pass again, on the statistics it saved: the same kernel on the same values.
Tensor CudaBackend::bn_train_recompute(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                       const BnSaved& saved, bool relu) {
  expect_act(x, act_, "batchnorm2d");
  MOCO_CHECK(saved.mean.defined() && saved.invstd.defined(), "batchnorm2d: rebuilding the output needs the "
             "statistics its forward saved");
  Tensor y = empty(x.shape(), act_);
  timed("bn recompute", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::batchnorm_train_apply<T>(s.n, s.hw, s.c, s.groups, static_cast<const T*>(x.raw()), w.params + o.gamma,
                                      w.params + o.beta, saved.mean.data<float>(), saved.invstd.data<float>(), relu,
                                      static_cast<T*>(y.raw()), stream_);
  });
  return y;
}

Tensor CudaBackend::bn_eval_forward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x) {
  expect_act(x, act_, "batchnorm2d");
  Tensor y = empty(x.shape(), act_);
  timed("bn eval forward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::batchnorm_eval_forward<T>(s.n, s.hw, s.c, static_cast<const T*>(x.raw()), w.params + o.gamma,
                                       w.params + o.beta, w.stats + o.mean, w.stats + o.var, kBnEps,
                                       static_cast<T*>(y.raw()), stream_);
  });
  return y;
}

Tensor CudaBackend::bn_eval_backward(const cpu::BNShape& s, const WeightsView& w, const BnSlots& o, const Tensor& x,
                                     const Tensor& dy) {
  expect_act(x, act_, "batchnorm2d"), expect_act(dy, act_, "batchnorm2d gradient");
  MOCO_CHECK(w.grads != nullptr, "batchnorm2d backward needs the encoder's gradient buffer");
  Tensor dx = empty(x.shape(), act_);
  void* ws = bn_workspace(s);
  timed("bn eval backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::batchnorm_eval_backward<T>(s.n, s.hw, s.c, static_cast<const T*>(x.raw()), w.params + o.gamma,
                                        w.stats + o.mean, w.stats + o.var, kBnEps, static_cast<const T*>(dy.raw()),
                                        static_cast<T*>(dx.raw()), w.grads + o.gamma, w.grads + o.beta, ws, stream_);
  });
  ready(o.gamma), ready(o.beta);
  return dx;
}

// ------------------------------------------------------------------------------------ pointwise
Tensor CudaBackend::relu_forward(const Tensor& x) {
  expect_act(x, act_, "relu");
  Tensor y = empty(x.shape(), act_);
  timed("relu", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::relu_forward<T>(x.numel(), static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), stream_);
  });
  return y;
}

Tensor CudaBackend::relu_backward(const Tensor& y, const Tensor& dy) {
  expect_act(y, act_, "relu"), expect_act(dy, act_, "relu gradient");
  Tensor dx = empty(dy.shape(), act_);
  timed("relu backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::relu_backward<T>(dy.numel(), static_cast<const T*>(y.raw()), static_cast<const T*>(dy.raw()),
                              static_cast<T*>(dx.raw()), stream_);
  });
  return dx;
}

Tensor CudaBackend::add(const Tensor& a, const Tensor& b) {
  expect_act(a, act_, "add"), expect_act(b, act_, "add");
  MOCO_CHECK(a.shape() == b.shape(), "add of shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()));
  Tensor y = empty(a.shape(), act_);
  timed("add", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::add_forward<T>(a.numel(), static_cast<const T*>(a.raw()), static_cast<const T*>(b.raw()),
                            static_cast<T*>(y.raw()), stream_);
  });
  return y;
}

Tensor CudaBackend::add_relu(const Tensor& a, const Tensor& b) {
  Tensor y = add(a, b);
  timed("relu", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::relu_forward<T>(y.numel(), static_cast<const T*>(y.raw()), static_cast<T*>(y.raw()), stream_);
  });
  return y;
}

// ------------------------------------------------------------------------------------ pools
Tensor CudaBackend::maxpool_forward(const cpu::PoolShape& s, const Tensor& x, Tensor* argmax) {
  expect_act(x, act_, "maxpool");
  MOCO_CHECK(s.k == 3 && s.stride == 2 && s.pad == 1, "the GPU max-pool is the ImageNet stem's 3x3/2 pad 1, got ",
             s.k, "x", s.k, "/", s.stride, " pad ", s.pad);
  Tensor y = empty({s.n, s.c, s.ho(), s.wo()}, act_);  // (N, C, Ho, Wo) channels-last
  if (argmax) *argmax = empty(y.shape(), DType::U8);  // (N, C, Ho, Wo) channels-last, place in the window 0..8
  timed("max-pool forward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::maxpool3x3s2_forward<T>(s.n, s.h, s.w, s.c, static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()),
                                     argmax ? argmax->data<uint8_t>() : nullptr, stream_);
  });
  return y;
}

Tensor CudaBackend::maxpool_backward(const cpu::PoolShape& s, const Tensor& argmax, const Tensor& dy) {
  expect_act(dy, act_, "maxpool gradient");
  Tensor dx = empty({s.n, s.c, s.h, s.w}, act_);  // (N, C, H, W) channels-last
  timed("max-pool backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::maxpool3x3s2_backward<T>(s.n, s.h, s.w, s.c, argmax.data<uint8_t>(), static_cast<const T*>(dy.raw()),
                                      static_cast<T*>(dx.raw()), stream_);
  });
  return dx;
}

Tensor CudaBackend::avgpool_forward(const Tensor& x) {
  expect_act(x, act_, "avgpool");
  Tensor y = empty({x.size(0), x.size(1)}, act_);  // (N, C)
  timed("avg-pool forward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::global_avgpool_forward<T>(x.size(0), x.size(2) * x.size(3), x.size(1), static_cast<const T*>(x.raw()),
                                       static_cast<T*>(y.raw()), stream_);
  });
  return y;
}

Tensor CudaBackend::avgpool_backward(const Shape& s, const Tensor& dy) {
  expect_act(dy, act_, "avgpool gradient");
  Tensor dx = empty(s, act_);  // (N, C, H, W) channels-last
  timed("avg-pool backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::global_avgpool_backward<T>(s[0], s[2] * s[3], s[1], static_cast<const T*>(dy.raw()),
                                        static_cast<T*>(dx.raw()), stream_);
  });
  return dx;
}

// ------------------------------------------------------------------------------------ linear
// Row-major y (N, out) = x (N, in) W^T is column-major y^T (out, N) = W (out, in) x^T, and a row-major
// (out, in) W is a column-major (in, out) matrix, hence the transposes below. fp32 accumulation either way
// (CUBLAS_COMPUTE_32F: no TF32 in the fp32 mode).
Tensor CudaBackend::linear_forward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                                   const Tensor& x) {
  expect_act(x, act_, "linear");
  const int64_t n = x.size(0);
  Tensor y = empty({n, out}, act_);  // (N, out)
  const float one = 1.f, zero = 0.f;
  const cudaDataType t = blas_type(act_);
  clock_.time("linear forward", [&] {
    MOCO_CUBLAS_CHECK(cublasGemmEx(impl_->blas.get(), CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)n, (int)in, &one,
                                   at(w.compute, act_, w_off), t, (int)in, x.raw(), t, (int)in, &zero, y.raw(), t,
                                   (int)out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    with_compute_type(act_, [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kernels::bias_add_forward<T>(n, out, w.params + b_off, static_cast<T*>(y.raw()), stream_);
    });
  });
  return y;
}

Tensor CudaBackend::linear_backward(const WeightsView& w, int64_t w_off, int64_t b_off, int64_t in, int64_t out,
                                    const Tensor& x, const Tensor& dy) {
  expect_act(x, act_, "linear"), expect_act(dy, act_, "linear gradient");
  MOCO_CHECK(w.grads != nullptr, "linear backward needs the encoder's gradient buffer");
  const int64_t n = x.size(0);
  const float one = 1.f, zero = 0.f;
  const cudaDataType t = blas_type(act_);
  Tensor dx = empty({n, in}, act_);  // (N, in)
  clock_.time("linear backward", [&] {
    // dW (out, in) = dy^T x: column-major dW^T (in, out) = x^T (in, N) . dy (N, out)
    MOCO_CUBLAS_CHECK(cublasGemmEx(impl_->blas.get(), CUBLAS_OP_N, CUBLAS_OP_T, (int)in, (int)out, (int)n, &one,
                                   x.raw(), t, (int)in, dy.raw(), t, (int)out, &zero, at(w.compute_grads, act_, w_off),
                                   t, (int)in, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    // dx (N, in) = dy W: column-major dx^T (in, N) = W^T (in, out) . dy^T (out, N)
    MOCO_CUBLAS_CHECK(cublasGemmEx(impl_->blas.get(), CUBLAS_OP_N, CUBLAS_OP_N, (int)in, (int)n, (int)out, &one,
                                   at(w.compute, act_, w_off), t, (int)in, dy.raw(), t, (int)out, &zero, dx.raw(), t,
                                   (int)in, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    with_compute_type(act_, [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kernels::bias_backward<T>(n, out, static_cast<const T*>(dy.raw()), w.grads + b_off, stream_);
    });
  });
  ready(w_off), ready(b_off);
  return dx;
}

}  // namespace moco::cuda
