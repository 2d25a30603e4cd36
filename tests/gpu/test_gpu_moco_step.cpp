// The whole MoCo step on the GPU against the CPU step (the oracle, itself checked against PyTorch by the
// cpu tests): same initial state, same images, same shuffle permutation.
//
// What is compared after a step: the loss and accuracies, the SGD momentum buffer of the query encoder (after
// one step from a given state it is grad + wd * theta plus the old buffer, so the gradient of every tensor is
// checked, not only its effect on the weights), the BN running statistics of both encoders, the key encoder
// and the queue.
//
// Tolerances, as measured on the CUDA emulator (tests/cuda_emu), where the GPU code runs with cuDNN and cuBLAS
// replaced by double-accumulating reference implementations:
//  - Forward products (loss, BN statistics, keys) are continuous in the inputs: 1e-4 relative (seen: <= 1e-5).
//  - Gradients are not: a ReLU input or a max-pool pair within rounding of a tie sends the gradient one way
//    on one implementation and the other way on another. In the width-4 ResNet-50 at 64 px, the CPU's two
//    float convolution paths (oneDNN and im2col) disagree by 0.6% to 2% in whole-gradient L2 and by up to 19%
//    in single tensors on some steps; the GPU agreed with one of them to 1e-4 on every step. That test
//    (Fp32StepMatchesTheCpuStep) therefore bounds gradients loosely (whole 5e-2, each tensor 0.25: a wrong term
//    is an O(1) error), and a well-conditioned network without such near-ties (Fp32GradientIsTight: ResNet-18,
//    32 images at 16 px in BN groups of 8) holds the whole gradient to 1e-4 (seen: 3.4e-6).
//    The same inputs through ResNet-50's topology (width 8, small stem) do not stay clear of ties: about four
//    times as many ReLU outputs, and one near zero flips the gradient of everything below it. Measured on the
//    emulator: 1.1% whole-gradient L2 against the CPU's oneDNN path, 2.1e-4 against its im2col path; with
//    seeds 4 and 5, 0.7% to 2.9% against both. Which path flips depends on oneDNN's kernels for the machine,
//    so no tight ResNet-50 bound holds everywhere, and ResNet-50 keeps the loose one above.
//  - bf16 activations and conv weights: every activation and activation gradient is rounded to 8 significant
//    bits, and at these sizes that moves the gradient a long way. PyTorch's own bf16 autocast step is 0.30
//    (ResNet-18 below) to 1.4 (the width-4 ResNet-50) away from its float64 step in relative L2
//    (tools/bf16_gradient_noise.py, bench/results/2026-11-25-bf16-gradient-noise.md). On the emulator, this
//    step's bf16 gradient is 0.37 from the CPU's, and two bf16 runs with stochastic rounding are 0.51 from each
//    other: the distance is rounding, not a fault. Bf16StepTracksTheCpuStep therefore uses the ResNet-18: the
//    loss within 2e-2, the head's gradients (the least amplified) within 0.25, the whole gradient within 0.75
//    (a wiring fault puts it at 1 or more: a zero gradient is 1, an unrelated one about 1.4).
//  - LossCurveTracksTheCpuRun holds 240 bf16 steps to 10% per 40-step window. On the emulator it passed, but took
//    18 minutes on 2 busy cores, so there it runs only with MOCO_EMU_SLOW=1.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../../src/cuda/check.h"
#include "../../src/cuda/gpu_moco.h"
#include "../../src/cuda/nccl_communicator.h"
#include "../../src/cuda/single_device_communicator.h"
#include "../scoped_env.h"
#include "../tiny_moco.h"
#include "gpu_test.h"
#include "moco/rng.h"

using namespace moco;

