// How far the CPU's own MoCo step moves when the query weights are nudged by a rounding-level amount: the
// margin of the batches the tight GPU step tests use (tests/tiny_moco.h, tests/gpu/test_gpu_moco_step.cpp).
// A ReLU input within rounding of zero flips under such a nudge and moves the gradient below it by 1e-3 or
// more; a batch clear of near-ties moves by 1e-5. For each of `steps` batches from `batch`, from the state the
// unnudged run reached, `nudges` copies with every query weight w -> w * (1 + eps * normal) take one step, and
// the largest relative L2 distance of their SGD buffers from the unnudged one is printed, whole and per tensor.
//   build/study_near_tie_margin EPS BATCH STEPS NUDGES [8bit|free|crops]
// 8bit: the views of EightBitViewsGiveTheStepOfTheirNormalisedImages (u8, then normalised).
// crops: the views of GpuTrainStep.CropsAndDecisionsGiveTheCpuStepOfTheirViews (v2 crops of colour noise from
// the loader, staged on the CPU, normalised); BATCH is then the loader's seed, and the steps its first batches.
// free: each nudged copy is nudged once, at the start, and then runs its own trajectory beside the unnudged one
// (what a test that holds two runs together for STEPS steps depends on).
// MOCO_CONV=im2col or onednn picks the CPU convolution path.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "moco/augment.h"
#include "moco/comm.h"
#include "moco/loader.h"
#include "moco/moco.h"
#include "moco/registry.h"
#include "moco/rng.h"
#include "tiny_moco.h"

using namespace moco;

// (N, 3, S, S) as the 8-bit test makes them: the smooth images to u8, then (u / 255 - mean) / std.
static Tensor eight_bit_views(uint64_t batch, int view) {
  const int64_t n = 32, s = 16;
  const double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};
  const Tensor smooth = test::smooth_noisy_images(n, s, batch, view);
  Tensor out = Tensor::empty({n, 3, s, s}, DType::F32);  // (N, 3, S, S)
  for (int64_t i = 0; i < n * 3 * s * s; ++i) {
    const int64_t ch = (i / (s * s)) % 3;
    const uint8_t u = (uint8_t)std::lround(std::clamp(127.5 + 60.0 * smooth.data<float>()[i], 0.0, 255.0));
    out.data<float>()[i] = (float)((u / 255.0 - mean[ch]) / stdev[ch]);
  }
  return out;
}

int main(int argc, char** argv) {
  const char* mode = argc > 5 ? argv[5] : "";
  if (argc < 5 || argc > 6 || (argc == 6 && std::strcmp(mode, "8bit") && std::strcmp(mode, "free") &&
                               std::strcmp(mode, "crops"))) {
    std::fprintf(stderr, "usage: %s EPS BATCH STEPS NUDGES [8bit|free|crops]%s%s\n", argv[0],
                 argc == 6 ? "; got the mode " : "", argc == 6 ? mode : "");
    return 2;
  }
  const double eps = std::atof(argv[1]);
  const uint64_t first = std::strtoull(argv[2], nullptr, 10);
  const int steps = std::atoi(argv[3]), nudges = std::atoi(argv[4]);
  const bool eight_bit = std::strcmp(mode, "8bit") == 0;
  const bool free_running = std::strcmp(mode, "free") == 0;
  const bool crops = std::strcmp(mode, "crops") == 0;
  // crops: the staging test's data set, recipe and loader settings, with the loader's seed from BATCH
  test::NoiseDataset data(64, 20, 24, 9);
  const AugmentRecipe rec = recipe_from_name("v2", 16);
  std::unique_ptr<Loader> loader;
  if (crops) {
    LoaderConfig lc;
    lc.batch = 32, lc.seed = first, lc.view_dtype = DType::U8, lc.stages_on_device = true;
    loader = std::make_unique<Loader>(data, rec, lc);
    loader->start_epoch(0);
  }
  const MocoConfig cfg = test::well_conditioned_moco();
  SingleCommunicator comm;
  Moco run(cfg, comm);
  run.init();
  std::vector<std::unique_ptr<Moco>> copies;  // free: the nudged copies, each on its own trajectory
  for (int t = 0; free_running && t < nudges; ++t) {
    copies.push_back(std::make_unique<Moco>(cfg, comm));
    copies.back()->init();
    test::nudge_query_weights(*copies.back(), eps, 1234, (uint64_t)t);
  }
  for (int step = 0; step < steps; ++step) {
    const uint64_t batch = first + (uint64_t)step;
    Batch crop_batch;
    if (crops && !loader->next(crop_batch)) break;
    const Tensor xq = crops ? test::cpu_staged_views(crop_batch, 0, rec)
                      : eight_bit ? eight_bit_views(batch, 0) : test::smooth_noisy_images(32, 16, batch, 0);
    const Tensor xk = crops ? test::cpu_staged_views(crop_batch, 1, rec)
                      : eight_bit ? eight_bit_views(batch, 1) : test::smooth_noisy_images(32, 16, batch, 1);
    test::NudgeSpread spread;
    if (free_running) {
      run.step(xq, xk, 0.03f);
      for (auto& m : copies) {
        m->step(xq, xk, 0.03f);
        spread.widen(run, *m);
      }
    } else {
      spread = test::nudged_step_spread(run, xq, xk, eps, 1234 + (uint64_t)step, nudges);
      run.step(xq, xk, 0.03f);
    }
    char what[96];
    if (crops)
      std::snprintf(what, sizeof what, "crops of loader seed %llu, batch %d", (unsigned long long)first, step);
    else
      std::snprintf(what, sizeof what, "%s%sbatch %llu", free_running ? "free-running, " : "",
                    eight_bit ? "8-bit " : "", (unsigned long long)batch);
    std::printf("%s: over %d nudges of %.0e, the SGD buffer moved by at most %.2e (whole), %.2e (a tensor)\n", what,
                nudges, eps, spread.whole, spread.tensor);
  }
  return 0;
}
