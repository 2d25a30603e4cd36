#include "train_step.h"

#include <cstdio>
#include <exception>
#include <vector>

#include "check.h"
#include "convolution.h"
#include "device_communicator.h"
#include "gpu_features.h"
#include "gpu_moco.h"
#include "pinned_host.h"
#include "view_stages.h"
#include "moco/cuda_runtime.h"

namespace moco::cuda {

namespace {

// A batch's two views on the device: the copies of its page-locked crops and their stages run on the copy
// stream, so that the batch after the current one (the loader's peek) moves in while the current step
// computes, instead of between two steps. Two of them alternate: one feeds the step, the other fills.
struct StagedBatch {
  DeviceBuffer<uint8_t> crops[2];  // (N, S, S, 3) each: the query and key views
  std::vector<Tensor> host;        // the batch's page-locked views, held until their copies have run
  int64_t epoch = -1, step = -1;   // the batch these views are (step -1: none)
  const void* source[2] = {};      // and its host memory: two batches of one position are still told apart
  cudaEvent_t staged = nullptr;    // on the copy stream: the copies and stages are done
  cudaEvent_t consumed = nullptr;  // on the compute stream: the step that read the views is done with them

  bool holds(const Batch& b) const {
    return step >= 0 && b.epoch == epoch && b.step == step && b.views[0].raw() == source[0] &&
           b.views[1].raw() == source[1];
  }
};

class CudaTrainStep final : public DeviceStep {
 public:
  CudaTrainStep(Moco& host, Communicator& host_comm, const TrainOptions& o, const AugmentRecipe& recipe) {
    const LaunchInfo& li = o.launch;
    const int device = select_device(li);  // before the streams: they belong to this rank's GPU
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    for (StagedBatch& s : staged_) {
      MOCO_CUDA_CHECK(cudaEventCreateWithFlags(&s.staged, cudaEventDisableTiming));
      MOCO_CUDA_CHECK(cudaEventCreateWithFlags(&s.consumed, cudaEventDisableTiming));
    }
    // under mpirun the host communicator is MPI and carries NCCL's id; otherwise NCCL_COMM_ID does
    comm_ = make_gpu_communicator(li, stream_, host_comm.world_size() > 1 ? &host_comm : nullptr);
    const DType act = o.precision == "fp32" ? DType::F32 : DType::BF16;
    gpu_ = std::make_unique<GpuMoco>(host.config(), *comm_, act);
    gpu_->load_from(host);
    pinned_ = make_pinned_pool(device);
    stages_ = std::make_unique<GpuViewStages>(recipe, copy_stream_);
    what_ = "cuda " + std::to_string(device) + ": " + device_description(device) + ", " +
            (act == DType::BF16 ? "bf16" : "fp32") + ", cuDNN " + conv_api_name(gpu_->conv_api()) + " API" +
            (li.world > 1 ? ", NCCL over " + std::to_string(li.world) + " ranks" : "");
  }
  ~CudaTrainStep() override {
    // Torn down by an error (this destructor runs while it propagates): a collective of this step may still
    // wait for a peer that died, and freeing device memory would wait behind it. Abort the communicator first.
    if (std::uncaught_exceptions() > 0 && comm_) comm_->abandon();
    // no copy may still read a batch's page-locked memory once the views below let it go
    if (copy_stream_) cudaStreamSynchronize(copy_stream_);
    stages_.reset();  // everything that works on the streams goes before them
    for (StagedBatch& s : staged_) {
      s.host.clear();
      for (auto& c : s.crops) c = DeviceBuffer<uint8_t>();
    }
    gpu_.reset();
    comm_.reset();
    for (StagedBatch& s : staged_) {
      if (s.staged) cudaEventDestroy(s.staged);
      if (s.consumed) cudaEventDestroy(s.consumed);
    }
    if (copy_stream_) cudaStreamDestroy(copy_stream_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  StepStats step(const Batch& batch, float lr, const Batch* next) override {
    MOCO_CHECK(!failed_, "the GPU training step failed earlier (reported then); its device state is no longer "
               "known, so it takes no more steps: resume from the last checkpoint");
    check_batch(batch);
    if (next) check_batch(*next);
    // This batch's views: staged during the previous step when it was that step's `next`, else now.
    const bool staged_ahead = ahead_ >= 0 && staged_[ahead_].holds(batch);
    const int cur = staged_ahead ? ahead_ : 1 - last_;
    if (!staged_ahead) stage(batch, staged_[cur]);
    ahead_ = -1;
    MOCO_CUDA_CHECK(cudaStreamWaitEvent(stream_, staged_[cur].staged, 0));
    // The next batch moves into the other views while this step computes.
    if (next) {
      stage(*next, staged_[1 - cur]);
      ahead_ = 1 - cur;
    }
    StagedBatch& in = staged_[cur];
    const Shape shape = batch.views[0].shape();
    StepStats st;
    try {
      st = gpu_->step(Tensor::wrap(in.crops[0].get(), shape, DType::U8, Device::CUDA),
                      Tensor::wrap(in.crops[1].get(), shape, DType::U8, Device::CUDA), lr);
    } catch (...) {
      // Its kernels may still read the slots, which a later stage would overwrite: no more steps.
      failed_ = true;
      throw;
    }
    MOCO_CUDA_CHECK(cudaEventRecord(in.consumed, stream_));
    in.step = -1;  // used: a later call with the same batch copies it again
    last_ = cur;
    // The shapes repeat from here on: a new device allocation after two steps is a bug, not a warm-up.
    if (++steps_ == 2) gpu_->freeze();
    return st;
  }
  void store_to(Moco& host) override { gpu_->store_to(host); }
  std::string describe() const override { return what_; }
  std::string conv_plans() const override { return gpu_->conv_plans(); }
  void use_conv_plans(const std::string& text) override { gpu_->use_conv_plans(text); }
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
  static void check_batch(const Batch& batch) {
    MOCO_CHECK(batch.views.size() == 2 && batch.params.size() == 2, "the GPU training step needs 2 views and ",
               "their decisions (LoaderConfig::stages_on_device), got ", batch.views.size(), " views and ",
               batch.params.size(), " sets of decisions");
    for (const Tensor& host : batch.views)
      MOCO_CHECK(host.dtype() == DType::U8 && host.dim() == 4 && host.device() == Device::CPU &&
                     host.shape() == batch.views[0].shape(),
                 "the GPU training step got ", device_name(host.device()), " ", dtype_name(host.dtype()), " ",
                 shape_str(host.shape()), " views, expected the loader's host u8 crops, both (N, S, S, 3)");
  }

  // Enqueues the batch's copies to the device and their stages on the copy stream, into `into`.
  void stage(const Batch& batch, StagedBatch& into) {
    // The copies out of the views `into` held before have run (they were waited for by the step that read
    // them, or are waited for here if none did), so that memory can go back to the loader's pool.
    MOCO_CUDA_CHECK(cudaEventSynchronize(into.staged));
    into.host.clear();
    into.step = -1;
    // The step that read the old views is done with them before they are overwritten.
    MOCO_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, into.consumed, 0));
    try {
      for (int v = 0; v < 2; ++v) {
        const Tensor& host = batch.views[(size_t)v];  // (N, S, S, 3) u8 crops, page-locked
        DeviceBuffer<uint8_t>& crops = into.crops[v];
        if (crops.size() != host.nbytes()) {
          MOCO_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));  // no queued stage still works on the old ones
          crops = DeviceBuffer<uint8_t>(host.nbytes(), "view crops");
        }
        MOCO_CUDA_CHECK(cudaMemcpyAsync(crops.get(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice, copy_stream_));
        stages_->apply(Tensor::wrap(crops.get(), host.shape(), DType::U8, Device::CUDA), batch.params[(size_t)v]);
      }
      MOCO_CUDA_CHECK(cudaEventRecord(into.staged, copy_stream_));
    } catch (...) {
      cudaStreamSynchronize(copy_stream_);  // no copy may still read the batch's memory once the caller frees it
      throw;
    }
    into.host = batch.views;
    into.epoch = batch.epoch;
    into.step = batch.step;
    into.source[0] = batch.views[0].raw();
    into.source[1] = batch.views[1].raw();
  }

