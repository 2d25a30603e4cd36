// The linear probe's classifier on the GPU against the CPU one, its reference (cpu::linear_*,
// cpu::softmax_xent and Sgd, each checked by finite differences or fixtures elsewhere): the same initial
// parameters and batches through several SGD steps with momentum and weight decay, batch sizes changing
// (one larger than any before, so the device buffers grow mid-run). Losses and parameters agree to fp32
// rounding: the GEMMs sum D = 37 and N <= 50 products in another order, so 1e-5 relative is far above the
// rounding and far below any wrong term.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../../src/cuda/check.h"
#include "../../src/cuda/gpu_features.h"
#include "../../src/cuda/gpu_linear_probe.h"
#include "../tiny_moco.h"
#include "gpu_test.h"
#include "moco/host_layout.h"
#include "moco/lincls.h"
#include "moco/linear_probe.h"
#include "moco/rng.h"

using namespace moco;

namespace {

Tensor random_features(int64_t n, int64_t d, uint64_t stream) {
  Tensor t = Tensor::empty({n, d}, DType::F32);  // (N, D)
  const std::vector<float> v = normal_floats((size_t)(n * d), 77, stream);
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

std::vector<int> random_labels(int64_t n, int64_t classes, uint64_t stream) {
  Rng rng(78, stream);
  std::vector<int> y((size_t)n);  // (N)
  for (auto& v : y) v = (int)rng.below((uint64_t)classes);
  return y;
}

// The probes' shape and optimiser in the tests below, and their initial parameters (normal values x 0.1).
constexpr int64_t kDim = 37, kClasses = 11;
const SgdConfig kProbeSgd{0.9f, 1e-3f};
std::vector<float> initial_parameters() {
  std::vector<float> p = normal_floats((size_t)(kClasses * kDim + kClasses), 76, 0);
  for (auto& v : p) v *= 0.1f;
  return p;
}

// Non-blocking, as the GPU features' stream that runs the probe in `moco lincls`.
cudaStream_t non_blocking_stream() {
  cudaStream_t stream = nullptr;
  MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

}  // namespace

TEST(GpuLinearProbe, TrainsLikeTheCpuProbe) {
  MOCO_REQUIRE_GPU();
  const int64_t d = kDim, classes = kClasses;
  const std::vector<float> initial = initial_parameters();
  auto cpu_probe = make_cpu_linear_probe(d, classes, initial, kProbeSgd);
  cudaStream_t stream = non_blocking_stream();
  auto gpu_probe = cuda::make_gpu_linear_probe(d, classes, initial, kProbeSgd, stream);
  const int64_t batches[] = {29, 29, 7, 50, 29};
  const float lrs[] = {3.f, 3.f, 1.f, 0.5f, 0.5f};
  for (int s = 0; s < 5; ++s) {
    const Tensor x = random_features(batches[s], d, (uint64_t)s);
    const std::vector<int> y = random_labels(batches[s], classes, (uint64_t)s);
    const double ref = cpu_probe->train_step(x, y, lrs[s]);
    const double got = gpu_probe->train_step(x, y, lrs[s]);
    ASSERT_NEAR(got, ref, 1e-5 * std::fabs(ref)) << "loss of step " << s;
    const std::vector<float> want = cpu_probe->parameters(), have = gpu_probe->parameters();
    ASSERT_EQ(have.size(), want.size());
    double scale = 0, diff = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, (double)std::fabs(want[i]));
      diff = std::max(diff, (double)std::fabs(have[i] - want[i]));
    }
    EXPECT_LT(diff, 1e-5 * scale) << "parameters after step " << s;
    EXPECT_GT(std::fabs(have[0] - initial[0]), 1e-3) << "the probe did not move";
  }
  const Tensor x = random_features(41, d, 9);
  const std::vector<int> y = random_labels(41, classes, 9);
  const TopHits correct = gpu_probe->count_correct(x, y), want = cpu_probe->count_correct(x, y);
  // the parameters agree to 1e-5, not bit for bit (cuBLAS sums in its own order), so one near-tie among the
  // 41 rows may rank the other way on a device: one row of each count
  EXPECT_LE(std::abs(correct.top1 - want.top1), 1) << "top-1 " << correct.top1 << " against the CPU's " << want.top1;
  EXPECT_LE(std::abs(correct.top5 - want.top5), 1) << "top-5 " << correct.top5 << " against the CPU's " << want.top5;
  EXPECT_GT(correct.top1, 0);
  EXPECT_LT(correct.top1, correct.top5);
  EXPECT_LT(correct.top5, 41);
  gpu_probe.reset();
  cudaStreamDestroy(stream);
}

