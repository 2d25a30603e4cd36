// Backbone and head features on the GPU (GpuFeatures, the kNN monitor's and `moco knn`/`moco lincls`'s
// extractor) against the CPU Encoder's, the oracle: the same weights and BN running statistics, BN in eval mode. In
// fp32 on both input forms: 8-bit views (what the evaluation loaders hand it, normalised on the device), for
// which the CPU gets the images as torchvision's ToTensor + Normalize would make them ((u / 255 - mean) / std
// in double, written here), and normalised fp32 views.
#include <algorithm>
#include <cmath>
#include <memory>

#include "../../src/cuda/gpu_features.h"
#include "gpu_test.h"
#include "moco/moco.h"
#include "moco/rng.h"

using namespace moco;

namespace {

// ResNet-18, small stem, width 8, v2's MLP head: the encoder of the small-image recipe, narrowed.
MocoConfig small_encoder() {
  MocoConfig c;
  c.encoder.depth = 18, c.encoder.width = 8, c.encoder.small_stem = true;
  c.encoder.head = Head::Mlp, c.encoder.out_dim = 16;
  c.queue_size = 64, c.seed = 5;
  return c;
}

// max |a - b| over max |b|
double relative_max(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    diff = std::max(diff, (double)std::fabs(a.data<float>()[i] - b.data<float>()[i]));
    scale = std::max(scale, (double)std::fabs(b.data<float>()[i]));
  }
  return diff / scale;
}

}  // namespace

TEST(GpuFeatures, MatchTheCpuEncoderOnEightBitAndFloatViews) {
  MOCO_REQUIRE_GPU();
  SingleCommunicator comm;
  Moco host(small_encoder(), comm);
  host.init();
  Encoder& enc = host.encoder_q();
  // running statistics away from their initial (0, 1), so eval-mode BN is exercised for real: means in
  // [-0.1, 0.1), variances in [0.5, 1.5)
  Rng r(3, 4);
  for (const RegistryEntry& e : enc.registry().entries()) {
    if (e.slot != Slot::Stat) continue;
    const bool var = e.name.size() > 3 && e.name.compare(e.name.size() - 3, 3, "var") == 0;
    for (int64_t i = 0; i < e.numel(); ++i)
      enc.stats()[(size_t)(e.offset + i)] = var ? (float)(0.5 + r.uniform()) : (float)(0.2 * r.uniform() - 0.1);
  }
  const int64_t n = 6, s = 12, plane = s * s;
  Tensor u8 = Tensor::empty({n, s, s, 3}, DType::U8);
  Tensor normalised = Tensor::empty({n, 3, s, s}, DType::F32);
  const double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < plane; ++p)
      for (int64_t c = 0; c < 3; ++c) {
        const uint8_t u = (uint8_t)r.below(256);
        u8.data<uint8_t>()[(i * plane + p) * 3 + c] = u;
        normalised.data<float>()[(i * 3 + c) * plane + p] = (float)((u / 255.0 - mean[c]) / stdev[c]);
      }
  CpuFeatures cpu(enc);
  std::unique_ptr<FeatureExtractor> gpu = cuda::make_gpu_features(enc, DType::F32);
  EXPECT_EQ(gpu->view_dtype(), DType::U8);
  for (FeatureLayer at : {FeatureLayer::Backbone, FeatureLayer::Head}) {
    const Tensor want = cpu.features(normalised, at);  // (N, D)
    ASSERT_EQ(want.shape(), (Shape{n, feature_width(enc.config(), at)}));
    const Tensor from_u8 = gpu->features(u8, at), from_f32 = gpu->features(normalised, at);
    ASSERT_EQ(from_u8.shape(), want.shape());
    ASSERT_EQ(from_f32.shape(), want.shape());
    EXPECT_LE(relative_max(from_u8, want), 1e-4) << "8-bit views, " << feature_layer_name(at);
    EXPECT_LE(relative_max(from_f32, want), 1e-4) << "fp32 views, " << feature_layer_name(at);
  }
  // u8 views must be (N, H, W, 3), fp32 ones (N, 3, H, W)
  EXPECT_THROW(gpu->features(Tensor::empty({n, 3, s, s}, DType::U8), FeatureLayer::Backbone), Error);
  EXPECT_THROW(gpu->features(Tensor::empty({n, s, s, 3}, DType::F32), FeatureLayer::Backbone), Error);
  // the device copy is the host encoder's, bit for bit, after use; a change to either side shows
  EXPECT_TRUE(gpu->copy_matches(enc));
  for (std::vector<float>* host : {&enc.params(), &enc.stats()}) {
    float& v = (*host)[host->size() / 2];
    const float kept = v;
    v = std::nextafter(v, INFINITY);
    EXPECT_FALSE(gpu->copy_matches(enc)) << (host == &enc.params() ? "a parameter" : "a BN statistic");
    v = kept;
  }
  ++enc.counts().back();
  EXPECT_FALSE(gpu->copy_matches(enc)) << "a BN counter";
  --enc.counts().back();
  EXPECT_TRUE(gpu->copy_matches(enc));
}