namespace {

// ResNet-50 topology (bottlenecks, ImageNet stem with max-pool), width 4, v2 MLP head, split-BN in 2 groups.
MocoConfig tiny_v2() {
  MocoConfig c;
  c.encoder.depth = 50;
  c.encoder.width = 4;
  c.encoder.small_stem = false;
  c.encoder.head = Head::Mlp;
  c.encoder.out_dim = 16;
  c.queue_size = 37;  // odd, and not a multiple of the batch: the enqueue wraps
  c.temperature = 0.2f;
  c.bn_splits = 2;
  c.seed = 7;
  return c;
}

MocoConfig well_conditioned() { return test::well_conditioned_moco(); }

Tensor images(int64_t n, int64_t s, uint64_t batch, int view) { return test::smooth_noisy_images(n, s, batch, view); }

double max_abs(const float* a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, (double)std::fabs(a[i]));
  return m;
}

// The GPU communicator of the one rank: the single-device one, or NCCL's with world size 1, whose collectives
// run on their own stream (the key images' shuffle overlapping the query forward among them).
enum class OneRank { SingleDevice, Nccl };

struct Both {
  SingleCommunicator host_comm;
  Moco cpu;
  Moco readback;  // the GPU state copied back
  cudaStream_t stream = nullptr;
  std::unique_ptr<cuda::DeviceCommunicator> dev_comm;
  std::unique_ptr<cuda::GpuMoco> gpu;
  Both(const MocoConfig& cfg, DType act, OneRank one = OneRank::SingleDevice)
      : cpu(cfg, host_comm), readback(cfg, host_comm) {
    cpu.init();
    // non-blocking, as `moco train`'s (train_step.cpp): the step must not lean on the legacy stream's joins
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    if (one == OneRank::Nccl)
      dev_comm = std::make_unique<cuda::NcclCommunicator>(LaunchInfo{}, stream, 300.0);
    else
      dev_comm = std::make_unique<cuda::SingleDeviceCommunicator>(stream);
    gpu = std::make_unique<cuda::GpuMoco>(cfg, *dev_comm, act);
    gpu->load_from(cpu);
  }
  ~Both() {
    gpu.reset();
    dev_comm.reset();
    if (stream) cudaStreamDestroy(stream);
  }
};

using test::relative_l2;

// After one step from the same state: the SGD momentum buffer of every Param tensor (its gradient plus weight
// decay) within a relative L2 error of grad_rel per tensor, and the forward's products (BN running statistics,
// the momentum-updated key encoder, the queue) within fwd_rel. See the file comment for why gradients get a
// looser, L2 bound.
void expect_step_close(Moco& cpu, Moco& gpu, double grad_rel, double fwd_rel) {
  const auto& reg = cpu.encoder_q().registry();
  const std::vector<float>& a = cpu.optimizer().momentum_buffer();
  const std::vector<float>& b = gpu.optimizer().momentum_buffer();
  for (const RegistryEntry& e : reg.entries()) {
    if (e.slot != Slot::Param) continue;
    EXPECT_LE(relative_l2(a.data() + e.offset, b.data() + e.offset, e.numel()), grad_rel)
        << "gradient (SGD buffer) of " << e.name;
  }
  for (int which = 0; which < 2; ++which) {  // BN running statistics and counters of both encoders
    Encoder& ea = which ? cpu.encoder_k() : cpu.encoder_q();
    Encoder& eb = which ? gpu.encoder_k() : gpu.encoder_q();
    const char* name = which ? "key" : "query";
    for (size_t i = 0; i < ea.stats().size(); ++i)
      ASSERT_NEAR(ea.stats()[i], eb.stats()[i], fwd_rel * (1 + std::fabs(ea.stats()[i]))) << name << " BN statistic " << i;
    EXPECT_EQ(ea.counts(), eb.counts()) << name << " num_batches_tracked";
  }
  // the key encoder after its momentum update: theta_k moved by (1 - m) of theta_q, so it agrees as tightly
  const auto& ka = cpu.encoder_k().params();
  const auto& kb = gpu.encoder_k().params();
  double worst = 0;
  for (size_t i = 0; i < ka.size(); ++i) worst = std::max(worst, (double)std::fabs(ka[i] - kb[i]));
  EXPECT_LE(worst, 1e-5 * max_abs(ka.data(), ka.size())) << "key encoder parameters";
  const auto& qa = cpu.queue().keys();
  const auto& qb = gpu.queue().keys();
  for (size_t i = 0; i < qa.size(); ++i) ASSERT_NEAR(qa[i], qb[i], 10 * fwd_rel) << "queue entry " << i;
  EXPECT_EQ(cpu.queue().ptr(), gpu.queue().ptr());
  EXPECT_EQ(cpu.steps_done(), gpu.steps_done());
}

