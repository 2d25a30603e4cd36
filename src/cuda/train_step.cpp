#include "train_step.h"

#include <cstdio>
#include <exception>

#include "check.h"
#include "device_communicator.h"
#include "gpu_features.h"
#include "gpu_moco.h"
#include "pinned_host.h"
#include "moco/cuda_runtime.h"

namespace moco::cuda {

namespace {

class CudaTrainStep final : public DeviceStep {
 public:
  CudaTrainStep(Moco& host, Communicator& host_comm, const TrainOptions& o) {
    const LaunchInfo& li = o.launch;
    const int device = select_device(li);  // before the stream: it belongs to this rank's GPU
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // under mpirun the host communicator is MPI and carries NCCL's id; otherwise NCCL_COMM_ID does
    comm_ = make_gpu_communicator(li, stream_, host_comm.world_size() > 1 ? &host_comm : nullptr);
    const DType act = o.precision == "fp32" ? DType::F32 : DType::BF16;
    gpu_ = std::make_unique<GpuMoco>(host.config(), *comm_, act);
    gpu_->load_from(host);
    pinned_ = make_pinned_pool(device);
    what_ = "cuda " + std::to_string(device) + ": " + device_description(device) + ", " +
            (act == DType::BF16 ? "bf16" : "fp32") +
            (li.world > 1 ? ", NCCL over " + std::to_string(li.world) + " ranks" : "");
  }
  ~CudaTrainStep() override {
    // Torn down by an error (this destructor runs while it propagates): a collective of this step may still
    // wait for a peer that died, and freeing device memory would wait behind it. Abort the communicator first.
    if (std::uncaught_exceptions() > 0 && comm_) comm_->abandon();
    gpu_.reset();
    comm_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  StepStats step(const Tensor& x_q, const Tensor& x_k, float lr) override {
    // GpuMoco takes fp32 views too; training must hand the 8-bit ones it asked the loader for (view_dtype)
    MOCO_CHECK(x_q.dtype() == view_dtype(), "the GPU training step got ", dtype_name(x_q.dtype()), " views, ",
               "expected ", dtype_name(view_dtype()), " ones from the loader (LoaderConfig::view_dtype)");
    const StepStats st = gpu_->step(x_q, x_k, lr);
    // The shapes repeat from here on: a new device allocation after two steps is a bug, not a warm-up.
    if (++steps_ == 2) gpu_->freeze();
    return st;
  }
  void store_to(Moco& host) override { gpu_->store_to(host); }
  std::string describe() const override { return what_; }
  Communicator& communicator() override { return *comm_; }
  std::unique_ptr<FeatureExtractor> feature_extractor(const Encoder& host) override {
    return make_gpu_features(host, gpu_->compute_dtype());
  }
  std::function<Tensor(const Shape&, DType)> view_allocator() override {
    std::shared_ptr<RecyclingPool> pool = pinned_;
    return [pool](const Shape& shape, DType dtype) { return pool->take(shape, dtype); };
  }
  // 8-bit views: a quarter of the bytes through pinned memory, PCIe and the shuffle; the GPU normalises them.
  DType view_dtype() const override { return DType::U8; }

 private:
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceCommunicator> comm_;
  std::unique_ptr<GpuMoco> gpu_;
  std::shared_ptr<RecyclingPool> pinned_;  // page-locked: the loader's batches (view_allocator)
  std::string what_;
  int steps_ = 0;
};

}  // namespace

std::unique_ptr<DeviceStep> make_train_step(Moco& host, Communicator& comm, const TrainOptions& o) {
  const std::string reason = no_device_reason();
  if (!reason.empty()) {
    if (o.launch.rank == 0) std::fprintf(stderr, "cuda: %s\n", reason.c_str());
    return nullptr;
  }
  return std::make_unique<CudaTrainStep>(host, comm, o);
}

}  // namespace moco::cuda