  cudaStream_t stream_ = nullptr;       // the step's compute stream
  cudaStream_t copy_stream_ = nullptr;  // the batches' copies to the device and their stages
  std::unique_ptr<DeviceCommunicator> comm_;
  std::unique_ptr<GpuMoco> gpu_;
  std::shared_ptr<RecyclingPool> pinned_;  // page-locked: the loader's batches (view_allocator)
  std::unique_ptr<GpuViewStages> stages_;    // the views' stages after the crop, on the copy stream
  StagedBatch staged_[2];
  int ahead_ = -1;  // which of staged_ holds the batch the next step was told of (-1: none)
  int last_ = 1;    // which fed the previous step
  bool failed_ = false;  // a step threw: the run is over (moco train stops on the error anyway)
  std::string what_;
  int steps_ = 0;
};

}  // namespace

std::unique_ptr<DeviceStep> make_train_step(Moco& host, Communicator& comm, const TrainOptions& o,
                                            const AugmentRecipe& recipe) {
  const std::string reason = no_device_reason();
  // Every rank trains on the same kind of device, or their collectives would not match: with several ranks
  // (over MPI here; GPU ranks without MPI have no other way to talk) one rank without a GPU puts all on the CPU.
  const bool none_somewhere = comm.world_size() > 1 ? comm.any(!reason.empty()) : !reason.empty();
  if (none_somewhere) {
    if (!reason.empty())
      std::fprintf(stderr, "cuda: rank %d: %s\n", o.launch.rank, reason.c_str());
    else if (o.launch.rank == 0)
      std::fprintf(stderr, "cuda: another rank has no usable CUDA device, so every rank trains on the CPU\n");
    return nullptr;
  }
  return std::make_unique<CudaTrainStep>(host, comm, o, recipe);
}

}  // namespace moco::cuda
