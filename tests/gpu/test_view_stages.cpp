// The augmentation stages on the device (GpuViewStages, kernels/view_stages.cu) against their CPU twin,
// apply_view_stages_u8, which runs the CPU's own colour ops, blur and flip (themselves checked against
// independent references in tests/test_augment.cpp) in the recipe's order. Every recipe with stages after its
// crop, at an odd size, on 130 views (three chunks of the device's 64) whose decisions cover every jitter op at
// every position, grayscale before and after the jitter, PIL's box blurs (whole radius 0 and 1) with and
// without a flip, and a grey view (hue's zero-chroma case); then a second batch through the same object. The
// device repeats the CPU's float operations in the same order, unfused on both sides (-ffp-contract=off on the
// host), and the blur's integer arithmetic, so every byte must be equal: a fused multiply-add on either side
// would move a few bytes by one level.
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../src/cuda/check.h"
#include "../../src/cuda/device_buffer.h"
#include "../../src/cuda/view_stages.h"
#include "gpu_test.h"
#include "moco/rng.h"

using namespace moco;

namespace {

// Decisions for view i that together cover the stages: jitter with each op at each position, grayscale on
// every third view, blur sigma 0.1, 0.7, 1.3 and 2.0 (box radius 0.002 to 1.375) on two views of three, flip
// on every other pair of views (so blur and flip meet in every combination).
ViewParams covering_params(int i, Rng& r) {
  ViewParams p;
  p.jitter = i % 5 != 4;
  for (int k = 0; k < 4; ++k) p.jitter_params.order[k] = (k + i) % 4;
  p.jitter_params.brightness = (float)r.uniform(0.6, 1.4);
  p.jitter_params.contrast = (float)r.uniform(0.6, 1.4);
  p.jitter_params.saturation = (float)r.uniform(0.6, 1.4);
  p.jitter_params.hue = (float)r.uniform(-0.1, 0.1);
  p.gray = i % 3 == 1;
  p.blur = i % 3 != 2;
  const float sigmas[4] = {0.1f, 0.7f, 1.3f, 2.0f};
  p.sigma = sigmas[i % 4];
  p.flip = (i / 2) % 2 == 1;
  return p;
}

// Runs one batch of n random crops through `stages` and compares every byte with the CPU twin.
void expect_batch_matches(cuda::GpuViewStages& stages, const AugmentRecipe& rec, int64_t n, uint64_t seed,
                          cudaStream_t stream) {
  const int64_t s = rec.size, per = s * s * 3;
  Rng r(seed, (uint64_t)rec.kind);
  std::vector<uint8_t> in((size_t)(n * per));  // (N, S, S, 3)
  for (auto& b : in) b = (uint8_t)r.below(256);
  for (int64_t e = 0; e < per; e += 3) in[(size_t)e] = in[(size_t)e + 1] = in[(size_t)e + 2];  // view 0 is grey
  std::vector<ViewParams> params;
  for (int i = 0; i < n; ++i) params.push_back(covering_params(i, r));
  cuda::DeviceBuffer<uint8_t> views(in, "views");
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the upload ran on the legacy stream, which `stream` does not join
  stages.apply(Tensor::wrap(views.get(), {n, s, s, 3}, DType::U8, Device::CUDA), params);
  MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<uint8_t> got = views.download();
  std::vector<uint8_t> want((size_t)per);  // (S, S, 3)
  for (int64_t i = 0; i < n; ++i) {
    apply_view_stages_u8(rec, params[(size_t)i], in.data() + i * per, want.data());
    for (int64_t e = 0; e < per; ++e)
      ASSERT_EQ((int)got[(size_t)(i * per + e)], (int)want[(size_t)e])
          << recipe_name(rec.kind) << " view " << i << " of " << n << ", value " << e;
  }
}

}  // namespace

TEST(GpuViewStages, MatchTheCpuStagesByteForByte) {
  MOCO_REQUIRE_GPU();
  cudaStream_t stream = nullptr;
  MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const char* name : {"v1", "v2", "small", "lincls_train"}) {
    const AugmentRecipe rec = recipe_from_name(name, 13);
    cuda::GpuViewStages stages(rec, stream);
    expect_batch_matches(stages, rec, 130, 21, stream);
    expect_batch_matches(stages, rec, 7, 22, stream);  // the same object again, a smaller batch
  }
  // a recipe without a stage ignores the decision for it: lincls_train only flips
  const AugmentRecipe lincls = recipe_from_name("lincls_train", 13);
  ViewParams all;
  all.jitter = all.gray = all.blur = true, all.sigma = 1.f;
  std::vector<uint8_t> one((size_t)(13 * 13 * 3));
  for (size_t e = 0; e < one.size(); ++e) one[e] = (uint8_t)(e * 7);
  cuda::DeviceBuffer<uint8_t> dv(one, "view");
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());
  cuda::GpuViewStages only_flip(lincls, stream);
  only_flip.apply(Tensor::wrap(dv.get(), {1, 13, 13, 3}, DType::U8, Device::CUDA), {all});
  MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_EQ(dv.download(), one) << "lincls_train has no colour stage and no flip was drawn";
  EXPECT_THROW(only_flip.apply(Tensor::wrap(dv.get(), {1, 13, 13, 3}, DType::U8, Device::CUDA), {}), Error);
  MOCO_CUDA_CHECK(cudaStreamDestroy(stream));
}
