// Backbone features for evaluation (the kNN monitor, `moco knn`, `moco lincls`): host images (N, 3, H, W)
// fp32 in, host features (N, D) fp32 out, BN in eval mode, no gradient. The CPU extractor runs the Encoder
// itself; the GPU one (src/cuda/gpu_features.h) runs a copy of its weights on the device.
#pragma once
#include <memory>
#include <string>

#include "moco/resnet.h"

namespace moco {

class FeatureExtractor {
 public:
  virtual ~FeatureExtractor() = default;
  virtual Tensor features(const Tensor& x) = 0;  // (N, 3, H, W) -> (N, D), both on the host
  virtual std::string describe() const = 0;      // "cpu", "cuda: NVIDIA H100 ..., bf16"
};

class CpuFeatures final : public FeatureExtractor {
 public:
  explicit CpuFeatures(Encoder& enc) : enc_(enc) {}
  Tensor features(const Tensor& x) override;
  std::string describe() const override { return "cpu"; }

 private:
  Encoder& enc_;
};

}  // namespace moco
