// One MoCo training step on the GPU. Read step_with_permutation top to bottom: it is Moco's step (SPEC 1)
// phase for phase, with device buffers and kernel launches in place of the CPU loops.
#include "gpu_moco.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <cuda_bf16.h>
#include <nvtx3/nvToolsExt.h>
#include <type_traits>

#include "blas_handle.h"
#include "check.h"
#include "cuda_backend.h"
#include "device_buffer.h"
#include "dtype_dispatch.h"
#include "enqueue.cuh"
#include "flat_update.cuh"
#include "grad_buckets.h"
#include "l2_normalize.cuh"
#include "moco_logits.cuh"
#include "network_input.h"
#include "nhwc_ops.cuh"
#include "pinned_host.h"
#include "softmax_xent.cuh"
#include "weight_slots.h"

namespace moco::cuda {

namespace {
// The phases in the order step() runs them: the key side before the query side (why: in step()).
constexpr Phase kRunOrder[kPhases] = {kMomentumUpdate, kKeyForward, kQueryForward, kLogitsLoss,
                                      kBackward,       kAllReduce,  kSgd,          kEnqueue};
}  // namespace

struct GpuMoco::Buffers {
  int64_t params = 0, stats = 0, counts = 0;  // element counts of the three flat buffers (registry sizes)
  DeviceBuffer<float> q_params, q_grads, q_momentum, q_stats;  // (params) x3, (stats)
  DeviceBuffer<int64_t> q_counts;                               // (counts)
  DeviceBuffer<char> q_compute, q_compute_grads;                // (params) in the compute dtype
  DeviceBuffer<float> k_params, k_stats;                        // (params), (stats)
  DeviceBuffer<int64_t> k_counts;                               // (counts)
  DeviceBuffer<char> k_compute;                                 // (params) in the compute dtype
  DeviceBuffer<kernels::WeightSlot> slots;                      // (conv + linear weights)
  DeviceBuffer<float> queue;                                    // (K, C)
  // sized by the first step's batch
  int64_t batch = 0;
  DeviceBuffer<float> logits;   // (N, 1 + K); becomes dlogits in place
  DeviceBuffer<char> xent_ws;   // softmax_xent_label0's per-row workspace
  DeviceBuffer<float> loss;     // (1)
  DeviceBuffer<int64_t> hits;   // (2) top-1, top-5
  DeviceBuffer<float> global;   // (3) loss, hits1, hits5 for the all-reduce
  PinnedBuffer global_host;     // (3) the same read back: pinned, so the copy does not block the host
  BlasHandle blas;
  cudaEvent_t marks[kPhases + 1] = {};
  // Backward folds each weight gradient and hands its range to the bucketed all-reduce as soon as it is
  // computed (CudaBackend::on_gradient_ready):
  struct GradRange {
    int slot = -1;    // index in host_slots (conv and linear weights, folded from the compute layout), or -1
    int64_t end = 0;  // where the next tensor starts: the range handed to the buckets includes the padding
  };
  std::vector<kernels::WeightSlot> host_slots;  // the slots above, on the host
  std::map<int64_t, GradRange> grad_ranges;     // Param offset -> its gradient's fold and bucket range
  std::unique_ptr<GradientBuckets> buckets;         // over q_grads
  ~Buffers() {
    for (cudaEvent_t e : marks)
      if (e) cudaEventDestroy(e);
  }
};

GpuMoco::GpuMoco(const MocoConfig& cfg, DeviceCommunicator& comm, DType act)
    : cfg_(cfg),
      comm_(comm),
      act_(act),
      stream_(comm.compute_stream()),
      backend_(std::make_unique<CudaBackend>(act, comm.compute_stream())),
      encoder_q_(cfg.encoder, /*with_grads=*/false),
      encoder_k_(cfg.encoder, /*with_grads=*/false),
      buf_(std::make_unique<Buffers>()) {
  MOCO_CHECK(cfg.encoder.head != Head::None, "a MoCo encoder needs a head (Linear for v1, Mlp for v2)");
  MOCO_CHECK(cfg.temperature > 0, "--moco-t must be > 0, got ", cfg.temperature);
  MOCO_CHECK(cfg.bn_splits >= 1, "bn splits must be >= 1, got ", cfg.bn_splits);
  softmax_form_ = step_softmax_form(softmax_form_from_env(), 1 + cfg.queue_size);
  Buffers& b = *buf_;
  const ParamRegistry& reg = encoder_q_.registry();
  b.params = reg.size(Slot::Param), b.stats = reg.size(Slot::Stat), b.counts = reg.size(Slot::Count);
  const size_t es = dtype_size(act);
  b.q_params = DeviceBuffer<float>(b.params, "query parameters");
  b.q_grads = DeviceBuffer<float>(b.params, "query gradients");
  b.q_momentum = DeviceBuffer<float>(b.params, "SGD momentum");
  b.q_stats = DeviceBuffer<float>(b.stats, "query BN statistics");
  b.q_counts = DeviceBuffer<int64_t>(b.counts, "query BN counters");
  b.q_compute = DeviceBuffer<char>(b.params * es, "query compute weights");
  b.q_compute_grads = DeviceBuffer<char>(b.params * es, "query compute weight gradients");
  b.k_params = DeviceBuffer<float>(b.params, "key parameters");
  b.k_stats = DeviceBuffer<float>(b.stats, "key BN statistics");
  b.k_counts = DeviceBuffer<int64_t>(b.counts, "key BN counters");
  b.k_compute = DeviceBuffer<char>(b.params * es, "key compute weights");
  b.host_slots = compute_weight_slots(reg);
  b.slots = DeviceBuffer<kernels::WeightSlot>(b.host_slots, "compute weight slots");
  for (const auto& [offset, end] : reg.param_extents()) b.grad_ranges[offset].end = end;
  for (size_t i = 0; i < b.host_slots.size(); ++i) b.grad_ranges.at(b.host_slots[i].offset).slot = (int)i;
  b.queue = DeviceBuffer<float>(cfg.queue_size * cfg.encoder.out_dim, "key queue");
  MOCO_CUBLAS_CHECK(cublasSetStream(b.blas.get(), stream_));
  for (cudaEvent_t& e : b.marks) MOCO_CUDA_CHECK(cudaEventCreate(&e));

  WeightsView q{b.q_params.get(), b.q_grads.get(), b.q_stats.get(), b.q_counts.get(), b.q_compute.get(),
                b.q_compute_grads.get()};
  WeightsView k{b.k_params.get(), nullptr, b.k_stats.get(), b.k_counts.get(), b.k_compute.get(), nullptr};
  b.buckets = std::make_unique<GradientBuckets>(comm_, b.q_grads.get(), b.params);
  backend_->on_gradient_ready([this](int64_t offset) { gradient_ready(offset); });
  // The warm-up's cuDNN searches and workspace growths wait for the device, which may sit behind a collective
  // of this step: wait under the communicator's watchdog, so a dead peer is an error, not a hang.
  backend_->set_host_wait([this] { comm_.synchronize(); });
  encoder_q_.bind(backend_.get(), q);
  encoder_k_.bind(backend_.get(), k);
  encoder_q_.set_bn_groups(cfg.bn_splits);
  encoder_k_.set_bn_groups(cfg.bn_splits);
  encoder_q_.set_recompute_bn_relu(cfg.recompute_bn_relu);  // the key encoder keeps nothing for a backward
  // The uploads above ran on the legacy default stream, which a non-blocking compute stream does not wait
  // for: finish them before any step can read the slot table.
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());
}

