#include "gpu_features.h"

#include "check.h"
#include "cuda_backend.h"
#include "device_buffer.h"
#include "dtype_dispatch.h"
#include "gpu_knn.h"
#include "gpu_linear_probe.h"
#include "moco/cuda_runtime.h"
#include "network_input.h"
#include "nhwc_ops.cuh"
#include "weight_slots.h"

namespace moco::cuda {

namespace {

class GpuFeatures final : public FeatureExtractor {
 public:
  GpuFeatures(const Encoder& host, DType act)
      : act_(act), enc_(host.config(), /*with_grads=*/false) {
    int device = 0;
    MOCO_CUDA_CHECK(cudaGetDevice(&device));
    what_ = "cuda " + std::to_string(device) + ": " + device_description(device);
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    backend_ = std::make_unique<CudaBackend>(act, stream_);
    const ParamRegistry& reg = enc_.registry();
    params_ = DeviceBuffer<float>(host.params(), "feature encoder parameters");
    stats_ = DeviceBuffer<float>(host.stats(), "feature encoder BN statistics");
    counts_ = DeviceBuffer<int64_t>(host.counts(), "feature encoder BN counters");
    compute_ = DeviceBuffer<char>(reg.size(Slot::Param) * dtype_size(act), "feature encoder compute weights");
    const std::vector<kernels::WeightSlot> slots = compute_weight_slots(reg);
    slots_ = DeviceBuffer<kernels::WeightSlot>(slots, "compute weight slots");
    MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads ran on the legacy stream
    with_compute_type(act_, [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kernels::pack_weights<T>(slots_.get(), (int)slots.size(), reg.size(Slot::Param), params_.get(),
                               static_cast<T*>(static_cast<void*>(compute_.get())), stream_);
    });
    WeightsView w;
    w.params = params_.get(), w.stats = stats_.get(), w.counts = counts_.get(), w.compute = compute_.get();
    enc_.bind(backend_.get(), w);
    enc_.set_train(false);  // BN with the running statistics; nothing is updated
    what_ += act == DType::BF16 ? ", bf16" : ", fp32";
  }
  ~GpuFeatures() override {
    backend_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  Tensor features(const Tensor& x, FeatureLayer at) override {
    MOCO_CHECK(x.device() == Device::CPU, "images must be on the host, got ", device_name(x.device()));
    const ViewBatch v = view_batch(x, "the images");
    Tensor staged = backend_->empty({v.n, 3 * v.h * v.w}, v.pixel);  // (N, 3*H*W) as the host holds it
    MOCO_CUDA_CHECK(cudaMemcpyAsync(staged.raw(), x.raw(), x.nbytes(), cudaMemcpyHostToDevice, stream_));
    Tensor input = backend_->empty({v.n, 3, v.h, v.w}, act_);  // (N, 3, H, W) channels-last
    to_network_input(v, staged.raw(), act_, input.raw(), stream_);
    Tensor out;  // (N, D) fp32 on the device
    with_compute_type(act_, [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      // (N, D) in the compute dtype; the head (linear layers and a ReLU, no BN) follows the pool
      Tensor f = at == FeatureLayer::Head ? enc_.forward(input, nullptr) : enc_.features(input);
      out = backend_->empty(f.shape(), DType::F32);
      kernels::cast<T, float>(f.numel(), static_cast<const T*>(f.raw()), out.data<float>(), stream_);
    });
    Tensor host = Tensor::empty(out.shape(), DType::F32);  // (N, D)
    MOCO_CUDA_CHECK(cudaMemcpyAsync(host.raw(), out.raw(), out.nbytes(), cudaMemcpyDeviceToHost, stream_));
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }
  // 8-bit views: a quarter of the bytes to copy, normalised on the device as in training.
  DType view_dtype() const override { return DType::U8; }
  // The probe trains on this device, on this extractor's stream, so its steps follow the features in order.
  std::unique_ptr<LinearProbe> linear_probe(int64_t dim, int64_t classes, std::vector<float> initial,
                                            const SgdConfig& sgd) override {
    return make_gpu_linear_probe(dim, classes, initial, sgd, stream_);
  }
  double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t) override {
    return cuda::knn_top1(bank, query, classes, k, t, stream_);
  }
  std::string describe() const override { return what_; }
  bool copy_matches(const Encoder& host) override {
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));  // whatever ran on the copy has finished
    return params_.download() == host.params() && stats_.download() == host.stats() &&
           counts_.download() == host.counts();
  }

 private:
  DType act_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudaBackend> backend_;
  Encoder enc_;  // the host encoder's layers and registry, bound to the buffers below
  DeviceBuffer<float> params_, stats_;      // (Param), (Stat)
  DeviceBuffer<int64_t> counts_;            // (Count)
  DeviceBuffer<char> compute_;              // (Param) in the compute dtype
  DeviceBuffer<kernels::WeightSlot> slots_;  // conv and linear weights
  std::string what_;
};

}  // namespace

std::unique_ptr<FeatureExtractor> make_gpu_features(const Encoder& host, DType act) {
  return std::make_unique<GpuFeatures>(host, act);
}

}  // namespace moco::cuda
