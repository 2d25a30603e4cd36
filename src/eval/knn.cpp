#include "moco/knn.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "moco/cpu_ops.h"
#include "moco/error.h"
#include "moco/loader.h"
#include "moco/parallel.h"
#include "moco/rng.h"

namespace moco {

std::vector<int64_t> sample_indices(int64_t size, int64_t count, uint64_t seed) {
  std::vector<int64_t> idx((size_t)size);
  std::iota(idx.begin(), idx.end(), 0);
  if (count <= 0 || count >= size) return idx;
  Rng rng(seed, mix_stream(0x5AB5E7, (uint64_t)size));
  for (int64_t i = 0; i < count; ++i) std::swap(idx[i], idx[i + rng.below((uint64_t)(size - i))]);  // partial Fisher-Yates
  idx.resize((size_t)count);
  return idx;
}

FeatureSet extract_features(FeatureExtractor& fx, FeatureLayer at, int64_t dim, const Dataset& data,
                            const AugmentRecipe& eval_recipe, const std::vector<int64_t>& indices, int64_t batch,
                            int workers) {
  LoaderConfig lc;
  lc.batch = batch;
  lc.workers = workers;
  lc.views = 1;
  lc.shuffle = false;
  lc.drop_last = false;
  lc.subset = indices;
  lc.view_dtype = fx.view_dtype();
  Loader loader(data, eval_recipe, lc);
  loader.start_epoch(0);
  FeatureSet fs;
  fs.dim = dim;
  fs.features.reserve((size_t)(loader.samples() * fs.dim));
  Batch b;
  while (loader.next(b)) {
    Tensor f = fx.features(b.views[0], at);  // (N, D)
    MOCO_CHECK(f.dim() == 2 && f.size(1) == dim, "features of shape ", shape_str(f.shape()), ", expected (N, ", dim, ")");
    const int64_t n = f.size(0);
    const size_t at = fs.features.size();
    fs.features.resize(at + (size_t)(n * fs.dim));
    std::vector<float> norms((size_t)n);  // (N)
    cpu::l2_normalize_forward<float>(n, fs.dim, f.data<float>(), fs.features.data() + at, norms.data());
    fs.labels.insert(fs.labels.end(), b.labels.begin(), b.labels.end());
    fs.n += n;
  }
  return fs;
}

void check_knn_inputs(const FeatureSet& bank, const FeatureSet& query, int classes, double t) {
  MOCO_CHECK(bank.dim == query.dim, "kNN: bank features have dim ", bank.dim, ", queries ", query.dim);
  MOCO_CHECK(bank.n >= 1 && query.n >= 1, "kNN needs a non-empty bank and query set");
  MOCO_CHECK(t > 0, "kNN temperature must be > 0, got ", t);
  MOCO_CHECK((int64_t)bank.features.size() == bank.n * bank.dim && (int64_t)bank.labels.size() == bank.n &&
                 (int64_t)query.features.size() == query.n * query.dim && (int64_t)query.labels.size() == query.n,
             "kNN: feature sets of inconsistent sizes");
  for (int y : bank.labels) MOCO_CHECK(y >= 0 && y < classes, "kNN: bank label ", y, " outside [0, ", classes, ")");
}

double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t) {
  check_knn_inputs(bank, query, classes, t);
  k = (int)std::min<int64_t>(k, bank.n);
  const int64_t chunk = 256;
  std::vector<float> sims((size_t)(chunk * bank.n));  // (chunk, bank.n) cosine similarities
  std::vector<uint8_t> hit((size_t)chunk);             // (chunk) 1 where the vote is the query's label
  int64_t correct = 0;
  for (int64_t q0 = 0; q0 < query.n; q0 += chunk) {
    const int64_t rows = std::min(chunk, query.n - q0);
    cpu::gemm<float>(false, true, rows, bank.n, bank.dim, 1.f, query.features.data() + q0 * query.dim,
                     bank.features.data(), 0.f, sims.data());
    // Rows are independent: each thread votes for its own, with its own buffers.
    parallel_range(rows, 1, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> order((size_t)bank.n);  // (bank.n) candidate neighbours of one query
      std::vector<double> votes((size_t)classes);  // (classes)
      for (int64_t r = r0; r < r1; ++r) {
        const float* s = sims.data() + r * bank.n;
        std::iota(order.begin(), order.end(), 0);
        // the k most similar; ties broken by index so the result does not depend on the sort
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
        std::fill(votes.begin(), votes.end(), 0.0);
        for (int j = 0; j < k; ++j) votes[(size_t)bank.labels[(size_t)order[j]]] += std::exp((double)s[order[j]] / t);
        const int pred = (int)(std::max_element(votes.begin(), votes.end()) - votes.begin());
        hit[(size_t)r] = pred == query.labels[(size_t)(q0 + r)];
      }
    });
    for (int64_t r = 0; r < rows; ++r) correct += hit[(size_t)r];
  }
  return 100.0 * (double)correct / (double)query.n;
}

}  // namespace moco