GpuMoco::~GpuMoco() = default;

// A Param tensor's gradient is complete on the compute stream: fold it into the fp32 gradients if it was
// computed in the compute layout, then let its bucket's all-reduce start while backward goes on.
void GpuMoco::gradient_ready(int64_t offset) {
  Buffers& b = *buf_;
  auto range = b.grad_ranges.find(offset);
  MOCO_CHECK(range != b.grad_ranges.end(), "gradient_ready: offset ", offset, " is not the start of a parameter");
  if (range->second.slot >= 0) {
    backend_->op_clock().time("weight gradient unpack", [&] {
      with_compute_type(act_, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        kernels::unpack_weight_grad<T>(b.host_slots[(size_t)range->second.slot],
                                       static_cast<const T*>(static_cast<const void*>(b.q_compute_grads.get())),
                                       b.q_grads.get(), stream_);
      });
    });
  }
  b.buckets->mark_ready(offset, range->second.end);
}

void GpuMoco::load_from(Moco& host) {
  Buffers& b = *buf_;
  MOCO_CHECK(host.encoder_q().registry().size(Slot::Param) == b.params && host.queue().size() == cfg_.queue_size &&
                 host.queue().dim() == cfg_.encoder.out_dim,
             "load_from: the CPU MoCo has another configuration (", host.config().encoder.describe(), ", K=",
             host.queue().size(), ") than this one (", cfg_.encoder.describe(), ", K=", cfg_.queue_size, ")");
  comm_.synchronize();  // no step still reads the buffers being replaced
  b.q_params.upload(host.encoder_q().params());
  b.q_stats.upload(host.encoder_q().stats());
  b.q_counts.upload(host.encoder_q().counts());
  b.q_momentum.upload(host.optimizer().momentum_buffer());
  b.k_params.upload(host.encoder_k().params());
  b.k_stats.upload(host.encoder_k().stats());
  b.k_counts.upload(host.encoder_k().counts());
  b.queue.upload(host.queue().keys());
  queue_ptr_ = host.queue().ptr();
  steps_done_ = host.steps_done();
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads (legacy stream) land before the next step reads them
}

