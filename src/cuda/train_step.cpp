#include "train_step.h"

#include <cstdio>
#include <exception>

#include "check.h"
#include "device_communicator.h"
#include "gpu_features.h"
#include "gpu_moco.h"
#include "pinned_host.h"
#include "view_stages.h"
#include "moco/cuda_runtime.h"

namespace moco::cuda {

namespace {

class CudaTrainStep final : public DeviceStep {
 public:
  CudaTrainStep(Moco& host, Communicator& host_comm, const TrainOptions& o, const AugmentRecipe& recipe) {
    const LaunchInfo& li = o.launch;
    const int device = select_device(li);  // before the stream: it belongs to this rank's GPU
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // under mpirun the host communicator is MPI and carries NCCL's id; otherwise NCCL_COMM_ID does
    comm_ = make_gpu_communicator(li, stream_, host_comm.world_size() > 1 ? &host_comm : nullptr);
    const DType act = o.precision == "fp32" ? DType::F32 : DType::BF16;
    gpu_ = std::make_unique<GpuMoco>(host.config(), *comm_, act);
    gpu_->load_from(host);
    pinned_ = make_pinned_pool(device);
    stages_ = std::make_unique<GpuViewStages>(recipe, stream_);
    what_ = "cuda " + std::to_string(device) + ": " + device_description(device) + ", " +
            (act == DType::BF16 ? "bf16" : "fp32") +
            (li.world > 1 ? ", NCCL over " + std::to_string(li.world) + " ranks" : "");
  }
  ~CudaTrainStep() override {
    // Torn down by an error (this destructor runs while it propagates): a collective of this step may still
    // wait for a peer that died, and freeing device memory would wait behind it. Abort the communicator first.
    if (std::uncaught_exceptions() > 0 && comm_) comm_->abandon();
    stages_.reset();  // everything that works on stream_ goes before it
    for (auto& c : crops_) c = DeviceBuffer<uint8_t>();
    gpu_.reset();
    comm_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  StepStats step(const Batch& batch, float lr) override {
    MOCO_CHECK(batch.views.size() == 2 && batch.params.size() == 2, "the GPU training step needs 2 views and ",
               "their decisions (LoaderConfig::stages_on_device), got ", batch.views.size(), " views and ",
               batch.params.size(), " sets of decisions");
    // The crops cross to the device, where their stages run: both on the compute stream, so the step's
    // kernels come after them, and the loss it reads back comes after the copies out of the batch's memory.
    for (const Tensor& host : batch.views)
      MOCO_CHECK(host.dtype() == DType::U8 && host.dim() == 4, "the GPU training step got ",
                 dtype_name(host.dtype()), " views, expected the loader's u8 crops");
    Tensor views[2];
    try {
      for (int v = 0; v < 2; ++v) {
        const Tensor& host = batch.views[(size_t)v];  // (N, S, S, 3) u8 crops
        if (crops_[v].size() != host.nbytes()) crops_[v] = DeviceBuffer<uint8_t>(host.nbytes(), "view crops");
        MOCO_CUDA_CHECK(
            cudaMemcpyAsync(crops_[v].get(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice, stream_));
        views[v] = Tensor::wrap(crops_[v].get(), host.shape(), DType::U8, Device::CUDA);
        stages_->apply(views[v], batch.params[(size_t)v]);
      }
    } catch (...) {
      cudaStreamSynchronize(stream_);  // no copy may still read the batch's memory once it goes back to the pool
      throw;
    }
    const StepStats st = gpu_->step(views[0], views[1], lr);
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
  // 8-bit crops: a quarter of the bytes through pinned memory, PCIe and the shuffle; the GPU applies their
  // colour jitter, grayscale, blur and flip (GpuViewStages) and normalises them.
  DType view_dtype() const override { return DType::U8; }
  bool stages_on_device() const override { return true; }

 private:
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceCommunicator> comm_;
  std::unique_ptr<GpuMoco> gpu_;
  std::shared_ptr<RecyclingPool> pinned_;  // page-locked: the loader's batches (view_allocator)
  std::unique_ptr<GpuViewStages> stages_;    // the views' stages after the crop
  DeviceBuffer<uint8_t> crops_[2];           // (N, S, S, 3) each: the query and key views on the device
  std::string what_;
  int steps_ = 0;
};

}  // namespace

std::unique_ptr<DeviceStep> make_train_step(Moco& host, Communicator& comm, const TrainOptions& o,
                                            const AugmentRecipe& recipe) {
  const std::string reason = no_device_reason();
  if (!reason.empty()) {
    if (o.launch.rank == 0) std::fprintf(stderr, "cuda: %s\n", reason.c_str());
    return nullptr;
  }
  return std::make_unique<CudaTrainStep>(host, comm, o, recipe);
}

}  // namespace moco::cuda