// The step tests rerun with MOCO_SOFTMAX_FORM=cluster (gpu.softmax_cluster_step) skip, saying why, where that
// form cannot run: a device or build without thread block clusters (before sm_90).
bool asked_cluster_form_cannot_run(const MocoConfig& cfg) {
  return cuda::softmax_form_from_env() == kernels::SoftmaxXentForm::RowPerCluster &&
         !kernels::softmax_xent_cluster_form_fits(1 + cfg.queue_size);
}
constexpr const char* kClusterFormCannotRun =
    "MOCO_SOFTMAX_FORM=cluster: the row-per-cluster form needs an sm_90 build on an sm_90 device";

}  // namespace

// Three steps, each from the CPU's state (load_from before it), so that each comparison measures one step's
// arithmetic and not two trajectories drifting apart; every step sees a new batch, a fuller queue and a new
// permutation. The GPU's own state across steps is held to the CPU's by Fp32StateCarriedAcrossStepsTracksTheCpu
// (tightly, 3 steps) and LossCurveTracksTheCpuRun (240 bf16 steps, on a GPU or with MOCO_EMU_SLOW=1).
TEST(GpuMocoStep, Fp32StepMatchesTheCpuStep) {
  MOCO_REQUIRE_GPU();
  if (asked_cluster_form_cannot_run(tiny_v2())) GTEST_SKIP() << kClusterFormCannotRun;
  // The CPU oracle on its reference im2col path, whose sums are plain float GEMMs as the GPU's are: oneDNN's
  // kernels differ with the CPU, and on an AVX-512 machine they flipped a near-tie that put
  // layer1.1.bn2.weight's gradient 0.37 from the GPU's (the bound is 0.25), where im2col passes.
  test::ScopedEnv reference_conv("MOCO_CONV", "im2col");
  Both m(tiny_v2(), DType::F32);
  const int64_t n = 8, s = 64;
  double worst_grad = 0;
  for (uint64_t step = 0; step < 3; ++step) {
    m.gpu->load_from(m.cpu);
    Tensor xq = images(n, s, step, 0), xk = images(n, s, step, 1);
    const StepStats c = m.cpu.step(xq, xk, 0.03f);
    const StepStats g = m.gpu->step(xq, xk, 0.03f);
    EXPECT_NEAR(g.loss, c.loss, 1e-4 * std::fabs(c.loss)) << "step " << step;
    // one near-tie between the positive and a negative may rank differently: one row of N
    EXPECT_NEAR(g.acc1, c.acc1, 100.0 / n + 1e-3) << "step " << step;
    EXPECT_NEAR(g.acc5, c.acc5, 100.0 / n + 1e-3) << "step " << step;  // the same near-tie allowance
    m.gpu->store_to(m.readback);
    SCOPED_TRACE("step " + std::to_string(step));
    expect_step_close(m.cpu, m.readback, 0.25, 1e-4);
    const std::vector<float>& a = m.cpu.optimizer().momentum_buffer();
    const std::vector<float>& b = m.readback.optimizer().momentum_buffer();
    worst_grad = std::max(worst_grad, relative_l2(a, b));
  }
  EXPECT_LE(worst_grad, 5e-2) << "relative L2 error of the whole gradient";
}

// One step of the CPU and of the GPU on the same 32 images at 16 px (the well-conditioned network's inputs);
// the GPU's state is then read back into m.readback. Returns (CPU, GPU) statistics.
static std::pair<StepStats, StepStats> step_well_conditioned(Both& m) {
  const uint64_t b = test::kClearOfTiesBatch;
  Tensor xq = images(32, 16, b, 0), xk = images(32, 16, b, 1);
  const StepStats c = m.cpu.step(xq, xk, 0.03f);
  const StepStats g = m.gpu->step(xq, xk, 0.03f);
  m.gpu->store_to(m.readback);
  return {c, g};
}