void GpuMoco::store_to(Moco& host) {
  Buffers& b = *buf_;
  comm_.synchronize();
  b.q_params.download(host.encoder_q().params());
  b.q_stats.download(host.encoder_q().stats());
  b.q_counts.download(host.encoder_q().counts());
  b.q_momentum.download(host.optimizer().momentum_buffer());
  b.k_params.download(host.encoder_k().params());
  b.k_stats.download(host.encoder_k().stats());
  b.k_counts.download(host.encoder_k().counts());
  b.queue.download(host.queue().keys());
  host.queue().set_ptr(queue_ptr_);
  host.set_steps_done(steps_done_);
}

std::string GpuMoco::conv_plans() const { return backend_->conv_plans(); }
ConvApi GpuMoco::conv_api() const { return backend_->conv_api(); }
std::string GpuMoco::describe_convs() const { return backend_->describe_convs(); }
OpClock& GpuMoco::op_clock() { return backend_->op_clock(); }
void GpuMoco::use_conv_plans(const std::string& text) { backend_->use_conv_plans(text); }

void GpuMoco::freeze() { backend_->freeze(); }

GpuMemory GpuMoco::memory() const {
  const Buffers& b = *buf_;
  GpuMemory m;
  m.parameters = b.q_params.bytes() + b.q_stats.bytes() + b.q_counts.bytes() + b.q_compute.bytes() +
                 b.k_params.bytes() + b.k_stats.bytes() + b.k_counts.bytes() + b.k_compute.bytes() + b.slots.bytes();
  m.gradients = b.q_grads.bytes() + b.q_compute_grads.bytes();
  m.optimizer = b.q_momentum.bytes();
  m.activations = backend_->activations().peak_live_bytes();
  m.workspace = backend_->workspace_bytes() + b.logits.bytes() + b.xent_ws.bytes() + b.loss.bytes() +
                b.hits.bytes() + b.global.bytes();
  m.queue = b.queue.bytes();
  return m;
}

StepStats GpuMoco::step(const Tensor& x_q, const Tensor& x_k, float lr) {
  const int64_t global = x_k.size(0) * comm_.world_size();
  std::vector<int64_t> perm((size_t)global);
  if (cfg_.shuffle_bn) {
    perm = draw_shuffle_permutation(cfg_.seed, steps_done_, global, comm_);
  } else {
    for (int64_t i = 0; i < global; ++i) perm[(size_t)i] = i;
  }
  return step_with_permutation(x_q, x_k, lr, perm);
}

