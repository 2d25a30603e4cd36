// kNN evaluation (the authors' monitor): features of the L2-normalised backbone output (or of the head's, as
// the authors' CIFAR-10 demo has it: FeatureLayer), cosine similarity, the k nearest training images vote for
// their class with weight exp(sim / t); top-1 on the labelled split.
#pragma once
#include <cstdint>
#include <vector>

#include "moco/augment.h"
#include "moco/data.h"
#include "moco/features.h"

namespace moco {

struct FeatureSet {
  int64_t n = 0, dim = 0;
  std::vector<float> features;  // (n, dim), rows L2-normalised
  std::vector<int> labels;      // (n)
};

// Features read at `at` (BN in eval mode), L2-normalised, of data[indices], in that order; all images when
// indices is empty. `dim`: their width, feature_width(config, at).
FeatureSet extract_features(FeatureExtractor& fx, FeatureLayer at, int64_t dim, const Dataset& data,
                            const AugmentRecipe& eval_recipe, const std::vector<int64_t>& indices, int64_t batch,
                            int workers);
// The backbone's, on the CPU, with the encoder itself.
inline FeatureSet extract_features(Encoder& enc, const Dataset& data, const AugmentRecipe& eval_recipe,
                                   const std::vector<int64_t>& indices, int64_t batch, int workers) {
  CpuFeatures fx(enc);
  return extract_features(fx, FeatureLayer::Backbone, enc.config().feature_dim(), data, eval_recipe, indices, batch,
                          workers);
}

// Top-1 accuracy in percent of the weighted kNN vote of `bank` for every row of `query`, on the CPU (the
// reference of the GPU one, FeatureExtractor::knn_top1 of the GPU extractor).
double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t);
// Its argument checks, shared with the GPU one: same dims, non-empty, consistent sizes, bank labels in
// [0, classes), t > 0.
void check_knn_inputs(const FeatureSet& bank, const FeatureSet& query, int classes, double t);

// `count` indices of a dataset of `size`, drawn without replacement from a permutation keyed by `seed`
// (all of them, in order, when count <= 0 or count >= size).
std::vector<int64_t> sample_indices(int64_t size, int64_t count, uint64_t seed);

}  // namespace moco
