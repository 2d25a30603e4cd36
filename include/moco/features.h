// Features for evaluation (the kNN monitor, `moco knn`, `moco lincls`): host views in, host features (N, D)
// fp32 out, BN in eval mode, no gradient. They are the backbone's pooled output (SPEC 5, and the linear probe's
// input), or for the kNN vote optionally the head's output: the authors' CIFAR-10 demo scores its encoder_q
// whole, fc included, so `--knn-feature head` is how its numbers are reproduced. The CPU extractor runs the Encoder itself on
// normalised fp32 (N, 3, H, W) views; the GPU one (src/cuda/gpu_features.h) runs a copy of its weights on the
// device and asks for 8-bit (N, H, W, 3) views, which it normalises there (it takes fp32 ones too). Loaders
// that feed an extractor make the views in its view_dtype(). The linear probe trains where the features are
// made: linear_probe() gives the CPU probe, or the GPU one for the GPU extractor; knn_top1() scores a kNN vote
// there too.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "moco/linear_probe.h"
#include "moco/resnet.h"

namespace moco {

struct FeatureSet;  // moco/knn.h

// Where the features are read from the encoder.
enum class FeatureLayer {
  Backbone,  // the global average pool's output: (N, ResNetConfig::feature_dim())
  Head,      // the projection head's output, before any L2 normalisation: (N, ResNetConfig::out_dim)
};
// "backbone" | "head"; anything else is refused, naming `flag` and the value.
FeatureLayer parse_feature_layer(const std::string& name, const char* flag);
const char* feature_layer_name(FeatureLayer at);
// D of the features read at `at`; Head needs an encoder that has one.
int64_t feature_width(const ResNetConfig& cfg, FeatureLayer at);

class FeatureExtractor {
 public:
  virtual ~FeatureExtractor() = default;
  // views (LoaderConfig::view_dtype) -> (N, feature_width(config, at)), both on the host
  virtual Tensor features(const Tensor& x, FeatureLayer at) = 0;
  virtual std::string describe() const = 0;      // "cpu", "cuda: NVIDIA H100 ..., bf16"
  // The form of the views features() wants: DType::F32 (normalised) or DType::U8 (8-bit).
  virtual DType view_dtype() const { return DType::F32; }
  // A linear probe on this extractor's features (make_cpu_linear_probe's arguments), on the same device.
  virtual std::unique_ptr<LinearProbe> linear_probe(int64_t dim, int64_t classes, std::vector<float> initial,
                                                    const SgdConfig& sgd) {
    return make_cpu_linear_probe(dim, classes, std::move(initial), sgd);
  }
  // moco::knn_top1 (moco/knn.h) on this extractor's device: on the CPU unless overridden.
  virtual double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t);
  // Whether the copy of the backbone this extractor computes with (parameters, BN statistics and counters)
  // is still, bit for bit, `host`'s: the linear probe's check that it left the backbone as it was. An
  // extractor that runs `host` itself keeps no copy; for it the check of `host` alone says it all.
  virtual bool copy_matches(const Encoder& /*host*/) { return true; }
};

class CpuFeatures final : public FeatureExtractor {
 public:
  explicit CpuFeatures(Encoder& enc) : enc_(enc) {}
  Tensor features(const Tensor& x, FeatureLayer at) override;
  std::string describe() const override { return "cpu"; }

 private:
  Encoder& enc_;
};

}  // namespace moco
