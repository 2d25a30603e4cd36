// The training step as `moco train` feeds it: a loader batch of 8-bit crops in page-locked host memory, copied
// to the device and put through its stages (GpuViewStages), then the MoCo step (DeviceStep::step). Two feeds
// of the same batches, on one device in one run:
//   - one at a time: each step is told nothing about the next batch, so the batch's copies and stages run
//     between two steps, on the step's time;
//   - staged ahead: each step is handed the next batch too (as `moco train` does with Loader::peek), whose
//     copies and stages then run on the copy stream while the step computes.
// The step is synchronous (the loss is read back for the NaN check before the update), so the wall-clock time of
// each call is the time per step a training run sees once the loader keeps up. Reports the median ms per step
// and img/s of both, and their ratio: what the overlap hides.
//
// Checks first that both feeds give the same steps (the losses of 3 steps of a small fp32 network to 1e-5),
// and refuses to time otherwise.
//   build/bench_train_feed [batch]     (ResNet-50, MoCo v2 head and recipe at 224 px, bf16; batch 256 by default)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../src/cuda/train_step.h"
#include "gpu_bench.h"
#include "moco/comm.h"
#include "moco/rng.h"

using namespace moco;

namespace {

// `count` batches of n random 8-bit crops at s px, each with its views' decisions drawn from the v2 recipe.
std::vector<Batch> synthetic_batches(DeviceStep& device, const AugmentRecipe& rec, int count, int64_t n) {
  const auto allocate = device.view_allocator();  // page-locked, as the loader's
  const int64_t s = rec.size;
  Rng rng(17, 23);
  std::vector<Batch> out((size_t)count);
  for (int b = 0; b < count; ++b) {
    Batch& batch = out[(size_t)b];
    batch.step = b;
    batch.params.resize(2);
    for (int v = 0; v < 2; ++v) {
      Tensor view = allocate({n, s, s, 3}, DType::U8);  // (N, S, S, 3)
      uint8_t* p = view.data<uint8_t>();
      for (int64_t i = 0; i < view.numel(); ++i) p[i] = (uint8_t)rng.below(256);
      batch.views.push_back(view);
      for (int64_t i = 0; i < n; ++i) batch.params[(size_t)v].push_back(draw_view_params(rec, 256, 256, rng));
    }
  }
  return out;
}

// Steps `steps` times over `batches` in turn, each told the next batch or not; the wall-clock ms of each step.
std::vector<double> feed(DeviceStep& device, std::vector<Batch>& batches, int steps, bool ahead, int64_t& position) {
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i, ++position) {
    Batch& now = batches[(size_t)(position % (int64_t)batches.size())];
    Batch& next = batches[(size_t)((position + 1) % (int64_t)batches.size())];
    now.step = position;  // a new position each step, as the loader's
    next.step = position + 1;
    const auto t0 = std::chrono::steady_clock::now();
    device.step(now, 0.03f, ahead ? &next : nullptr);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return ms;
}

MocoConfig small_moco() {
  MocoConfig c;
  c.encoder.depth = 18, c.encoder.width = 8, c.encoder.small_stem = true;
  c.encoder.head = Head::Mlp, c.encoder.out_dim = 32;
  c.queue_size = 256, c.temperature = 0.2f, c.momentum = 0.99f, c.bn_splits = 2, c.seed = 3;
  return c;
}

// Both feeds from the same state over the same batches: the same losses.
bool feeds_agree() {
  const AugmentRecipe rec = recipe_from_name("v2", 16);
  TrainOptions o;
  o.precision = "fp32";
  SingleCommunicator comm;
  Moco a_host(small_moco(), comm), b_host(small_moco(), comm);
  a_host.init();
  b_host.init();
  std::unique_ptr<DeviceStep> one = cuda::make_train_step(a_host, comm, o, rec);
  std::unique_ptr<DeviceStep> ahead = cuda::make_train_step(b_host, comm, o, rec);
  std::vector<Batch> batches = synthetic_batches(*one, rec, 3, 8);
  for (int i = 0; i < 3; ++i) {
    const float want = one->step(batches[(size_t)i], 0.03f, nullptr).loss;
    const float got = ahead->step(batches[(size_t)i], 0.03f, i + 1 < 3 ? &batches[(size_t)i + 1] : nullptr).loss;
    if (!(std::fabs(got - want) <= 1e-5f * std::fabs(want))) {
      std::printf("step %d: loss %.7g staged ahead, %.7g one batch at a time; refusing to time\n", i, got, want);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 256;
  if (n < 2 || n % 2) {
    std::printf("batch %s: expected an even number of at least 2\n", argv[1]);
    return 2;
  }
  return bench::run(feeds_agree, [&](bench::Timer&, double) {
    const AugmentRecipe rec = recipe_from_name("v2", 224);
    MocoConfig cfg;  // MoCo v2: ResNet-50, MLP head, K 65536, T 0.2
    cfg.encoder.depth = 50, cfg.encoder.head = Head::Mlp;
    cfg.temperature = 0.2f;
    TrainOptions o;  // bf16, as training
    SingleCommunicator comm;
    Moco host(cfg, comm);
    host.init();
    std::unique_ptr<DeviceStep> device = cuda::make_train_step(host, comm, o, rec);
    std::vector<Batch> batches = synthetic_batches(*device, rec, 3, n);
    int64_t position = 0;
    feed(*device, batches, 3, false, position);  // warm-up: sizes the caches, chooses the algorithms
    const int steps = 15;
    std::vector<double> one, ahead;
    // alternated in rounds, so that clocks and temperature drift fall on both alike; the first step after a
    // switch is not counted (it finds the previous feed's staging, or none)
    for (int round = 0; round < 3; ++round) {
      feed(*device, batches, 1, false, position);
      for (double t : feed(*device, batches, steps / 3, false, position)) one.push_back(t);
      feed(*device, batches, 1, true, position);
      for (double t : feed(*device, batches, steps / 3, true, position)) ahead.push_back(t);
    }
    const double ms_one = bench::median(one), ms_ahead = bench::median(ahead);
    std::printf("train step fed from page-locked 8-bit crops: ResNet-50 v2, batch %lld at 224 px, bf16 (%d steps each)\n",
                (long long)n, steps);
    std::printf("%-36s %9.2f ms/step  %8.1f img/s\n", "one batch at a time", ms_one, (double)n * 1e3 / ms_one);
    std::printf("%-36s %9.2f ms/step  %8.1f img/s\n", "next batch staged during the step", ms_ahead,
                (double)n * 1e3 / ms_ahead);
    std::printf("staged ahead / one at a time: %.3fx (%.2f ms per step hidden)\n", ms_one / ms_ahead, ms_one - ms_ahead);
  });
}