// One step of a network whose gradients have no near-ties at these inputs: fp32 GPU and CPU gradients agree
// to rounding.
static void expect_tight_step(OneRank one) {
  Both m(well_conditioned(), DType::F32, one);
  if (one == OneRank::Nccl) {
    // The first step searches cuDNN's algorithms and grows its caches, and each of those waits for the device
    // from the host, which would finish the shuffle early whatever the stream order says. The compared step is
    // a second one, from the CPU's state again.
    Tensor xq = images(32, 16, 1, 0), xk = images(32, 16, 1, 1);
    m.gpu->step(xq, xk, 0.03f);
    m.gpu->load_from(m.cpu);
  }
  const auto [c, g] = step_well_conditioned(m);
  EXPECT_NEAR(g.loss, c.loss, 1e-5 * std::fabs(c.loss));
  expect_step_close(m.cpu, m.readback, 1e-4, 1e-5);
  const std::vector<float>& a = m.cpu.optimizer().momentum_buffer();
  const std::vector<float>& b = m.readback.optimizer().momentum_buffer();
  EXPECT_LE(relative_l2(a, b), 1e-4) << "relative L2 error of the whole gradient";
}

// MOCO_SOFTMAX_FORM picks the softmax cross-entropy's form for the step (ctest runs the step tests again with
// `cluster`: gpu.softmax_cluster_step, emu.softmax_cluster_step); a bad value, or a row per cluster that cannot hold
// the row, stops the construction with the fix in its message.
TEST(GpuMocoStep, SoftmaxFormComesFromTheEnvironment) {
  MOCO_REQUIRE_GPU();
  using kernels::SoftmaxXentForm;
  test::ScopedEnv env("MOCO_SOFTMAX_FORM", nullptr);
  EXPECT_EQ(cuda::softmax_form_from_env(), SoftmaxXentForm::Auto);
  env.set("block");
  EXPECT_EQ(cuda::softmax_form_from_env(), SoftmaxXentForm::RowPerBlock);
  env.set("cluster");
  EXPECT_EQ(cuda::softmax_form_from_env(), SoftmaxXentForm::RowPerCluster);
  env.set("auto");
  EXPECT_EQ(cuda::softmax_form_from_env(), SoftmaxXentForm::Auto);
  env.set("rows");
  try {
    cuda::softmax_form_from_env();
    ADD_FAILURE() << "MOCO_SOFTMAX_FORM=rows was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MOCO_SOFTMAX_FORM=rows"), std::string::npos) << e.what();
  }

  MocoConfig cfg = tiny_v2();
  env.set("block");
  EXPECT_EQ(Both(cfg, DType::F32).gpu->softmax_form(), SoftmaxXentForm::RowPerBlock);
  env.set(nullptr);  // auto: the row per block, the faster form measured (moco bench names it)
  EXPECT_EQ(Both(cfg, DType::F32).gpu->softmax_form(), SoftmaxXentForm::RowPerBlock);
  cfg.queue_size = kernels::kSoftmaxXentClusterMaxColumns;  // rows of one column more than a cluster holds
  env.set("cluster");
  try {
    Both too_wide(cfg, DType::F32);
    ADD_FAILURE() << "MOCO_SOFTMAX_FORM=cluster was accepted for rows of " << 1 + cfg.queue_size << " logits";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("MOCO_SOFTMAX_FORM=cluster"), std::string::npos) << what;
    EXPECT_NE(what.find("rows of " + std::to_string(1 + cfg.queue_size) + " logits"), std::string::npos) << what;
    EXPECT_NE(what.find("set it to block"), std::string::npos) << what;
  }
}

