// The kNN monitor's scoring at ImageNet scale: a bank of 1,281,167 features (the train split) and chunks of
// 128 test queries, D = 2048 (the ResNet-50 backbone). Two parts per chunk: the similarity GEMM (cuBLAS fp32,
// reported in TFLOP/s) and the vote (kernels/knn_vote.cu: 5 reads of the chunk's similarities; reported as
// GB/s of those reads and the fraction of the device's copy bandwidth), then the whole 50,000-query
// validation split extrapolated. The similarities the vote reads are drawn like a trained encoder's
// (mostly 0..0.5, a tail to 0.9) so that its histogram passes see a realistic spread. Checks the GPU scoring
// against the CPU's moco::knn_top1 first (exact similarities, many ties) and refuses to time a wrong one.
//   build/bench_knn_vote
#include <cstdio>
#include <vector>

#include "../src/cuda/blas_handle.h"
#include "../src/cuda/gpu_knn.h"
#include "gpu_bench.h"
#include "knn_vote.cuh"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

// Components in {-3..3} / 8: every similarity is exact in fp32, so the GPU and the CPU rank the same values.
static FeatureSet discrete_set(int64_t n, int64_t dim, int classes, uint64_t stream) {
  Rng r(61, stream);
  FeatureSet f;
  f.n = n, f.dim = dim;
  for (int64_t i = 0; i < n * dim; ++i) f.features.push_back((float)((int)r.below(7) - 3) / 8.f);
  for (int64_t i = 0; i < n; ++i) f.labels.push_back((int)r.below((uint64_t)classes));
  return f;
}

static bool correct() {
  const FeatureSet bank = discrete_set(2000, 6, 10, 1), query = discrete_set(300, 6, 10, 2);
  for (int k : {1, 20, 200}) {
    const double want = knn_top1(bank, query, 10, k, 0.1), got = cuda::knn_top1(bank, query, 10, k, 0.1, nullptr);
    if (got != want) {
      std::printf("knn_top1 k=%d: GPU %.4f%%, CPU %.4f%%; refusing to time it\n", k, got, want);
      return false;
    }
  }
  return true;
}

int main() {
  return bench::run(correct, [&](bench::Timer& timer, double copy_gbs) {
    const int64_t bank = 1281167, d = 2048, rows = 128, queries = 50000;
    const int k = 200, classes = 1000;
    DeviceBuffer<float> bank_f((size_t)(bank * d), "bank features");  // (B, D)
    DeviceBuffer<float> q((size_t)(rows * d), "queries");              // (rows, D)
    bank_f.fill_bytes(0x3c), q.fill_bytes(0x3c);  // the GEMM's speed does not depend on the values
    std::vector<float> host_sims((size_t)(rows * bank));  // (rows, B)
    Rng r(62, 0);
    for (auto& s : host_sims) s = (float)std::min(0.95, std::max(-0.3, 0.15 + 0.12 * r.normal()));
    DeviceBuffer<float> sims(host_sims, "similarities");  // (rows, B)
    std::vector<int> host_labels((size_t)bank);
    for (auto& y : host_labels) y = (int)r.below(classes);
    DeviceBuffer<int> labels(host_labels, "bank labels");              // (B)
    DeviceBuffer<double> votes((size_t)(rows * classes), "votes");     // (rows, classes)
    DeviceBuffer<int> pred((size_t)rows, "predictions");               // (rows)
    cuda::BlasHandle blas;
    DeviceBuffer<float> gemm_out((size_t)(rows * bank), "GEMM output");  // (rows, B)
    const double gemm_ms = timer.median_ms([&] {
      cuda::bank_similarities(blas.get(), bank_f.get(), bank, d, q.get(), rows, gemm_out.get());
    }, 5);
    const double vote_ms = timer.median_ms([&] {
      kernels::knn_vote(rows, bank, k, classes, 0.1, sims.get(), labels.get(), votes.get(), pred.get(), nullptr);
    }, 5);
    const double tflops = 2.0 * rows * bank * d / (gemm_ms * 1e-3) / 1e12;
    const double gbs = 5.0 * rows * bank * 4 / (vote_ms * 1e-3) / 1e9;
    std::printf("knn similarities (cuBLAS fp32 GEMMs, bank in 2^31-value slices) bank=%lld D=%lld rows=%lld: %9.3f ms  %6.1f TFLOP/s\n",
                (long long)bank, (long long)d, (long long)rows, gemm_ms, tflops);
    std::printf("knn_vote k=%d classes=%d bank=%lld rows=%lld: %9.3f ms  %6.0f GB/s (5 reads)  %.2f of copy\n", k,
                classes, (long long)bank, (long long)rows, vote_ms, gbs, gbs / copy_gbs);
    std::printf("knn top-1 of %lld queries against the whole bank, extrapolated: %.1f s (GEMM %.1f s, vote %.1f s)\n",
                (long long)queries, (gemm_ms + vote_ms) * queries / rows / 1e3, gemm_ms * queries / rows / 1e3,
                vote_ms * queries / rows / 1e3);
  });
}
