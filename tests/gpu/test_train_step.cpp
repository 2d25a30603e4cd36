// The GPU training step as `moco train` drives it (make_train_step, DeviceStep::step on a loader batch of 8-bit
// crops and their decisions) against the CPU step on the views the CPU twin of the device stages makes from
// the same crops (apply_view_stages_u8), normalised here as torchvision's ToTensor + Normalize would
// ((u / 255 - mean) / std in double). One step of the well-conditioned network (ResNet-18, small stem, BN
// groups of 8, 16 px, fp32), the v2 recipe so that every stage can fire: the loss and the whole gradient to
// the bounds of GpuMocoStep.EightBitViewsGiveTheStepOfTheirNormalisedImages. These views are clear of ReLU
// near-ties: the CPU's step moved by at most 1.2e-5 under 16 nudges of the weights by 3e-7 of their size
// (bench/results/2026-11-27-near-tie-margins.md). The same batch with the two
// views' decisions swapped must give another loss, so the decisions reach the views they belong to.
//
// Then the overlap of `moco train`: a batch handed as `next` is copied in and staged on the copy stream while
// the current step computes. Steps fed that way must be the steps fed one batch at a time.
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../../src/cuda/train_step.h"
#include "../tiny_moco.h"
#include "gpu_test.h"
#include "moco/loader.h"
#include "moco/rng.h"

using namespace moco;

namespace {

Tensor cpu_views(const Batch& b, int v, const AugmentRecipe& rec) { return test::cpu_staged_views(b, v, rec); }

using test::relative_l2;

// What `moco train` gives the GPU step: batches of n 8-bit crops with their views' decisions.
LoaderConfig crop_batches(int64_t n) {
  LoaderConfig lc;
  lc.batch = n;
  lc.seed = 5;
  lc.view_dtype = DType::U8;
  lc.stages_on_device = true;
  return lc;
}

TrainOptions fp32_step() {
  TrainOptions o;
  o.precision = "fp32";
  return o;
}

}  // namespace

TEST(GpuTrainStep, CropsAndDecisionsGiveTheCpuStepOfTheirViews) {
  MOCO_REQUIRE_GPU();
  test::NoiseDataset data(64, 20, 24, 9);
  const AugmentRecipe rec = recipe_from_name("v2", 16);
  Loader loader(data, rec, crop_batches(32));
  loader.start_epoch(0);
  Batch b;
  ASSERT_TRUE(loader.next(b));

  const TrainOptions o = fp32_step();
  SingleCommunicator comm;
  const MocoConfig cfg = test::well_conditioned_moco();
  Moco cpu(cfg, comm), gpu_host(cfg, comm), readback(cfg, comm);
  cpu.init();
  gpu_host.init();
  std::unique_ptr<DeviceStep> device = cuda::make_train_step(gpu_host, comm, o, rec);
  ASSERT_TRUE(device);
  EXPECT_EQ(device->view_dtype(), DType::U8);
  EXPECT_TRUE(device->stages_on_device());

  const StepStats c = cpu.step(cpu_views(b, 0, rec), cpu_views(b, 1, rec), 0.03f);
  const StepStats g = device->step(b, 0.03f, nullptr);
  device->store_to(readback);
  EXPECT_NEAR(g.loss, c.loss, 1e-5 * std::fabs(c.loss));
  EXPECT_LE(relative_l2(cpu.optimizer().momentum_buffer(), readback.optimizer().momentum_buffer()), 1e-4)
      << "relative L2 error of the whole gradient";

  // the decisions swapped between the views: another pair of views, another loss
  Moco fresh(cfg, comm);
  fresh.init();
  std::unique_ptr<DeviceStep> other = cuda::make_train_step(fresh, comm, o, rec);
  Batch swapped = b;
  std::swap(swapped.params[0], swapped.params[1]);
  const StepStats w = other->step(swapped, 0.03f, nullptr);
  EXPECT_GT(std::fabs(w.loss - c.loss), 1e-3 * std::fabs(c.loss)) << "the views' decisions were swapped";
}