// Three steps in a row from the GPU's own state, never reloaded from the CPU's: what the GPU carries from one
// step to the next (SGD momentum, the key encoder's EMA, BN running statistics and counters, the queue and its
// pointer) must follow the CPU's. Before each step the CPU takes the GPU's state (store_to), so every
// comparison is of one step from one state: the GPU's transition from what it carried against the CPU's from
// the same. A state the GPU carries wrongly shows in that step's products (a queue row written at a stale
// pointer, a momentum buffer not kept, an EMA not applied), and store_to itself is checked by every other test.
// Why not two free-running trajectories held together for three steps: rounding differences of 1e-7 become,
// at the first ReLU near-tie, gradients that differ by a percent, and the trajectories part (on an H100 the
// third step's SGD buffers were up to 6% apart per tensor, and the CPU's own run moves by up to 7.6% when its
// starting weights are nudged by 1e-6 of their size). The batches are the well-conditioned network's
// (tests/tiny_moco.h).
TEST(GpuMocoStep, Fp32StateCarriedAcrossStepsTracksTheCpu) {
  MOCO_REQUIRE_GPU();
  Both m(well_conditioned(), DType::F32);
  for (uint64_t step = 0; step < 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    if (step > 0) m.gpu->store_to(m.cpu);
    const uint64_t b = test::kClearOfTiesBatch + step;
    Tensor xq = images(32, 16, b, 0), xk = images(32, 16, b, 1);
    const StepStats c = m.cpu.step(xq, xk, 0.03f);
    const StepStats g = m.gpu->step(xq, xk, 0.03f);
    EXPECT_NEAR(g.loss, c.loss, 1e-5 * std::fabs(c.loss));
    m.gpu->store_to(m.readback);
    expect_step_close(m.cpu, m.readback, 1e-4, 1e-5);
    const std::vector<float>& a = m.cpu.optimizer().momentum_buffer();
    const std::vector<float>& r = m.readback.optimizer().momentum_buffer();
    EXPECT_LE(relative_l2(a, r), 1e-4) << "relative L2 error of the whole SGD buffer";
    const std::vector<float>& qa = m.cpu.encoder_q().params();
    const std::vector<float>& qb = m.readback.encoder_q().params();
    EXPECT_LE(relative_l2(qa, qb), 1e-5) << "query encoder parameters after the step";
  }
  EXPECT_EQ(m.readback.steps_done(), 3);
}

TEST(GpuMocoStep, Fp32GradientIsTight) {
  MOCO_REQUIRE_GPU();
  expect_tight_step(OneRank::SingleDevice);
}

// The same over NCCL of one rank: the shuffle of the key images starts before the query forward and runs on
// the communicator's stream, and the key forward must join it first (tools/emu_stream_mutations.sh deletes
// that join and sees this test fail on the emulator's stream model). The step compared is a warmed-up one.
TEST(GpuMocoStep, Fp32StepOverNcclOfOneRankIsTight) {
  MOCO_REQUIRE_GPU();
  expect_tight_step(OneRank::Nccl);
}

