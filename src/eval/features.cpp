#include "moco/features.h"

#include "moco/error.h"
#include "moco/knn.h"

namespace moco {

FeatureLayer parse_feature_layer(const std::string& name, const char* flag) {
  if (name == "backbone") return FeatureLayer::Backbone;
  if (name == "head") return FeatureLayer::Head;
  fail(flag, " ", name, ": expected backbone (the pooled 2048-d output for ResNet-50) or head (the projection "
       "head's output, as the authors' CIFAR-10 demo scores it)");
}

const char* feature_layer_name(FeatureLayer at) { return at == FeatureLayer::Head ? "head" : "backbone"; }

int64_t feature_width(const ResNetConfig& cfg, FeatureLayer at) {
  if (at == FeatureLayer::Backbone) return cfg.feature_dim();
  MOCO_CHECK(cfg.head != Head::None, "head features asked of ", cfg.describe(), ", which has no head");
  return cfg.out_dim;
}

Tensor CpuFeatures::features(const Tensor& x, FeatureLayer at) {
  const bool was_train = enc_.is_train();
  enc_.set_train(false);  // BN with its running statistics
  // (N, D): the head has no BN, so the whole forward without a tape is the backbone's features through it
  Tensor f = at == FeatureLayer::Head ? enc_.forward(x, nullptr) : enc_.features(x);
  enc_.set_train(was_train);
  return f;
}

// The CPU's vote unless an extractor on another device scores where its features are.
double FeatureExtractor::knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t) {
  return moco::knn_top1(bank, query, classes, k, t);
}

}  // namespace moco
