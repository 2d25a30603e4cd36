// The kNN vote on the GPU (kernels/knn_vote.cu, cuda::knn_top1) against the CPU's moco::knn_top1, its
// reference. The features have components in {-3, ..., 3} / 8, so every similarity is a multiple of 1/64 and
// exact in fp32 whatever order a GEMM sums it in: the GPU and the CPU see the same similarities, and with so
// few distinct values many rows tie at the k-th place, where the lower index must win. The per-row oracle is
// the CPU function itself, asked about one query at a time: the predicted class is the label that scores
// 100%. The votes themselves are summed as the CPU sums them (similarity descending, index ascending, in
// double): bit for bit on the emulator, whose exp is the host's; within 1e-14 on a device, whose exp may differ
// in the last bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "../../src/cuda/gpu_knn.h"
#include "gpu_test.h"
#include "knn_vote.cuh"
#include "moco/knn.h"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

FeatureSet discrete_features(int64_t n, int64_t dim, int classes, uint64_t stream) {
  Rng rng(41, stream);
  FeatureSet f;
  f.n = n, f.dim = dim;
  f.features.resize((size_t)(n * dim));
  for (auto& v : f.features) v = (float)((int)rng.below(7) - 3) / 8.f;
  for (int64_t i = 0; i < n; ++i) f.labels.push_back((int)rng.below((uint64_t)classes));
  return f;
}

FeatureSet row_of(const FeatureSet& f, int64_t i, int label) {
  FeatureSet one;
  one.n = 1, one.dim = f.dim;
  one.features.assign(f.features.begin() + i * f.dim, f.features.begin() + (i + 1) * f.dim);
  one.labels = {label};
  return one;
}

// The CPU's prediction for query row i: the label with which it scores 100%.
int cpu_prediction(const FeatureSet& bank, const FeatureSet& query, int64_t i, int classes, int k, double t) {
  for (int c = 0; c < classes; ++c)
    if (knn_top1(bank, row_of(query, i, c), classes, k, t) == 100.0) return c;
  return -1;
}

// sims (Q, B) on the host: exact, the features being multiples of 1/8.
std::vector<float> similarities(const FeatureSet& bank, const FeatureSet& query) {
  std::vector<float> s((size_t)(query.n * bank.n));
  for (int64_t q = 0; q < query.n; ++q)
    for (int64_t b = 0; b < bank.n; ++b) {
      float acc = 0;
      for (int64_t j = 0; j < bank.dim; ++j)
        acc += query.features[(size_t)(q * bank.dim + j)] * bank.features[(size_t)(b * bank.dim + j)];
      s[(size_t)(q * bank.n + b)] = acc;
    }
  return s;
}

// The votes (Q, classes) of the k nearest, summed in the CPU's order (moco::knn_top1's).
std::vector<double> cpu_order_votes(const std::vector<float>& sims, const std::vector<int>& labels, int64_t q,
                                    int64_t b, int classes, int k, double t) {
  std::vector<double> votes((size_t)(q * classes), 0.0);
  std::vector<int64_t> order((size_t)b);  // (B)
  for (int64_t r = 0; r < q; ++r) {
    const float* s = sims.data() + r * b;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t x, int64_t y) { return s[x] > s[y] || (s[x] == s[y] && x < y); });
    for (int j = 0; j < k; ++j)
      votes[(size_t)(r * classes + labels[(size_t)order[(size_t)j]])] += std::exp((double)s[order[(size_t)j]] / t);
  }
  return votes;
}

}  // namespace