// The 8-bit form of the views (what `moco train` hands the GPU step: (N, S, S, 3) uint8, normalised on the
// device, the key view shuffled as bytes) gives the step of the normalised images: the CPU step gets them as
// torchvision's ToTensor + Normalize would make them, (u / 255 - mean) / std in double, written here. The
// well-conditioned network, so the bound is as tight as Fp32GradientIsTight's. These 8-bit views of batch 0 are
// clear of near-ties too: the CPU's step moved by at most 2.1e-5 (whole; 5.5e-5 per tensor) under 16 nudges
// of the weights by 3e-7 of their size, on its oneDNN and im2col paths (the same views of kClearOfTiesBatch are
// not: 2.8e-2; bench/results/2026-11-27-near-tie-margins.md).
TEST(GpuMocoStep, EightBitViewsGiveTheStepOfTheirNormalisedImages) {
  MOCO_REQUIRE_GPU();
  Both m(well_conditioned(), DType::F32);
  const int64_t n = 32, s = 16;
  const double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};
  auto eight_bit = [&](int view) {  // (N, S, S, 3) from the smooth test images, and their normalised (N, 3, S, S)
    const Tensor smooth = images(n, s, 0, view);  // (N, 3, S, S)
    Tensor u8 = Tensor::empty({n, s, s, 3}, DType::U8);
    Tensor f32 = Tensor::empty({n, 3, s, s}, DType::F32);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t p = 0; p < s * s; ++p) {
          const float v = smooth.data<float>()[(i * 3 + ch) * s * s + p];
          const uint8_t u = (uint8_t)std::lround(std::clamp(127.5 + 60.0 * v, 0.0, 255.0));
          u8.data<uint8_t>()[(i * s * s + p) * 3 + ch] = u;
          f32.data<float>()[(i * 3 + ch) * s * s + p] = (float)((u / 255.0 - mean[ch]) / stdev[ch]);
        }
    return std::make_pair(u8, f32);
  };
  const auto [q8, qf] = eight_bit(0);
  const auto [k8, kf] = eight_bit(1);
  const StepStats c = m.cpu.step(qf, kf, 0.03f);
  const StepStats g = m.gpu->step(q8, k8, 0.03f);
  m.gpu->store_to(m.readback);
  EXPECT_NEAR(g.loss, c.loss, 1e-5 * std::fabs(c.loss));
  expect_step_close(m.cpu, m.readback, 1e-4, 1e-5);
  const std::vector<float>& a = m.cpu.optimizer().momentum_buffer();
  const std::vector<float>& b = m.readback.optimizer().momentum_buffer();
  EXPECT_LE(relative_l2(a, b), 1e-4) << "relative L2 error of the whole gradient";
  // the two forms may not be mixed, and a u8 batch must be (N, S, S, 3)
  EXPECT_THROW(m.gpu->step(q8, kf, 0.03f), Error);
  EXPECT_THROW(m.gpu->step(Tensor::empty({n, 3, s, s}, DType::U8), Tensor::empty({n, 3, s, s}, DType::U8), 0.03f),
               Error);
}

TEST(GpuMocoStep, Bf16StepTracksTheCpuStep) {
  MOCO_REQUIRE_GPU();
  if (asked_cluster_form_cannot_run(well_conditioned())) GTEST_SKIP() << kClusterFormCannotRun;
  Both m(well_conditioned(), DType::BF16);
  const auto [c, g] = step_well_conditioned(m);
  EXPECT_NEAR(g.loss, c.loss, 2e-2 * std::fabs(c.loss));
  const std::vector<float>& a = m.cpu.optimizer().momentum_buffer();
  const std::vector<float>& b = m.readback.optimizer().momentum_buffer();
  for (const RegistryEntry& e : m.cpu.encoder_q().registry().entries()) {
    if (e.slot == Slot::Param && e.name.rfind("fc.", 0) == 0) {
      EXPECT_LE(relative_l2(a.data() + e.offset, b.data() + e.offset, e.numel()), 0.25)
          << "gradient of the head's " << e.name;
    }
  }
  EXPECT_LE(relative_l2(a, b), 0.75) << "relative L2 error of the whole gradient";
}

TEST(GpuMocoStep, NothingIsAllocatedAfterWarmUp) {
  MOCO_REQUIRE_GPU();
  Both m(tiny_v2(), DType::BF16);
  Tensor xq = images(8, 32, 0, 0), xk = images(8, 32, 0, 1);
  m.gpu->step(xq, xk, 0.03f);
  m.gpu->step(xq, xk, 0.03f);
  m.gpu->freeze();
  for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(m.gpu->step(xq, xk, 0.03f));  // a device allocation would throw
  EXPECT_GT(m.gpu->memory().activations, 0u);
}

