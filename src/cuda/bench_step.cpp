#include "bench_step.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"
#include "convolution.h"
#include "device_buffer.h"
#include "gpu_moco.h"
#include "moco/cuda_runtime.h"
#include "moco/rng.h"
#include "moco/step_timing.h"
#include "single_device_communicator.h"
#include "softmax_xent.cuh"

namespace moco::cuda {

// Device milliseconds per step by kind of op, largest first, and what no bracket covers (the MoCo head, the
// updates, the gaps between launches).
static void print_op_times(const OpClock& clock, int steps, double step_ms) {
  std::vector<OpClock::Total> rows = clock.totals();
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.ms > b.ms; });
  std::printf("device ms per step by kind of op (CUDA events around each, %d timed steps):\n", steps);
  double covered = 0;
  for (const OpClock::Total& r : rows) {
    const double ms = r.ms / steps;
    covered += ms;
    std::printf("  %-24s %5lld calls %9.3f ms %5.1f%%\n", r.name.c_str(), (long long)(r.calls / steps), ms,
                100.0 * ms / step_ms);
  }
  std::printf("  %-24s             %9.3f ms %5.1f%%  (the rest of the step: head, updates, gaps)\n", "not bracketed",
              step_ms - covered, 100.0 * (step_ms - covered) / step_ms);
}

JsonRecord run_step_bench(const StepBenchOptions& o) {
  JsonRecord r;
  const std::string reason = no_device_reason();
  MOCO_CHECK(reason.empty(), "--device cuda: ", reason);
  MOCO_CHECK(o.warmup >= 1, "--warmup ", o.warmup, ": the GPU needs at least 1 warm-up step, which sizes its "
             "memory and chooses the convolution algorithms");
  cudaStream_t stream = nullptr;
  MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  size_t free0 = 0, total = 0;
  MOCO_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  {
    SingleDeviceCommunicator comm(stream);
    // The initial state comes from the CPU MoCo (the same init as training), then moves to the device.
    SingleCommunicator host_comm;
    Moco host(o.moco, host_comm);
    host.init();
    GpuMoco gpu(o.moco, comm, o.compute);
    gpu.load_from(host);
    if (o.op_times) gpu.op_clock().enable();

    // 8-bit views already on the device, the form `moco train` hands the step (its normalisation is timed
    // with the query forward); the key view is the query view with noise, so the loss is not trivial.
    const int64_t n = o.batch, s = o.image_size, numel = n * s * s * 3;
    std::vector<uint8_t> hq((size_t)numel), hk((size_t)numel);  // (N, S, S, 3) each
    Rng rng(1, 2);
    for (int64_t i = 0; i < numel; ++i) {
      const int u = (int)rng.below(256), noisy = u + (int)rng.below(61) - 30;
      hq[(size_t)i] = (uint8_t)u;
      hk[(size_t)i] = (uint8_t)std::clamp(noisy, 0, 255);
    }
    DeviceBuffer<uint8_t> dq(hq, "query images"), dk(hk, "key images");
    Tensor xq = Tensor::wrap(dq.get(), {n, s, s, 3}, DType::U8, Device::CUDA);
    Tensor xk = Tensor::wrap(dk.get(), {n, s, s, 3}, DType::U8, Device::CUDA);

    // the allocation caches freeze after the warm-up: from there on a device allocation is an error
    const StepTiming t = time_steps(o.warmup, o.steps, [&] { return gpu.step(xq, xk, 0.03f); }, [&] {
      gpu.freeze();
      gpu.op_clock().reset_totals();  // the warm-up's brackets held the cuDNN searches
    });
    size_t free1 = 0;
    MOCO_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
    const double step_ms = t.median_step_ms();
    const GpuMemory m = gpu.memory();
    const double mib = 1.0 / (1 << 20);
    const char* conv_api = conv_api_name(gpu.conv_api());
    const char* softmax_form = kernels::softmax_xent_form_name(gpu.softmax_form());
    std::printf("moco bench: %s, batch %lld at %lld px, K %lld, device cuda (%s), %s, cuDNN %s API, softmax-CE "
                "%s\n", o.moco.encoder.describe().c_str(), (long long)n, (long long)s, (long long)o.moco.queue_size,
                device_description(0).c_str(), o.compute == DType::BF16 ? "bf16" : "fp32", conv_api, softmax_form);
    print_step_timing(t, n);
    if (o.conv_report) std::printf("convolutions (shape: pass: plan):\n%s", gpu.describe_convs().c_str());
    if (o.op_times) print_op_times(gpu.op_clock(), o.steps, step_ms);
    std::printf("memory MiB: parameters %.1f  gradients %.1f  optimizer %.1f  activations %.1f (peak; %.1f saved "
                "for backward)  workspace %.1f  queue %.1f  total %.1f  (device memory in use by the process: %.1f)\n",
                m.parameters * mib, m.gradients * mib, m.optimizer * mib, m.activations * mib, t.activation_bytes * mib,
                m.workspace * mib, m.queue * mib, m.total() * mib, ((double)free0 - (double)free1) * mib);
    r.add("device_name", device_description(0))
        .add("precision", o.compute == DType::BF16 ? "bf16" : "fp32")
        .add("conv_api", conv_api)
        .add("softmax_form", softmax_form);
    add_step_timing(r, t, n);
    r.add("parameters_mib", m.parameters * mib)
        .add("gradients_mib", m.gradients * mib)
        .add("optimizer_mib", m.optimizer * mib)
        .add("activations_mib", m.activations * mib)  // the peak
        .add("saved_for_backward_mib", t.activation_bytes * mib)
        .add("workspace_mib", m.workspace * mib)
        .add("queue_mib", m.queue * mib)
        .add("total_mib", m.total() * mib)
        .add("process_mib", ((double)free0 - (double)free1) * mib);
  }
  MOCO_CUDA_CHECK(cudaStreamDestroy(stream));
  return r;
}

}  // namespace moco::cuda