StepStats GpuMoco::step_with_permutation(const Tensor& x_q, const Tensor& x_k, float lr,
                                         const std::vector<int64_t>& perm) {
  const ViewBatch views = view_batch(x_q, "the query batch");  // 8-bit (N, H, W, 3) or fp32 (N, 3, H, W)
  view_batch(x_k, "the key batch");
  MOCO_CHECK(x_q.shape() == x_k.shape() && x_q.dtype() == x_k.dtype(), "query and key batches differ: ",
             dtype_name(x_q.dtype()), " ", shape_str(x_q.shape()), " vs ", dtype_name(x_k.dtype()), " ",
             shape_str(x_k.shape()));
  const DType pixel = views.pixel;
  const int64_t n = views.n, h = views.h, w = views.w;
  const int64_t img = 3 * h * w, img_bytes = img * (int64_t)dtype_size(pixel);
  const int64_t c = cfg_.encoder.out_dim, k_len = cfg_.queue_size, world = comm_.world_size();
  MOCO_CHECK(n % cfg_.bn_splits == 0, "batch of ", n, " images does not split into ", cfg_.bn_splits, " BN groups");
  MOCO_CHECK(n * world <= k_len, "the global batch (", n * world, ") must not exceed the queue (", k_len, ")");
  Buffers& b = *buf_;
  if (b.batch != n) {  // the first step sizes the per-batch buffers
    MOCO_CHECK(b.batch == 0, "the GPU step was sized for batches of ", b.batch, " and got ", n);
    b.batch = n;
    b.logits = DeviceBuffer<float>(n * (1 + k_len), "logits");
    b.xent_ws = DeviceBuffer<char>(kernels::softmax_xent_workspace_bytes(n), "softmax-CE workspace");
    b.loss = DeviceBuffer<float>(1, "loss");
    b.hits = DeviceBuffer<int64_t>(2, "hits");
    b.global = DeviceBuffer<float>(3, "loss and hits for the all-reduce");
  }
  CudaBackend& ops = *backend_;
  const float inv_t = 1.f / cfg_.temperature;
  // mark(i) ends the (i-1)-th phase of kRunOrder and starts the i-th: a CUDA event for the phase times, and an
  // NVTX range so that a profiler (nsys) shows the phases on the timeline.
  auto mark = [&](int i) {
    MOCO_CUDA_CHECK(cudaEventRecord(b.marks[i], stream_));
    if (i > 0) nvtxRangePop();
    if (i < kPhases) nvtxRangePushA(phase_name(kRunOrder[i]));
  };
  auto network_input = [&](const Tensor& staged) {  // staged: (N, 3*H*W) of `pixel` on the device
    Tensor x = ops.empty({n, 3, h, w}, act_);         // (N, 3, H, W) channels-last
    ops.op_clock().time("network input", [&] { to_network_input(views, staged.raw(), act_, x.raw(), stream_); });
    return x;
  };
  auto upload = [&](const Tensor& x) {  // images already on the device (training, benchmarks) stay
    if (x.device() == Device::CUDA) return x.reshape({n, img});
    Tensor staged = ops.empty({n, img}, pixel);  // (N, 3*H*W)
    MOCO_CUDA_CHECK(cudaMemcpyAsync(staged.raw(), x.raw(), x.nbytes(), cudaMemcpyHostToDevice, stream_));
    return staged;
  };
  auto to_f32 = [&](const Tensor& t) {  // (N, C) compute dtype -> fp32
    Tensor out = ops.empty(t.shape(), DType::F32);
    with_compute_type(act_, [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      kernels::cast<T, float>(t.numel(), static_cast<const T*>(t.raw()), out.data<float>(), stream_);
    });
    return out;
  };
  auto pack = [&](const float* params, void* compute) {
    ops.op_clock().time("weight pack", [&] {
      with_compute_type(act_, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        kernels::pack_weights<T>(b.slots.get(), (int)b.slots.size(), b.params, params, static_cast<T*>(compute),
                                 stream_);
      });
    });
  };
  StepStats stats;
  ops.op_clock().drop_pending();  // of an earlier step that threw
  const auto issue_start = std::chrono::steady_clock::now();
  mark(0);

  // Views on the host (tests, other callers) cross to the device here, on the compute stream; `moco train`'s
  // and the benchmarks' are on the device already. The copies are done when step returns (the loss is read back
  // after them in stream order), so the caller may reuse the batch's memory then.
  Tensor x_q_staged = upload(x_q);  // (N, 3*H*W)
  Tensor x_k_staged = upload(x_k);  // (N, 3*H*W)

  // 3a. shuffle the keys' images (as they arrived, before conversion: 8-bit ones move a quarter of the fp32
  // bytes). Started now, so that with several GPUs the all-to-all runs on the communicator's stream while the
  // momentum update and the key weights' packing compute; the key forward joins it below.
  Tensor x_k_shuffled = ops.empty({n, img}, pixel);  // (N, 3*H*W) this rank's slice of the shuffled batch
  // Should anything from here on throw before the join (the start itself included), x_k_shuffled goes back to
  // the cache while the shuffle may still write it: the compute stream then waits for the shuffle, so no later
  // work can be handed that memory under it.
  struct ShuffleJoin {
    DeviceCommunicator& comm;
    bool joined = false;
    void join() {
      comm.join();
      joined = true;
    }
    ~ShuffleJoin() {
      if (joined) return;
      try {
        comm.join();
      } catch (...) {  // unwinding already; the communicator reports its own failure
      }
    }
  } shuffle{comm_};
  comm_.start_permute_row_bytes(x_k_staged.raw(), n, img_bytes, perm, x_k_shuffled.raw());

  // The key side runs first (kRunOrder): steps 2-5, then 1. The momentum update reads only parameters, which
  // the query forward leaves alone (it updates the query encoder's BN running statistics, which the key
  // encoder never takes), so this computes MoCo's step exactly. What it buys: the key forward's activations
  // come and go before the query's saved activations exist, so the step's peak holds the latter alone.

  // 2. momentum update of the key encoder, before its forward
  kernels::momentum_update(b.params, cfg_.momentum, b.q_params.get(), b.k_params.get(), stream_);
  pack(b.k_params.get(), b.k_compute.get());
  mark(1);

  // 3b-5. keys: the shuffled images (join the shuffle), forward without a tape, normalize, unshuffle
  shuffle.join();
  Tensor feat_k = to_f32(encoder_k_.forward(network_input(x_k_shuffled), nullptr));  // (N, C)
  Tensor k_shuffled = ops.empty({n, c}, DType::F32);                                  // (N, C)
  Tensor k_norms = ops.empty({n}, DType::F32);                                        // (N)
  kernels::l2_normalize_forward(n, c, feat_k.data<float>(), k_shuffled.data<float>(), k_norms.data<float>(), stream_);
  Tensor k = ops.empty({n, c}, DType::F32);  // (N, C) this rank's keys in original order
  comm_.permute_rows(k_shuffled.data<float>(), n, c, inverse_permutation(perm), k.data<float>());
  feat_k = Tensor(), k_shuffled = Tensor(), x_k_shuffled = Tensor();  // back to the cache before the query side
  mark(2);

  // 1. q = normalize(f_q(x_q)), recording for backward
  pack(b.q_params.get(), b.q_compute.get());
  MOCO_CUDA_CHECK(cudaMemsetAsync(b.q_grads.get(), 0, b.q_grads.bytes(), stream_));
  Tape tape;
  Tensor feat_q = to_f32(encoder_q_.forward(network_input(x_q_staged), &tape));  // (N, C)
  Tensor q = ops.empty({n, c}, DType::F32);                                         // (N, C)
  Tensor q_norms = ops.empty({n}, DType::F32);                                      // (N)
  kernels::l2_normalize_forward(n, c, feat_q.data<float>(), q.data<float>(), q_norms.data<float>(), stream_);
  stats.activation_bytes = tape.saved_bytes();
  mark(3);

  // 6-7. logits [q.k, q.queue^T] / T against the queue as it was before this step, softmax-CE with label 0
  // (dlogits in place), and dq
  kernels::moco_logits_forward(b.blas.get(), n, c, k_len, q.data<float>(), k.data<float>(), b.queue.get(), inv_t,
                               b.logits.get(), stream_);
  kernels::softmax_xent_label0(n, 1 + k_len, b.logits.get(), b.logits.get(), b.loss.get(), b.hits.get(),
                               b.xent_ws.get(), stream_, softmax_form_);
  Tensor dq = ops.empty({n, c}, DType::F32);  // (N, C)
  kernels::moco_logits_backward(b.blas.get(), n, c, k_len, b.logits.get(), k.data<float>(), b.queue.get(), inv_t,
                                dq.data<float>(), stream_);
  // Loss and accuracy of the global batch (the mean over ranks, as on the CPU), averaged on the device and
  // read back after backward has been queued: the NaN check below still comes before any update.
  kernels::loss_summary(b.loss.get(), b.hits.get(), b.global.get(), stream_);
  comm_.all_reduce_mean(b.global.get(), 3);
  mark(4);

  // 8. backward through the query encoder only; each weight gradient is folded into the fp32 gradients and
  // its bucket's mean all-reduce starts as soon as it is computed (gradient_ready); then the SGD step
  Tensor dfeat = ops.empty({n, c}, DType::F32);  // (N, C)
  kernels::l2_normalize_backward(n, c, q.data<float>(), q_norms.data<float>(), dq.data<float>(), dfeat.data<float>(),
                                 stream_);
  Tensor dfeat_act = ops.empty({n, c}, act_);  // (N, C)
  with_compute_type(act_, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    kernels::cast<float, T>(n * c, dfeat.data<float>(), static_cast<T*>(dfeat_act.raw()), stream_);
  });
  encoder_q_.backward(dfeat_act, tape);
  tape.clear();  // the saved activations go back to the cache
  mark(5);
  stats.host_issue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - issue_start).count();
  b.buckets->finish();  // what did not overlap with backward: the last buckets, and the wait for all
  mark(6);
  // loss, top-1 hits, top-5 hits: means over ranks
  float* global = static_cast<float*>(b.global_host.reserve(3 * sizeof(float)));
  MOCO_CUDA_CHECK(cudaMemcpyAsync(global, b.global.get(), 3 * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  comm_.synchronize();  // under the communicator's watchdog: a dead or hung rank cannot block this forever
  stats.loss = global[0];
  if (!std::isfinite(stats.loss))
    fail_diverged("loss is ", stats.loss, " at step ", steps_done_,
                  "; stopping before the update so the last checkpoint stays good");
  stats.acc1 = 100.f * global[1] / (float)n;
  stats.acc5 = 100.f * global[2] / (float)n;
  kernels::sgd_momentum_step(b.params, lr, cfg_.sgd.momentum, cfg_.sgd.weight_decay, b.q_params.get(), b.q_grads.get(),
                             b.q_momentum.get(), stream_);
  mark(7);

  // 9. enqueue the keys of the global batch
  Tensor all_keys = ops.empty({world * n, c}, DType::F32);  // (W*N, C)
  comm_.all_gather(k.data<float>(), n * c, all_keys.data<float>());
  queue_ptr_ = kernels::enqueue(k_len, c, queue_ptr_, world * n, all_keys.data<float>(), b.queue.get(), stream_);
  mark(8);

  comm_.synchronize();  // the step's last event has completed: the phase times can be read
  ops.op_clock().collect();  // and the op brackets' (none unless enabled)
  for (int i = 0; i < kPhases; ++i) {
    float ms = 0;
    MOCO_CUDA_CHECK(cudaEventElapsedTime(&ms, b.marks[i], b.marks[i + 1]));
    stats.ms[kRunOrder[i]] = ms;
  }
  ++steps_done_;
  return stats;
}

}  // namespace moco::cuda