// The op clock (moco bench --op-times) brackets every op of the step once per call. The oracle is the
// network's structure: ResNet-50 has 53 convolutions (the stem, 3 in each of 16 bottlenecks, 4 downsamples),
// each followed by a BN, one max-pool after the stem and one average pool before the head; the v2 head is
// two linear layers with a ReLU between. A step runs both encoders forward and the query encoder backward,
// where the stem needs no data gradient and each bottleneck's conv1 adds its input gradient into the
// shortcut's as it writes it, so no add runs.
TEST(GpuMocoStep, OpClockBracketsEveryOpOfTheStep) {
  MOCO_REQUIRE_GPU();
  Both m(tiny_v2(), DType::BF16);
  Tensor xq = images(8, 32, 0, 0), xk = images(8, 32, 0, 1);
  m.gpu->step(xq, xk, 0.03f);
  EXPECT_TRUE(m.gpu->op_clock().totals().empty()) << "off, the clock records nothing";
  m.gpu->op_clock().enable();
  m.gpu->step(xq, xk, 0.03f);
  m.gpu->op_clock().reset_totals();
  m.gpu->freeze();  // the clock's events are no device memory: the timed steps allocate nothing
  const int steps = 2;
  for (int i = 0; i < steps; ++i) m.gpu->step(xq, xk, 0.03f);
  const std::map<std::string, int64_t> per_step = {
      {"conv forward", 2 * 53}, {"conv filter gradient", 53}, {"conv data gradient", 52},
      {"bn forward", 2 * 53},   {"bn backward", 53},          {"max-pool forward", 2},
      {"max-pool backward", 1}, {"avg-pool forward", 2},      {"avg-pool backward", 1},
      {"linear forward", 2 * 2}, {"linear backward", 2},      {"relu", 2},
      {"relu backward", 1},     {"weight pack", 2},
      {"network input", 2},     {"weight gradient unpack", 53 + 2}};
  std::map<std::string, int64_t> got;
  for (const cuda::OpClock::Total& t : m.gpu->op_clock().totals()) {
    got[t.name] = t.calls;
    EXPECT_GE(t.ms, 0.0) << t.name;
  }
  for (const auto& [name, calls] : per_step) EXPECT_EQ(got[name], steps * calls) << name;
  EXPECT_EQ(got.size(), per_step.size());
}

// A few hundred steps of a small model on learnable synthetic data (8 prototypes, two noisy views each):
// the bf16 GPU loss curve must track the CPU's, window by window (10%: the two runs drift apart by bf16
// rounding over hundreds of steps, while a wrong op shows as a different curve), and both must fall: the CPU
// by a fifth, the GPU by at least half as much as the CPU. The GPU's fall is held to the CPU's, not to a
// fifth of its own: on an H100 its bf16 run fell by 17.6% to 19.3% where the CPU's fell by more than 20%, each
// window within the 10%, and a fixed fifth passed alone and failed after the other step tests.
TEST(GpuMocoStep, LossCurveTracksTheCpuRun) {
  MOCO_REQUIRE_GPU();
  if (on_the_emulator() && !std::getenv("MOCO_EMU_SLOW"))
    GTEST_SKIP() << "240 steps take about 18 minutes on the CUDA emulator; MOCO_EMU_SLOW=1 runs them";
  MocoConfig cfg;
  cfg.encoder.depth = 18, cfg.encoder.width = 8, cfg.encoder.small_stem = true;
  cfg.encoder.head = Head::Mlp, cfg.encoder.out_dim = 32;
  cfg.queue_size = 512, cfg.temperature = 0.2f, cfg.momentum = 0.99f, cfg.bn_splits = 4, cfg.seed = 3;
  Both m(cfg, DType::BF16);
  const int64_t n = 32, s = 16, steps = 240, window = 40;
  std::vector<double> cpu_w(steps / window, 0), gpu_w(steps / window, 0);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor xq = Tensor::empty({n, 3, s, s}, DType::F32), xk = Tensor::empty({n, 3, s, s}, DType::F32);
    Rng r(5, (uint64_t)t);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t proto = (int64_t)r.below(8);
      for (int64_t j = 0; j < 3 * s * s; ++j) {
        const float base = std::sin(0.37f * (float)(proto + 1) * (float)j);
        xq.data<float>()[i * 3 * s * s + j] = base + 0.3f * (float)r.normal();
        xk.data<float>()[i * 3 * s * s + j] = base + 0.3f * (float)r.normal();
      }
    }
    cpu_w[t / window] += m.cpu.step(xq, xk, 0.05f).loss / window;
    gpu_w[t / window] += m.gpu->step(xq, xk, 0.05f).loss / window;
  }
  std::string curves = "mean loss per window of " + std::to_string(window) + " steps (cpu / gpu):";
  for (size_t i = 0; i < cpu_w.size(); ++i) curves += " " + std::to_string(cpu_w[i]) + "/" + std::to_string(gpu_w[i]);
  std::printf("%s\n", curves.c_str());  // in the log of every run, passed or not
  for (size_t i = 0; i < cpu_w.size(); ++i)
    EXPECT_NEAR(gpu_w[i], cpu_w[i], 0.10 * cpu_w[i]) << "mean loss of steps [" << i * window << ", "
                                                    << (i + 1) * window << ")";
  const double cpu_fall = cpu_w.front() - cpu_w.back(), gpu_fall = gpu_w.front() - gpu_w.back();
  EXPECT_GT(cpu_fall, 0.2 * cpu_w.front()) << "the CPU run did not learn: the comparison would be empty; " << curves;
  EXPECT_GT(gpu_fall, 0.5 * cpu_fall) << "the GPU run learned less than half what the CPU's did; " << curves;
}