// Every row scores the classes by the bias alone (zero weight): classes 1, 2 and 4 tie for the maximum, and
// the argmax is the first of them, so exactly the rows labelled 1 count as correct; all but the label 3, which
// five scores beat, are top-5 hits (LinearProbe.TopOneAndTopFiveCountTiesForTheLowerClass counts them).
TEST(GpuLinearProbe, TiedScoresGoToTheFirstClass) {
  MOCO_REQUIRE_GPU();
  const int64_t d = 5, classes = 6;
  std::vector<float> initial((size_t)(classes * d), 0.f);
  const std::vector<float> bias = {0.f, 2.f, 2.f, -1.f, 2.f, 1.f};
  initial.insert(initial.end(), bias.begin(), bias.end());
  auto gpu_probe = cuda::make_gpu_linear_probe(d, classes, initial, SgdConfig{0.9f, 0.f}, nullptr);
  const std::vector<int> y = {1, 2, 4, 1, 0, 5, 1, 3, 2};
  const Tensor x = random_features((int64_t)y.size(), d, 3);
  const TopHits h = gpu_probe->count_correct(x, y);
  EXPECT_EQ(h.top1, 3);
  EXPECT_EQ(h.top5, 8);
}

// A resumed probe (lincls --resume): the state set into a fresh probe is what its next step starts from. Two
// probes on one non-blocking stream, as `moco lincls --device cuda` runs them: one trained three steps, the
// other given the first's state after two and trained the third. Their losses and parameters after the third
// step must be equal bit for bit; the restored momentum must also match what the first probe held.
TEST(GpuLinearProbe, SetStateIsWhereTheNextStepStarts) {
  MOCO_REQUIRE_GPU();
  const int64_t d = kDim, classes = kClasses;
  const std::vector<float> initial = initial_parameters();
  cudaStream_t stream = non_blocking_stream();
  auto whole = cuda::make_gpu_linear_probe(d, classes, initial, kProbeSgd, stream);
  auto resumed = cuda::make_gpu_linear_probe(d, classes, std::vector<float>(initial.size(), 0.f), kProbeSgd, stream);
  for (int s = 0; s < 2; ++s)
    whole->train_step(random_features(29, d, (uint64_t)s), random_labels(29, classes, (uint64_t)s), 3.f);
  const std::vector<float> params = whole->parameters(), momentum = whole->momentum();
  resumed->set_state(params, momentum);
  EXPECT_EQ(resumed->momentum(), momentum);
  const Tensor x = random_features(29, d, 2);
  const std::vector<int> y = random_labels(29, classes, 2);
  const double a = whole->train_step(x, y, 1.f), b = resumed->train_step(x, y, 1.f);
  EXPECT_EQ(a, b) << "the resumed probe's loss";
  EXPECT_EQ(whole->parameters(), resumed->parameters());
  EXPECT_EQ(whole->momentum(), resumed->momentum());
  whole.reset();
  resumed.reset();
  cudaStreamDestroy(stream);
}

TEST(GpuLinearProbe, RejectsLabelsOutsideTheClasses) {
  MOCO_REQUIRE_GPU();
  auto probe = cuda::make_gpu_linear_probe(4, 3, std::vector<float>(15, 0.f), SgdConfig{}, nullptr);
  const Tensor x = random_features(2, 4, 1);
  try {
    probe->train_step(x, {0, 3}, 1.f);
    FAIL() << "label 3 of 3 classes was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("label 3 outside [0, 3)"), std::string::npos) << e.what();
  }
}

// `moco lincls --device cuda` as run_lincls drives it: the frozen backbone on the GPU (fp32 here), its 8-bit
// views normalised there, and the probe trained on the GPU (the extractor's linear_probe()), against the same
// protocol all on the CPU. The two see the same 8-bit views, normalised to the same fp32 input; the GPU's
// convolutions and BN sum in other orders, so the features and then the losses differ a little: each epoch's
// loss within 2% of the CPU's (on the emulator they were 0.02% to 0.5% apart, the loss falling from 0.43 to
// 1e-4; measured when the CPU still held its views in float), and both learn the task.
TEST(GpuLinearProbe, LinclsOnTheGpuTracksTheCpuRun) {
  MOCO_REQUIRE_GPU();
  Encoder enc(test::probe_backbone());
  enc.init(3);
  const test::DarkBright train(64, 1), test_split(32, 2);
  const LinclsOptions o = test::probe_options(4, 3);
  std::vector<double> cpu_losses, gpu_losses;
  const LinclsResult cpu =
      run_lincls(enc, train, test_split, o, [&](const LinclsEpoch& e) { cpu_losses.push_back(e.loss); });
  std::unique_ptr<FeatureExtractor> fx = cuda::make_gpu_features(enc, DType::F32);
  const LinclsResult gpu =
      run_lincls(enc, train, test_split, o, [&](const LinclsEpoch& e) { gpu_losses.push_back(e.loss); }, fx.get());
  ASSERT_EQ(gpu_losses.size(), cpu_losses.size());
  for (size_t e = 0; e < cpu_losses.size(); ++e)
    EXPECT_NEAR(gpu_losses[e], cpu_losses[e], 0.02 * cpu_losses[e]) << "epoch " << e;
  EXPECT_LT(gpu_losses.back(), gpu_losses.front());
  EXPECT_GE(cpu.top1, 90.0);
  EXPECT_GE(gpu.top1, 90.0);
}
