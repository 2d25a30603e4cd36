// The augmentation stages on the device (GpuViewStages, kernels/view_stages.cu) against their CPU twin,
// apply_view_stages_u8, which runs the CPU's own colour ops, blur and flip (themselves checked against
// independent references in tests/test_augment.cpp) in the recipe's order. Every recipe with stages after its
// crop, at an odd size, on views whose decisions cover every jitter op at every position, grayscale before
// and after the jitter, blurs of 3 to 13 taps, flips, and a grey view (hue's zero-chroma case). The device
// repeats the CPU's float operations in the same order, so the bytes must agree; on a machine whose compiler
// fuses multiply-adds on the host, a value may land one level off, so one level is allowed on at most 0.1%.
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

// Decisions for view i of n that together cover the stages: jitter with each op at each position, grayscale
// on every third view, blur sigma from 0.1 to 2.0, flip on every other view.
ViewParams covering_params(int i, Rng& r) {
  ViewParams p;
  p.jitter = i % 5 != 4;
  for (int k = 0; k < 4; ++k) p.jitter_params.order[k] = (k + i) % 4;
  p.jitter_params.brightness = (float)r.uniform(0.6, 1.4);
  p.jitter_params.contrast = (float)r.uniform(0.6, 1.4);
  p.jitter_params.saturation = (float)r.uniform(0.6, 1.4);
  p.jitter_params.hue = (float)r.uniform(-0.1, 0.1);
  p.gray = i % 3 == 1;
  p.blur = i % 2 == 0;
  p.sigma = 0.1f + 1.9f * (float)(i % 4) / 3.f;
  p.flip = i % 2 == 1;
  return p;
}

}  // namespace

TEST(GpuViewStages, MatchTheCpuStagesByteForByte) {
  MOCO_REQUIRE_GPU();
  cudaStream_t stream = nullptr;
  MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int64_t values = 0, off_by_one = 0;
  for (const char* name : {"v1", "v2", "small", "lincls_train"}) {
    const AugmentRecipe rec = recipe_from_name(name, 13);
    const int64_t n = 9, s = rec.size, per = s * s * 3;
    Rng r(21, (uint64_t)rec.kind);
    std::vector<uint8_t> in((size_t)(n * per));  // (N, S, S, 3)
    for (auto& b : in) b = (uint8_t)r.below(256);
    for (int64_t e = 0; e < per; e += 3) in[(size_t)e] = in[(size_t)e + 1] = in[(size_t)e + 2];  // view 0 is grey
    std::vector<ViewParams> params;
    for (int i = 0; i < n; ++i) params.push_back(covering_params(i, r));

    cuda::DeviceBuffer<uint8_t> views(in, "views");
    MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the upload ran on the legacy stream, which `stream` does not join
    Tensor t = Tensor::wrap(views.get(), {n, s, s, 3}, DType::U8, Device::CUDA);
    cuda::GpuViewStages stages(rec, stream);
    stages.apply(t, params);
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<uint8_t> got = views.download();
    std::vector<uint8_t> want((size_t)per);  // (S, S, 3)
    for (int64_t i = 0; i < n; ++i) {
      apply_view_stages_u8(rec, params[(size_t)i], in.data() + i * per, want.data());
      for (int64_t e = 0; e < per; ++e) {
        const int d = std::abs((int)got[(size_t)(i * per + e)] - (int)want[(size_t)e]);
        ASSERT_LE(d, 1) << name << " view " << i << " value " << e << ": device " << (int)got[(size_t)(i * per + e)]
                        << ", CPU " << (int)want[(size_t)e];
        off_by_one += d;
        ++values;
      }
    }
  }
  std::printf("device view stages: %lld of %lld values one level off the CPU\n", (long long)off_by_one,
              (long long)values);
  EXPECT_LE(off_by_one * 1000, values) << "more than 0.1% of the values are a level off";
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