// The bytes of tiny_v2's inner BN+ReLU outputs at batch n and s px (ResNet-50: 3, 4, 6, 3 bottlenecks of
// width << stage planes): after the stem's stride-2 conv and max-pool a stage's first block has bn1 at its
// input size and bn2 at its output size (stride 2 from the second stage on, on conv2), the others both at the
// output size.
static int64_t inner_bn_relu_bytes(int64_t n, int64_t s, int64_t width, int64_t elem) {
  const int blocks[4] = {3, 4, 6, 3};
  int64_t hw = s / 4, total = 0;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = width << stage, out = stage == 0 ? hw : hw / 2;
    total += planes * (hw * hw + out * out) + (blocks[stage] - 1) * 2 * planes * out * out;
    hw = out;
  }
  return total * n * elem;
}

// recompute_bn_relu on the GPU: the bottlenecks keep neither inner BN+ReLU output (the BN takes its ReLU's
// mask from x there, so nothing else holds them) and rebuild each with the forward's own apply pass, so the
// steps are the same bit for bit (the second model runs the first's convolution plans) with exactly those
// outputs' bytes less saved for backward.
TEST(GpuMocoStep, RecomputedBnReluOutputsGiveTheSameStepsWithLessSaved) {
  MOCO_REQUIRE_GPU();
  MocoConfig rebuilt = tiny_v2();
  rebuilt.recompute_bn_relu = true;
  Both a(tiny_v2(), DType::BF16), b(rebuilt, DType::BF16);
  const int64_t n = 8, s = 32;
  for (uint64_t step = 0; step < 2; ++step) {
    const Tensor xq = images(n, s, step, 0), xk = images(n, s, step, 1);
    const StepStats sa = a.gpu->step(xq, xk, 0.03f);
    if (step == 0) b.gpu->use_conv_plans(a.gpu->conv_plans());
    const StepStats sb = b.gpu->step(xq, xk, 0.03f);
    EXPECT_EQ(std::memcmp(&sa.loss, &sb.loss, sizeof(float)), 0) << sa.loss << " against " << sb.loss;
    EXPECT_EQ(sa.activation_bytes - sb.activation_bytes, inner_bn_relu_bytes(n, s, 4, 2))
        << sa.activation_bytes << " saved against " << sb.activation_bytes;
  }
  a.gpu->store_to(a.readback);
  b.gpu->store_to(b.readback);
  EXPECT_EQ(a.readback.encoder_q().params(), b.readback.encoder_q().params());
  EXPECT_EQ(a.readback.encoder_q().stats(), b.readback.encoder_q().stats());
  EXPECT_EQ(a.readback.optimizer().momentum_buffer(), b.readback.optimizer().momentum_buffer());
  EXPECT_EQ(a.readback.queue().keys(), b.readback.queue().keys());
}
