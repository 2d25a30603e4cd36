#include "moco/features.h"

#include "moco/knn.h"

namespace moco {

Tensor CpuFeatures::features(const Tensor& x) {
  const bool was_train = enc_.is_train();
  enc_.set_train(false);  // BN with its running statistics
  Tensor f = enc_.features(x);  // (N, D)
  enc_.set_train(was_train);
  return f;
}

// The CPU's vote unless an extractor on another device scores where its features are.
double FeatureExtractor::knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t) {
  return moco::knn_top1(bank, query, classes, k, t);
}

}  // namespace moco