// Four batches through two steps from the same state: one is handed each batch alone, the other is also told
// the following batch (as `moco train` does with the loader's peek), and once a wrong one (b3 announced, b2
// handed), which it must not use. Same losses and same gradients: the staged views are the batch's, and a
// step never reads views that are still being copied or staged, nor has its views overwritten by the next.
// The second step runs the first's convolution plans, so that both compute alike and only staging can part
// them: with plans each chose by its own timing, the two rounded apart, and by the fourth step a ReLU
// near-tie had put their SGD buffers 0.9% apart on an H100 (the losses still within 1e-5).
TEST(GpuTrainStep, BatchesStagedDuringThePreviousStepGiveTheSameSteps) {
  MOCO_REQUIRE_GPU();
  const TrainOptions o = fp32_step();
  SingleCommunicator comm;
  const MocoConfig cfg = test::well_conditioned_moco();
  const AugmentRecipe rec = recipe_from_name("v2", 16);
  Moco one_host(cfg, comm), ahead_host(cfg, comm), readback(cfg, comm);
  one_host.init();
  ahead_host.init();
  std::unique_ptr<DeviceStep> one = cuda::make_train_step(one_host, comm, o, rec);
  std::unique_ptr<DeviceStep> ahead = cuda::make_train_step(ahead_host, comm, o, rec);
  ASSERT_TRUE(one && ahead);

  test::NoiseDataset data(64, 20, 24, 9);
  LoaderConfig lc = crop_batches(16);
  lc.view_allocator = ahead->view_allocator();  // page-locked, as in training
  Loader loader(data, rec, lc);
  loader.start_epoch(0);
  std::vector<Batch> b(4);
  for (Batch& x : b) ASSERT_TRUE(loader.next(x));

  const Batch* told[4] = {&b[1], &b[3], &b[3], nullptr};  // after step 1 the announced batch is not the one
  const int handed[4] = {0, 1, 2, 3};
  for (int i = 0; i < 4; ++i) {
    const StepStats want = one->step(b[(size_t)handed[i]], 0.03f, nullptr);
    if (i == 0) ahead->use_conv_plans(one->conv_plans());
    const StepStats got = ahead->step(b[(size_t)handed[i]], 0.03f, told[i]);
    EXPECT_NEAR(got.loss, want.loss, 1e-5 * std::fabs(want.loss)) << "step " << i;
  }
  one->store_to(one_host);
  ahead->store_to(readback);
  EXPECT_LE(relative_l2(one_host.optimizer().momentum_buffer(), readback.optimizer().momentum_buffer()), 1e-4);
  EXPECT_LE(relative_l2(one_host.encoder_k().params(), readback.encoder_k().params()), 1e-6);
}

// A step that throws leaves the device in an unknown state (its kernels may still read the staged views): the
// step refuses every later call, saying so, rather than stage a batch over views still in use.
TEST(GpuTrainStep, AFailedStepRefusesTheNextOne) {
  MOCO_REQUIRE_GPU();
  const TrainOptions o = fp32_step();
  SingleCommunicator comm;
  const MocoConfig cfg = test::well_conditioned_moco();
  const AugmentRecipe rec = recipe_from_name("v2", 16);
  Moco host(cfg, comm);
  host.init();
  std::unique_ptr<DeviceStep> device = cuda::make_train_step(host, comm, o, rec);
  test::NoiseDataset data(64, 20, 24, 9);
  Loader sixteen(data, rec, crop_batches(16)), eight(data, rec, crop_batches(8));
  sixteen.start_epoch(0);
  eight.start_epoch(0);
  Batch a, b;
  ASSERT_TRUE(sixteen.next(a));
  ASSERT_TRUE(eight.next(b));
  device->step(a, 0.03f, nullptr);
  EXPECT_THROW(device->step(b, 0.03f, nullptr), Error) << "the step is sized for batches of 16";
  try {
    device->step(a, 0.03f, nullptr);
    FAIL() << "a step after a failed one was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("failed earlier"), std::string::npos) << e.what();
  }
}
