#include "gpu_linear_probe.h"

#include <algorithm>
#include <array>

#include "blas_handle.h"
#include "check.h"
#include "device_buffer.h"
#include "flat_update.cuh"
#include "nhwc_ops.cuh"
#include "pinned_host.h"
#include "softmax_xent.cuh"

namespace moco::cuda {

namespace {

class GpuLinearProbe final : public LinearProbe {
 public:
  GpuLinearProbe(int64_t dim, int64_t classes, const std::vector<float>& initial, const SgdConfig& sgd,
                 cudaStream_t stream)
      : d_(dim), classes_(classes), sgd_(sgd), stream_(stream) {
    check_probe_parameters(initial, dim, classes);
    fc_ = DeviceBuffer<float>(initial, "probe parameters");
    grad_ = DeviceBuffer<float>(initial.size(), "probe gradients");
    momentum_ = DeviceBuffer<float>(std::vector<float>(initial.size(), 0.f), "probe SGD momentum");
    loss_ = DeviceBuffer<float>(1, "probe loss");
    hits_ = DeviceBuffer<int64_t>(2, "probe hits");
    MOCO_CUBLAS_CHECK(cublasSetStream(blas_.get(), stream_));
    MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads ran on the legacy stream
  }

  double train_step(const Tensor& features, const std::vector<int>& labels, float lr) override {
    const int64_t n = forward(features, labels);
    float* w = fc_.get();  // (classes, D), then the bias (classes)
    // loss and dlogits (in place of the logits), both / N as on the CPU
    kernels::softmax_xent(n, classes_, logits_.get(), labels_.get(), logits_.get(), loss_.get(), nullptr,
                          xent_ws_.get(), stream_);
    MOCO_CUDA_CHECK(cudaMemsetAsync(grad_.get(), 0, grad_.bytes(), stream_));
    // dW^T (D, classes; column-major) = x^T (D, N) . dlogits (N, classes)
    const float one = 1.f, zero = 0.f;
    MOCO_CUBLAS_CHECK(cublasGemmEx(blas_.get(), CUBLAS_OP_N, CUBLAS_OP_T, (int)d_, (int)classes_, (int)n, &one,
                                   feat_.get(), CUDA_R_32F, (int)d_, logits_.get(), CUDA_R_32F, (int)classes_, &zero,
                                   grad_.get(), CUDA_R_32F, (int)d_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    kernels::bias_backward<float>(n, classes_, logits_.get(), grad_.get() + classes_ * d_, stream_);
    kernels::sgd_momentum_step((int64_t)fc_.size(), lr, sgd_.momentum, sgd_.weight_decay, w, grad_.get(),
                               momentum_.get(), stream_);
    return read_back<float, 1>(loss_.get())[0];
  }

  TopHits count_correct(const Tensor& features, const std::vector<int>& labels) override {
    const int64_t n = forward(features, labels);
    kernels::softmax_xent(n, classes_, logits_.get(), labels_.get(), nullptr, loss_.get(), hits_.get(),
                          xent_ws_.get(), stream_);
    const std::array<int64_t, 2> hits = read_back<int64_t, 2>(hits_.get());  // top-1, top-5: one copy, one wait
    TopHits h;
    h.top1 = hits[0];
    h.top5 = hits[1];
    return h;
  }

  std::vector<float> parameters() const override {
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return fc_.download();
  }
  std::vector<float> momentum() const override {
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return momentum_.download();
  }
  void set_state(const std::vector<float>& params, const std::vector<float>& momentum) override {
    check_probe_parameters(params, d_, classes_);
    check_probe_parameters(momentum, d_, classes_);
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));  // nothing queued may still use the buffers
    fc_.upload(params);  // on the legacy stream, which the probe's non-blocking stream does not wait for
    momentum_.upload(momentum);
    MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // so both copies have landed before the next step reads them
  }

 private:
  // Uploads the batch and computes logits (N, classes) = x W^T + b; returns N.
  int64_t forward(const Tensor& features, const std::vector<int>& labels) {
    check_probe_batch(features, labels, d_, classes_);
    const int64_t n = features.size(0);
    if (n > rows_) {  // the first batch, or a larger one than before: buffers for n rows
      MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));  // nothing may still use the old ones
      feat_ = DeviceBuffer<float>((size_t)(n * d_), "probe features");
      logits_ = DeviceBuffer<float>((size_t)(n * classes_), "probe logits");
      labels_ = DeviceBuffer<int64_t>((size_t)n, "probe labels");
      xent_ws_ = DeviceBuffer<char>(kernels::softmax_xent_workspace_bytes(n), "probe softmax-CE workspace");
      rows_ = n;
    }
    labels_host_.assign(labels.begin(), labels.end());  // (N) int64, as the kernel takes them
    MOCO_CUDA_CHECK(cudaMemcpyAsync(feat_.get(), features.raw(), features.nbytes(), cudaMemcpyHostToDevice, stream_));
    MOCO_CUDA_CHECK(cudaMemcpyAsync(labels_.get(), labels_host_.data(), (size_t)n * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, stream_));
    // logits^T (classes, N; column-major) = W (classes, D) . x^T (D, N), then + b per row
    const float one = 1.f, zero = 0.f;
    MOCO_CUBLAS_CHECK(cublasGemmEx(blas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, (int)classes_, (int)n, (int)d_, &one,
                                   fc_.get(), CUDA_R_32F, (int)d_, feat_.get(), CUDA_R_32F, (int)d_, &zero,
                                   logits_.get(), CUDA_R_32F, (int)classes_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    kernels::bias_add_forward<float>(n, classes_, fc_.get() + classes_ * d_, logits_.get(), stream_);
    return n;
  }

  // N consecutive device values, copied in one transfer after everything queued before them.
  template <class T, size_t N>
  std::array<T, N> read_back(const T* device_values) {
    T* host = static_cast<T*>(result_host_.reserve(N * sizeof(T)));  // (N)
    MOCO_CUDA_CHECK(cudaMemcpyAsync(host, device_values, N * sizeof(T), cudaMemcpyDeviceToHost, stream_));
    // Also the point after which the caller may reuse the batch's host memory: the uploads came before.
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::array<T, N> out;
    std::copy(host, host + N, out.begin());
    return out;
  }

  int64_t d_, classes_;
  SgdConfig sgd_;
  cudaStream_t stream_;
  BlasHandle blas_;
  DeviceBuffer<float> fc_, grad_, momentum_;  // (classes * D + classes) each: [weight, bias]
  DeviceBuffer<float> loss_;                  // (1)
  DeviceBuffer<int64_t> hits_;                // (2) top-1, top-5
  int64_t rows_ = 0;                          // the batch the buffers below hold
  DeviceBuffer<float> feat_;                  // (N, D)
  DeviceBuffer<float> logits_;                // (N, classes); dlogits in place
  DeviceBuffer<int64_t> labels_;              // (N)
  DeviceBuffer<char> xent_ws_;                // softmax_xent_workspace_bytes(N)
  std::vector<int64_t> labels_host_;          // (N)
  PinnedBuffer result_host_;                  // the loss or the hit count read back
};

}  // namespace

std::unique_ptr<LinearProbe> make_gpu_linear_probe(int64_t dim, int64_t classes, const std::vector<float>& initial,
                                                   const SgdConfig& sgd, cudaStream_t stream) {
  return std::make_unique<GpuLinearProbe>(dim, classes, initial, sgd, stream);
}

}  // namespace moco::cuda