TEST(GpuKnn, VotesOfEachQueryMatchTheCpu) {
  MOCO_REQUIRE_GPU();
  const int classes = 5;
  const double t = 0.1;
  const FeatureSet bank = discrete_features(1500, 6, classes, 1);
  FeatureSet query = discrete_features(23, 6, classes, 2);
  for (int64_t j = 0; j < query.dim; ++j) query.features[(size_t)j] = 0.f;  // row 0: every similarity ties at 0
  std::vector<float> sims = similarities(bank, query);
  // every other zero as -0: equal to +0 for the CPU's comparisons, so it must be for the radix select's too
  for (size_t i = 0; i < sims.size(); i += 2)
    if (sims[i] == 0.f) sims[i] = -0.f;
  DeviceBuffer<float> sims_dev(sims, "sims");
  DeviceBuffer<int> labels_dev(bank.labels, "bank labels");
  DeviceBuffer<double> votes((size_t)(query.n * classes), "votes");
  DeviceBuffer<int> pred((size_t)query.n, "predictions");
  for (int k : {1, 7, 200, 1024}) {
    pred.poison();
    kernels::knn_vote(query.n, bank.n, k, classes, t, sims_dev.get(), labels_dev.get(), votes.get(), pred.get(),
                      nullptr);
    const std::vector<int> got = pred.download();
    for (int64_t i = 0; i < query.n; ++i)
      EXPECT_EQ(got[(size_t)i], cpu_prediction(bank, query, i, classes, k, t)) << "query " << i << ", k " << k;
    const std::vector<double> want = cpu_order_votes(sims, bank.labels, query.n, bank.n, classes, k, t);
    const std::vector<double> have = votes.download();
    for (size_t i = 0; i < want.size(); ++i) {
      if (on_the_emulator())
        ASSERT_EQ(std::memcmp(&have[i], &want[i], sizeof(double)), 0)
            << "vote " << i << ": " << have[i] << " vs " << want[i] << " summed in the CPU's order, k " << k;
      else
        ASSERT_NEAR(have[i], want[i], 1e-14 * want[i]) << "vote " << i << ", k " << k;
    }
  }
}

// Five bank entries equally similar to the query, labelled 1, 1, 2, 2, 2: the three nearest are the first
// three by index (two votes for class 1), where the last three would elect class 2.
TEST(GpuKnn, TiesAtTheKthPlaceGoToTheLowerIndex) {
  MOCO_REQUIRE_GPU();
  const std::vector<float> sims = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};  // (1, 5)
  const std::vector<int> labels = {1, 1, 2, 2, 2};                  // (5)
  DeviceBuffer<float> sims_dev(sims, "sims");
  DeviceBuffer<int> labels_dev(labels, "bank labels");
  DeviceBuffer<double> votes(3, "votes");
  DeviceBuffer<int> pred(1, "prediction");
  kernels::knn_vote(1, 5, 3, 3, 0.1, sims_dev.get(), labels_dev.get(), votes.get(), pred.get(), nullptr);
  EXPECT_EQ(pred.download()[0], 1);
}

// The whole GPU scoring (GEMM, vote, count) against the CPU's accuracy: in one chunk, and in chunks of 16
// queries (the last one partial), with the bank in slices too; and k beyond the kernel's limit, which falls back to the CPU.
TEST(GpuKnn, TopOneMatchesTheCpu) {
  MOCO_REQUIRE_GPU();
  const int classes = 4;
  const FeatureSet bank = discrete_features(1300, 5, classes, 3), query = discrete_features(57, 5, classes, 4);
  for (int k : {1, 20, 200, 1300}) {
    const double want = knn_top1(bank, query, classes, k, 0.07);
    EXPECT_EQ(cuda::knn_top1(bank, query, classes, k, 0.07, nullptr), want) << "k " << k;
    EXPECT_EQ(cuda::knn_top1(bank, query, classes, k, 0.07, nullptr, /*max_chunk=*/16), want) << "k " << k;
    // the bank in GEMMs of 7 rows (35 values; the last slice 5 rows), as ImageNet's is in slices of 2^31 values
    EXPECT_EQ(cuda::knn_top1(bank, query, classes, k, 0.07, nullptr, 16, /*max_slice=*/37), want) << "k " << k;
  }
}

TEST(GpuKnn, RejectsBankLabelsOutsideTheClasses) {
  MOCO_REQUIRE_GPU();
  FeatureSet bank = discrete_features(10, 3, 3, 5);
  bank.labels[4] = 3;
  try {
    cuda::knn_top1(bank, discrete_features(2, 3, 3, 6), 3, 5, 0.1, nullptr);
    FAIL() << "bank label 3 of 3 classes was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("bank label 3 outside [0, 3)"), std::string::npos) << e.what();
  }
}
