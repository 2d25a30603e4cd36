// The MoCo kernels (kernels/moco_logits, softmax_xent, l2_normalize, enqueue, image_normalize) against their
// CPU twins on random inputs, odd sizes included. Every output buffer is filled with NaN (all bits set)
// before the kernel runs, so an element the kernel forgot to write fails the comparison.
//
// Tolerances (fp32): a GPU sum of n products differs from the CPU's double sum by rounding only, at most
// about n * 2^-24 of the sum of |terms| and in practice far less (errors of random sign); the tests allow
// 1e-5 of the sum of |terms| (computed by running the CPU reference on |inputs|), which is above the
// worst case for the GEMM lengths here (C <= 128) and above the observed error for K = 4099 by orders of
// magnitude, yet catches any wrong term (a term is ~1/C or ~1/K of the sum, far above 1e-5 of it).
#include "moco/host_layout.h"
#include "moco/bf16_host.h"
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../../src/cuda/blas_handle.h"
#include "../../src/cuda/device_buffer.h"
#include "enqueue.cuh"
#include "gpu_test.h"
#include "image_normalize.cuh"
#include "l2_normalize.cuh"
#include "moco/augment.h"
#include "moco/cpu_ops.h"
#include "moco/moco.h"
#include "moco/rng.h"
#include "moco_logits.cuh"
#include "softmax_xent.cuh"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

constexpr float kInvT = 1.f / 0.07f;  // MoCo v2's temperature: logits up to ~14.3 in magnitude

std::vector<float> normal_floats(size_t n, uint64_t stream) { return moco::normal_floats(n, 1234, stream); }

// Rows of v (rows, c) L2-normalised in place, by the CPU op the kernels are checked against anyway.
void normalize_rows(std::vector<float>& v, int64_t rows, int64_t c) {
  std::vector<float> norms((size_t)rows);  // (rows)
  cpu::l2_normalize_forward<float>(rows, c, v.data(), v.data(), norms.data());
}

// (rows, c) standard normal rows, each L2-normalised like MoCo's features.
std::vector<float> unit_rows(int64_t rows, int64_t c, uint64_t stream) {
  std::vector<float> v = normal_floats((size_t)(rows * c), stream);
  normalize_rows(v, rows, c);
  return v;
}

// Positive keys near their queries (so some rows rank the positive first and the hit counts mean something).
std::vector<float> keys_near(const std::vector<float>& q, int64_t n, int64_t c, uint64_t stream) {
  std::vector<float> k = normal_floats(q.size(), stream);
  for (size_t i = 0; i < k.size(); ++i) k[i] = q[i] + 0.5f * k[i] / std::sqrt((float)c);
  normalize_rows(k, n, c);
  return k;
}

std::vector<float> abs_of(std::vector<float> v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}

__nv_bfloat16* bf16_ptr(DeviceBuffer<uint16_t>& b) { return reinterpret_cast<__nv_bfloat16*>(b.get()); }

const int64_t kNs[] = {1, 3, 37};
const int64_t kCs[] = {1, 7, 128};
const int64_t kKs[] = {1, 5, 4099};

// The forms softmax_xent takes for rows of m columns: one row per block always, one per cluster where it fits.
std::vector<kernels::SoftmaxXentForm> xent_forms(int64_t m) {
  std::vector<kernels::SoftmaxXentForm> forms{kernels::SoftmaxXentForm::RowPerBlock};
  if (kernels::softmax_xent_cluster_form_fits(m)) forms.push_back(kernels::SoftmaxXentForm::RowPerCluster);
  return forms;
}

// Forward logits against the CPU on the given (possibly bf16-rounded) inputs, within rel * |terms|.
void check_logits(const std::vector<float>& got, int64_t n, int64_t c, int64_t k, const std::vector<float>& q,
                  const std::vector<float>& key, const std::vector<float>& queue, double rel, const char* what) {
  const int64_t m = 1 + k;
  std::vector<float> ref((size_t)(n * m)), mag((size_t)(n * m));  // (N, 1+K) each
  cpu::moco_logits_forward<float>(n, c, k, q.data(), key.data(), queue.data(), kInvT, ref.data());
  cpu::moco_logits_forward<float>(n, c, k, abs_of(q).data(), abs_of(key).data(), abs_of(queue).data(), kInvT,
                                  mag.data());
  for (int64_t i = 0; i < n * m; ++i)
    ASSERT_NEAR(got[i], ref[i], rel * mag[i] + 1e-30)
        << what << " N=" << n << " C=" << c << " K=" << k << " row " << i / m << " col " << i % m;
}

}  // namespace

TEST(GpuMocoKernels, LogitsFp32MatchCpu) {
  MOCO_REQUIRE_GPU();
  cuda::BlasHandle blas;
  for (int64_t n : kNs)
    for (int64_t c : kCs)
      for (int64_t k : kKs) {
        const auto q = unit_rows(n, c, 1), key = keys_near(q, n, c, 2), queue = unit_rows(k, c, 3);
        DeviceBuffer<float> dq(q, "q"), dkey(key, "key"), dqueue(queue, "queue");
        DeviceBuffer<float> logits((size_t)(n * (1 + k)), "logits");  // (N, 1+K)
        logits.poison();
        kernels::moco_logits_forward(blas.get(), n, c, k, dq.get(), dkey.get(), dqueue.get(), kInvT, logits.get(),
                                     nullptr);
        check_logits(logits.download(), n, c, k, q, key, queue, 1e-5, "fp32");
      }
}

// bf16 inputs: the CPU reference gets the same bf16 values widened to float, so only the accumulation
// differs. 1e-4 of the sum of |terms| (ten times the fp32 tolerance) because tensor cores may align and
// truncate partial products inside an MMA step instead of rounding each addition, which is documented for
// earlier generations and not ruled out for Hopper.
TEST(GpuMocoKernels, LogitsBf16MatchCpuOnTheRoundedInputs) {
  MOCO_REQUIRE_GPU();
  cuda::BlasHandle blas;
  for (int64_t n : kNs)
    for (int64_t c : kCs)
      for (int64_t k : kKs) {
        const auto qb = bf16_bits(unit_rows(n, c, 4)), queueb = bf16_bits(unit_rows(k, c, 6));
        const auto keyb = bf16_bits(keys_near(bf16_values(qb), n, c, 5));
        DeviceBuffer<uint16_t> dq(qb, "q bf16"), dkey(keyb, "key bf16"), dqueue(queueb, "queue bf16");
        DeviceBuffer<float> logits((size_t)(n * (1 + k)), "logits");  // (N, 1+K)
        logits.poison();
        kernels::moco_logits_forward_bf16(blas.get(), n, c, k, bf16_ptr(dq), bf16_ptr(dkey), bf16_ptr(dqueue), kInvT,
                                          logits.get(), nullptr);
        check_logits(logits.download(), n, c, k, bf16_values(qb), bf16_values(keyb), bf16_values(queueb), 1e-4, "bf16");
      }
}

TEST(GpuMocoKernels, LogitsBackwardMatchesCpu) {
  MOCO_REQUIRE_GPU();
  cuda::BlasHandle blas;
  for (int64_t n : kNs)
    for (int64_t c : kCs)
      for (int64_t k : kKs) {
        const int64_t m = 1 + k;
        const auto key = unit_rows(n, c, 7), queue = unit_rows(k, c, 8);
        auto dlogits = normal_floats((size_t)(n * m), 9);  // (N, 1+K), any values
        for (auto& d : dlogits) d /= (float)(n * m);
        DeviceBuffer<float> dd(dlogits, "dlogits"), dkey(key, "key"), dqueue(queue, "queue");
        DeviceBuffer<float> dq((size_t)(n * c), "dq");  // (N, C)
        dq.poison();
        kernels::moco_logits_backward(blas.get(), n, c, k, dd.get(), dkey.get(), dqueue.get(), kInvT, dq.get(),
                                      nullptr);
        const auto got = dq.download();
        std::vector<float> ref((size_t)(n * c)), mag((size_t)(n * c));  // (N, C) each
        cpu::moco_logits_backward<float>(n, c, k, dlogits.data(), key.data(), queue.data(), kInvT, ref.data());
        cpu::moco_logits_backward<float>(n, c, k, abs_of(dlogits).data(), abs_of(key).data(), abs_of(queue).data(),
                                         kInvT, mag.data());
        for (int64_t i = 0; i < n * c; ++i)
          ASSERT_NEAR(got[i], ref[i], 1e-5 * mag[i] + 1e-30) << "N=" << n << " C=" << c << " K=" << k << " i=" << i;
      }
}

// Loss: the GPU sums exp() in fp32 (at most ~M/512 + 9 additions deep), so log(s) may be off by about
// 1.5e-6 at worst for these row lengths; 1e-5 * (1 + |loss|) allows that. dlogits: each p_j carries the
// rounding of z_j - max (|z| <= 1/T), of its product with log2(e), of s and of exp2f, a few 1e-6 relative;
// 1e-5 relative to p_j / N (for j = 0, to 1 / N, because p_0 - 1 cancels). The hit counts compare the same floats: exact.
// K 4098 puts each row's start at a different distance from a 16-byte boundary (M = 4099), so the float4
// body meets every head and tail length; a dlogits buffer one float off the logits' alignment takes the
// scalar path. Both forms: K 20010 spreads a row over a cluster of 3 blocks, unevenly; the cluster form's
// full width (K 65536, 8 blocks) has a test of its own.
TEST(GpuMocoKernels, SoftmaxXentLabel0MatchesCpu) {
  MOCO_REQUIRE_GPU();
  for (int64_t n : kNs)
    for (int64_t k : {int64_t{1}, int64_t{5}, int64_t{4098}, int64_t{4099}, int64_t{20010}})
      for (const kernels::SoftmaxXentForm form : xent_forms(1 + k)) {
        SCOPED_TRACE(kernels::softmax_xent_form_name(form));
        const int64_t c = 16, m = 1 + k;
        const auto q = unit_rows(n, c, 10), key = keys_near(q, n, c, 11), queue = unit_rows(k, c, 12);
        std::vector<float> logits((size_t)(n * m));  // (N, 1+K)
        cpu::moco_logits_forward<float>(n, c, k, q.data(), key.data(), queue.data(), kInvT, logits.data());
        for (int64_t i = 0; i < n; i += 3)  // ties with the positive in every third row: they must not beat it
          for (int64_t r = 1; r <= std::min<int64_t>(k, 3); ++r) logits[i * m + r] = logits[i * m];
        std::vector<float> ref_d((size_t)(n * m));
        const float ref_loss = cpu::softmax_xent_label0<float>(n, m, logits.data(), ref_d.data());
        const int64_t ref_h1 = cpu::count_label0_in_topk<float>(n, m, logits.data(), 1);
        const int64_t ref_h5 = cpu::count_label0_in_topk<float>(n, m, logits.data(), 5);

        DeviceBuffer<float> dz(logits, "logits"), dd((size_t)(n * m), "dlogits"), loss(1, "loss");
        DeviceBuffer<int64_t> hits(2, "hits");
        DeviceBuffer<double> ws((kernels::softmax_xent_workspace_bytes(n) + 7) / 8, "workspace");
        auto check = [&](const std::vector<float>& d, float l, const std::vector<int64_t>& h, const char* what) {
          ASSERT_NEAR(l, ref_loss, 1e-5 * (1 + std::fabs(ref_loss))) << what << " N=" << n << " K=" << k;
          EXPECT_EQ(h[0], ref_h1) << what << " top-1 hits, N=" << n << " K=" << k;
          EXPECT_EQ(h[1], ref_h5) << what << " top-5 hits, N=" << n << " K=" << k;
          for (int64_t i = 0; i < n * m; ++i) {
            const double scale = std::fabs(ref_d[i]) + (i % m == 0 ? 1.0 / n : 0.0);
            ASSERT_NEAR(d[i], ref_d[i], 1e-5 * scale + 1e-30)
                << what << " N=" << n << " K=" << k << " row " << i / m << " col " << i % m;
          }
        };

        // separate output buffer
        dd.poison();
        loss.poison();
        hits.poison();
        kernels::softmax_xent_label0(n, m, dz.get(), dd.get(), loss.get(), hits.get(), ws.get(), nullptr, form);
        const auto d1 = dd.download();
        const float l1 = loss.download()[0];
        check(d1, l1, hits.download(), "separate");

        // again: bit-identical (no float atomics)
        dd.poison();
        loss.poison();
        kernels::softmax_xent_label0(n, m, dz.get(), dd.get(), loss.get(), hits.get(), ws.get(), nullptr, form);
        const auto d2 = dd.download();
        const float l2 = loss.download()[0];
        EXPECT_EQ(std::memcmp(&l1, &l2, 4), 0) << "loss not reproducible, N=" << n << " K=" << k;
        EXPECT_EQ(std::memcmp(d1.data(), d2.data(), d1.size() * 4), 0) << "dlogits not reproducible";

        // loss only (no dlogits), hits not wanted
        loss.poison();
        kernels::softmax_xent_label0(n, m, dz.get(), nullptr, loss.get(), nullptr, ws.get(), nullptr, form);
        const float l3 = loss.download()[0];
        EXPECT_EQ(std::memcmp(&l1, &l3, 4), 0) << "loss-only differs, N=" << n << " K=" << k;

        // dlogits one float past a 16-byte boundary: not aligned as the logits are
        DeviceBuffer<float> offset((size_t)(n * m + 1), "dlogits + 1");
        offset.poison();
        loss.poison();
        hits.poison();
        if (form == kernels::SoftmaxXentForm::RowPerCluster) {  // refused: it holds only aligned rows
          EXPECT_THROW(kernels::softmax_xent_label0(n, m, dz.get(), offset.get() + 1, loss.get(), hits.get(),
                                                    ws.get(), nullptr, form),
                       std::exception);
        } else {
          kernels::softmax_xent_label0(n, m, dz.get(), offset.get() + 1, loss.get(), hits.get(), ws.get(), nullptr,
                                       form);
          const auto d4 = offset.download();
          check(std::vector<float>(d4.begin() + 1, d4.end()), loss.download()[0], hits.download(), "misaligned");
        }

        // in place: dlogits overwrite the logits
        loss.poison();
        hits.poison();
        kernels::softmax_xent_label0(n, m, dz.get(), dz.get(), loss.get(), hits.get(), ws.get(), nullptr, form);
        check(dz.download(), loss.download()[0], hits.download(), "in place");
      }
}

// Each way of launching the loss's reduce after the rows kernel (an ordinary launch, a programmatic dependent)
// gives the CPU's loss and hits, and the same bits. The workspace is poisoned before each call, so a reduce
// that summed it unwritten would give NaN. What this does not show is the reduce's wait itself: the rows kernel
// lets no dependent start early, so the reduce starts only as its blocks end, and a missing wait would leave
// only the visibility of their last writes to chance. The dependent launch must run wherever the cluster form
// does (both need the sm_90 image); where it cannot, forcing it throws (a build without sm_90 reaches that).
TEST(GpuMocoKernels, SoftmaxXentReduceLaunchesAllGiveTheCpusLoss) {
  MOCO_REQUIRE_GPU();
  using kernels::SoftmaxXentReduce;
  const bool dependent = kernels::softmax_xent_dependent_reduce_runs();
  if (kernels::softmax_xent_cluster_form_fits(1 + 65536)) {
    EXPECT_TRUE(dependent) << "the sm_90 image that runs the cluster form also runs the dependent reduce";
  }
  std::vector<SoftmaxXentReduce> launches{SoftmaxXentReduce::Auto, SoftmaxXentReduce::AfterRows};
  if (dependent) launches.push_back(SoftmaxXentReduce::Dependent);
  const int64_t n = 137, c = 16, k = 2051, m = 1 + k;
  const auto q = unit_rows(n, c, 50), key = keys_near(q, n, c, 51), queue = unit_rows(k, c, 52);
  std::vector<float> logits((size_t)(n * m));  // (N, 1+K)
  cpu::moco_logits_forward<float>(n, c, k, q.data(), key.data(), queue.data(), kInvT, logits.data());
  for (int64_t i = 0; i < n; i += 4) logits[(size_t)(i * m + 7)] = logits[(size_t)(i * m)] + 0.5f;  // misses
  std::vector<float> ref_d((size_t)(n * m));  // (N, 1+K)
  const float ref_loss = cpu::softmax_xent_label0<float>(n, m, logits.data(), ref_d.data());
  const int64_t ref_h1 = cpu::count_label0_in_topk<float>(n, m, logits.data(), 1);
  const int64_t ref_h5 = cpu::count_label0_in_topk<float>(n, m, logits.data(), 5);
  ASSERT_LT(ref_h1, n) << "some rows miss, so a hit count of n proves nothing";
  DeviceBuffer<float> dz(logits, "logits"), dd((size_t)(n * m), "dlogits"), loss(1, "loss");  // (N, 1+K), (1)
  DeviceBuffer<int64_t> hits(2, "hits");                                                       // (2)
  DeviceBuffer<double> ws((kernels::softmax_xent_workspace_bytes(n) + 7) / 8, "workspace");
  for (const kernels::SoftmaxXentForm form : xent_forms(m)) {
    std::vector<float> first_d;
    float first_loss = 0;
    for (const SoftmaxXentReduce launch : launches) {
      SCOPED_TRACE(std::string(kernels::softmax_xent_form_name(form)) + ", reduce " +
                   kernels::softmax_xent_reduce_name(launch));
      ws.poison();
      dd.poison();
      loss.poison();
      hits.poison();
      kernels::softmax_xent_label0(n, m, dz.get(), dd.get(), loss.get(), hits.get(), ws.get(), nullptr, form,
                                   launch);
      const auto d = dd.download();
      const float l = loss.download()[0];
      const auto h = hits.download();
      ASSERT_NEAR(l, ref_loss, 1e-5 * (1 + std::fabs(ref_loss)));
      EXPECT_EQ(h[0], ref_h1);
      EXPECT_EQ(h[1], ref_h5);
      for (int64_t i = 0; i < n * m; ++i) {
        const double scale = std::fabs(ref_d[i]) + (i % m == 0 ? 1.0 / n : 0.0);
        ASSERT_NEAR(d[i], ref_d[i], 1e-5 * scale + 1e-30) << "row " << i / m << " col " << i % m;
      }
      if (first_d.empty()) {
        first_d = d, first_loss = l;
      } else {
        EXPECT_EQ(std::memcmp(&l, &first_loss, 4), 0) << "the loss depends on how the reduce was launched";
        EXPECT_EQ(std::memcmp(d.data(), first_d.data(), d.size() * 4), 0) << "so do the dlogits";
      }
    }
    if (!dependent) {
      EXPECT_THROW(kernels::softmax_xent_label0(n, m, dz.get(), dd.get(), loss.get(), hits.get(), ws.get(), nullptr,
                                                form, SoftmaxXentReduce::Dependent),
                   std::exception);
    }
  }
}

// The step's width and the widest row the cluster form holds: 1+65536 and 1+65538 columns, a cluster of 8
// blocks with every thread's registers full, in place as the step runs it, against the CPU. Two columns more
// do not fit: forcing the cluster form throws there. Auto takes the row-per-block form at every width (the
// faster one measured on an H100).
TEST(GpuMocoKernels, SoftmaxXentClusterFormHoldsTheStepsWholeRow) {
  MOCO_REQUIRE_GPU();
  int device = 0;
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaGetDeviceProperties(&prop, device), cudaSuccess);
  if (prop.major >= 9) {
    EXPECT_TRUE(kernels::softmax_xent_cluster_form_fits(1 + 65536));
  }
  EXPECT_FALSE(kernels::softmax_xent_cluster_form_fits(65540)) << "16385 float4s need a 9th block";
  const int64_t n = 3, c = 16;
  const auto forms_at = [](int64_t m) {  // past the cluster form's width: Auto, which must fall back
    return m <= 65539 ? xent_forms(m) : std::vector<kernels::SoftmaxXentForm>{kernels::SoftmaxXentForm::Auto};
  };
  for (int64_t k : {int64_t{65536}, int64_t{65538}, int64_t{65540}})
    for (const kernels::SoftmaxXentForm form : forms_at(1 + k)) {
      SCOPED_TRACE(kernels::softmax_xent_form_name(form));
      const int64_t m = 1 + k;
      const auto q = unit_rows(n, c, 40), key = keys_near(q, n, c, 41), queue = unit_rows(k, c, 42);
      std::vector<float> logits((size_t)(n * m));  // (N, 1+K)
      cpu::moco_logits_forward<float>(n, c, k, q.data(), key.data(), queue.data(), kInvT, logits.data());
      logits[(size_t)(2 * m + m - 1)] = logits[(size_t)(2 * m)] + 1.f;  // row 2: its last column beats the positive
      std::vector<float> ref_d((size_t)(n * m));
      const float ref_loss = cpu::softmax_xent_label0<float>(n, m, logits.data(), ref_d.data());
      const int64_t ref_h1 = cpu::count_label0_in_topk<float>(n, m, logits.data(), 1);
      const int64_t ref_h5 = cpu::count_label0_in_topk<float>(n, m, logits.data(), 5);
      DeviceBuffer<float> dz(logits, "logits"), loss(1, "loss");
      DeviceBuffer<int64_t> hits(2, "hits");
      DeviceBuffer<char> ws(kernels::softmax_xent_workspace_bytes(n), "workspace");
      if (m > 65539) {
        EXPECT_THROW(kernels::softmax_xent_label0(n, m, dz.get(), dz.get(), loss.get(), hits.get(), ws.get(),
                                                  nullptr, kernels::SoftmaxXentForm::RowPerCluster),
                     std::exception);
      }
      loss.poison();
      hits.poison();
      kernels::softmax_xent_label0(n, m, dz.get(), dz.get(), loss.get(), hits.get(), ws.get(), nullptr, form);
      const auto d = dz.download();
      const auto h = hits.download();
      ASSERT_NEAR(loss.download()[0], ref_loss, 1e-5 * (1 + std::fabs(ref_loss))) << "K=" << k;
      EXPECT_EQ(h[0], ref_h1) << "top-1 hits, K=" << k;
      EXPECT_EQ(h[1], ref_h5) << "top-5 hits, K=" << k;
      EXPECT_LT(ref_h1, n) << "row 2 is a miss, so the hit counts are not all n";
      for (int64_t i = 0; i < n * m; ++i) {
        const double scale = std::fabs(ref_d[i]) + (i % m == 0 ? 1.0 / n : 0.0);
        ASSERT_NEAR(d[i], ref_d[i], 1e-5 * scale + 1e-30) << "K=" << k << " row " << i / m << " col " << i % m;
      }
    }
}

// The linear probe's form: a label per row. Loss and dlogits against cpu::softmax_xent; the hits against
// counts written here: top-1 is "std::max_element is the label" (the CPU probe's rule), top-5 is "fewer than
// 5 columns beat the label", a column beating it when greater, or equal at a lower index. Rows with ties
// around their label make the two tie rules matter.
TEST(GpuMocoKernels, SoftmaxXentWithLabelsMatchesCpu) {
  MOCO_REQUIRE_GPU();
  for (int64_t n : kNs)
    // 20011: more columns than one pass of a row's block covers (8192), ending part-way through the next; a
    // cluster of 3 blocks in the cluster form
    for (int64_t m : {int64_t(1), int64_t(10), int64_t(1000), int64_t(1013), int64_t(20011)}) {
      auto logits = normal_floats((size_t)(n * m), 31);  // (N, M)
      std::vector<int64_t> labels((size_t)n);           // (N)
      Rng rng(31, 0);
      for (auto& y : labels) y = (int64_t)rng.below((uint64_t)m);
      for (int64_t i = 0; i < n; i += 2) {  // ties: the label's score also at a column before and after it
        const int64_t y = labels[(size_t)i];
        if (y > 0) logits[i * m + y - 1] = logits[i * m + y];
        if (y + 1 < m) logits[i * m + y + 1] = logits[i * m + y];
        if (i % 4 == 0)  // and in some rows the tie is the row's maximum
          logits[i * m + y] = logits[i * m + std::max<int64_t>(y - 1, 0)] =
              logits[i * m + std::min<int64_t>(y + 1, m - 1)] = 9.f;
      }
      // the probe's scores are not scaled to a small range: rows near +1000 and -1000, where an exp whose
      // rounding follows the scores' size and not their gaps would be off by 6e-5
      for (int64_t i = 1; i < n; i += 3)
        for (int64_t j = 0; j < m; ++j) logits[i * m + j] += i % 2 ? 1000.f : -1000.f;
      std::vector<float> ref_d((size_t)(n * m));
      const float ref_loss = cpu::softmax_xent<float>(n, m, logits.data(), labels.data(), ref_d.data());
      int64_t ref_h1 = 0, ref_h5 = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float* z = logits.data() + i * m;
        const int64_t y = labels[(size_t)i];
        ref_h1 += std::max_element(z, z + m) - z == y;
        int64_t beat = 0;
        for (int64_t j = 0; j < m; ++j) beat += z[j] > z[y] || (z[j] == z[y] && j < y);
        ref_h5 += beat < 5;
      }

      for (const kernels::SoftmaxXentForm form : xent_forms(m)) {  // each form from the original logits
        SCOPED_TRACE(kernels::softmax_xent_form_name(form));
        DeviceBuffer<float> dz(logits, "logits"), dd((size_t)(n * m), "dlogits"), loss(1, "loss");
        DeviceBuffer<int64_t> dlabels(labels, "labels"), hits(2, "hits");
        DeviceBuffer<double> ws((kernels::softmax_xent_workspace_bytes(n) + 7) / 8, "workspace");
        dd.poison();
        loss.poison();
        hits.poison();
        kernels::softmax_xent(n, m, dz.get(), dlabels.get(), dd.get(), loss.get(), hits.get(), ws.get(), nullptr, form);
        const auto d = dd.download();
        const auto h = hits.download();
        ASSERT_NEAR(loss.download()[0], ref_loss, 1e-5 * (1 + std::fabs(ref_loss))) << "N=" << n << " M=" << m;
        EXPECT_EQ(h[0], ref_h1) << "top-1 hits, N=" << n << " M=" << m;
        EXPECT_EQ(h[1], ref_h5) << "top-5 hits, N=" << n << " M=" << m;
        auto check_d = [&](const std::vector<float>& got, const char* what) {
          for (int64_t i = 0; i < n * m; ++i) {
            const double scale = std::fabs(ref_d[i]) + (i % m == labels[(size_t)(i / m)] ? 1.0 / n : 0.0);
            ASSERT_NEAR(got[i], ref_d[i], 1e-5 * scale + 1e-30)
                << what << " N=" << n << " M=" << m << " row " << i / m << " col " << i % m;
          }
        };
        check_d(d, "separate");
        // in place, as the linear probe runs it: each row's label score is read before the row is overwritten
        loss.poison();
        kernels::softmax_xent(n, m, dz.get(), dlabels.get(), dz.get(), loss.get(), nullptr, ws.get(), nullptr, form);
        ASSERT_NEAR(loss.download()[0], ref_loss, 1e-5 * (1 + std::fabs(ref_loss))) << "in place, N=" << n;
        check_d(dz.download(), "in place");
      }
    }
}

// Forward: y within 1e-6 (|y| <= 1; the norm is an fp32 sum of C squares), norms within 1e-6 relative.
// Backward: 1e-5 of (|dy_j| + |y_j| sum|dy y|) / max(norm, eps), the sum of |terms| of dx_j.
TEST(GpuMocoKernels, L2NormalizeForwardBackwardMatchCpu) {
  MOCO_REQUIRE_GPU();
  for (int64_t n : kNs)
    for (int64_t c : {int64_t(1), int64_t(7), int64_t(128), int64_t(2048)}) {
      auto x = normal_floats((size_t)(n * c), 13);  // (N, C)
      for (int64_t j = 0; j < c; ++j) x[j] = 0.f;   // row 0: zero, the eps branch
      if (n > 2)
        for (int64_t j = 0; j < c; ++j) x[2 * c + j] *= 1e-15f;  // row 2: tiny norm, also below eps
      const auto dy = normal_floats((size_t)(n * c), 14);
      std::vector<float> ry((size_t)(n * c)), rnorm((size_t)n), rdx((size_t)(n * c));
      cpu::l2_normalize_forward<float>(n, c, x.data(), ry.data(), rnorm.data());
      cpu::l2_normalize_backward<float>(n, c, ry.data(), rnorm.data(), dy.data(), rdx.data());

      DeviceBuffer<float> dx_in(x, "x"), y((size_t)(n * c), "y"), norms((size_t)n, "norms");
      y.poison();
      norms.poison();
      kernels::l2_normalize_forward(n, c, dx_in.get(), y.get(), norms.get(), nullptr);
      const auto gy = y.download(), gn = norms.download();
      for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(gn[i], rnorm[i], 1e-6 * rnorm[i] + 1e-30) << "N=" << n << " C=" << c;
      for (int64_t i = 0; i < n * c; ++i)
        ASSERT_NEAR(gy[i], ry[i], 1e-6 * std::max(1.f, std::fabs(ry[i]))) << "N=" << n << " C=" << c << " i=" << i;

      // backward from the CPU's y and norms, so only the backward is under test; once separate, once in place
      DeviceBuffer<float> cy(ry, "y"), cn(rnorm, "norms"), ddy(dy, "dy"), ddx((size_t)(n * c), "dx");
      for (bool in_place : {false, true}) {
        if (in_place) ddy.upload(dy); else ddx.poison();
        float* out = in_place ? ddy.get() : ddx.get();
        kernels::l2_normalize_backward(n, c, cy.get(), cn.get(), ddy.get(), out, nullptr);
        const auto got = in_place ? ddy.download() : ddx.download();
        for (int64_t i = 0; i < n; ++i) {
          double dot_abs = 0;
          for (int64_t j = 0; j < c; ++j) dot_abs += std::fabs((double)dy[i * c + j] * ry[i * c + j]);
          const double denom = std::max((double)rnorm[i], 1e-12);
          for (int64_t j = 0; j < c; ++j) {
            const int64_t e = i * c + j;
            const double scale = (std::fabs(dy[e]) + std::fabs(ry[e]) * dot_abs) / denom;
            ASSERT_NEAR(got[e], rdx[e], 1e-5 * scale + 1e-30)
                << (in_place ? "in place" : "separate") << " N=" << n << " C=" << c << " row " << i << " col " << j;
          }
        }
      }
    }
}

// Pure copies: exact.
TEST(GpuMocoKernels, EnqueueWrapsLikeKeyQueue) {
  MOCO_REQUIRE_GPU();
  struct Case { int64_t k, c; std::vector<int64_t> batches; };
  for (const Case& cs : {Case{5, 7, {3, 4, 5, 0, 1, 5}}, Case{1, 3, {1, 1, 0}}, Case{4099, 128, {256, 256, 4099, 37}}}) {
    KeyQueue cpu_q(cs.k, cs.c);
    cpu_q.init_random(3);
    DeviceBuffer<float> gq(cpu_q.keys(), "queue");  // (K, C)
    DeviceBuffer<uint16_t> gq16(bf16_bits(cpu_q.keys()), "queue bf16");
    std::vector<float> q16_ref = bf16_values(bf16_bits(cpu_q.keys()));
    int64_t ptr = 0, ptr16 = 0, step = 0;
    for (int64_t n : cs.batches) {
      auto keys = normal_floats((size_t)(n * cs.c), 100 + step++);  // (n, C)
      keys = bf16_values(bf16_bits(keys));  // bf16-exact, so the bf16 queue has a float twin too
      DeviceBuffer<float> gk(keys, "keys");
      DeviceBuffer<uint16_t> gk16(bf16_bits(keys), "keys bf16");
      // the bf16 reference: the same wrap on the widened copy
      for (int64_t r = 0; r < n; ++r)
        std::memcpy(&q16_ref[(size_t)(((ptr16 + r) % cs.k) * cs.c)], &keys[(size_t)(r * cs.c)], cs.c * 4);
      cpu_q.enqueue(keys.data(), n);
      ptr = kernels::enqueue(cs.k, cs.c, ptr, n, gk.get(), gq.get(), nullptr);
      ptr16 = kernels::enqueue(cs.k, cs.c, ptr16, n, bf16_ptr(gk16), bf16_ptr(gq16), nullptr);
      ASSERT_EQ(ptr, cpu_q.ptr()) << "K=" << cs.k << " after n=" << n;
      ASSERT_EQ(ptr16, cpu_q.ptr());
      ASSERT_EQ(gq.download(), cpu_q.keys()) << "K=" << cs.k << " C=" << cs.c << " after n=" << n;
      ASSERT_EQ(bf16_values(gq16.download()), q16_ref) << "bf16 queue, K=" << cs.k << " after n=" << n;
    }
  }
  DeviceBuffer<float> q(10, "queue"), keys(10, "keys");
  EXPECT_THROW(kernels::enqueue(5, 2, 0, 6, keys.get(), q.get(), nullptr), Error);  // more keys than rows
  EXPECT_THROW(kernels::enqueue(5, 2, 5, 1, keys.get(), q.get(), nullptr), Error);  // pointer out of range
}

// Two references: the CPU twin, normalize_to_chw (ToTensor + Normalize in float32 divisions, itself equal to
// torchvision's values bit for bit in AugmentView.MatchesTorchvisionBitForBit): fp32 equal to it, bf16 equal to
// it rounded to nearest even; and the plain formula in double with torchvision's constants written out: fp32
// within 2e-6 of it, bf16 within half a bf16 ulp (2^-9 relative) plus that slack.
TEST(GpuMocoKernels, ImageNormalizeMatchesTorchvisionFormula) {
  MOCO_REQUIRE_GPU();
  // torchvision's ImageNet statistics (the authors' transforms.Normalize), written out here rather than read
  // from the kernel's header, so that a wrong constant there fails
  const double kTorchvisionMean[3] = {0.485, 0.456, 0.406}, kTorchvisionStd[3] = {0.229, 0.224, 0.225};
  struct Shape { int64_t n, h, w; };
  for (const Shape& s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{2, 31, 17}}) {
    const int64_t hw = s.h * s.w, total = s.n * hw * 3;
    std::vector<uint8_t> img((size_t)total);  // (N, H, W, 3)
    Rng r(5, 6);
    for (auto& b : img) b = (uint8_t)r.below(256);
    img[0] = 0;
    img[total - 1] = 255;
    std::vector<float> cpu((size_t)total);  // (N, 3, H, W): the CPU twin, channel-major
    for (int64_t i = 0; i < s.n; ++i)
      normalize_to_chw(img.data() + i * hw * 3, (int)s.h, (int)s.w, cpu.data() + i * hw * 3);
    DeviceBuffer<uint8_t> gimg(img, "images");
    DeviceBuffer<float> f32((size_t)total, "nhwc fp32");     // (N, H, W, 3)
    DeviceBuffer<uint16_t> b16((size_t)total, "nhwc bf16");  // (N, H, W, 3)
    f32.poison();
    b16.poison();
    kernels::image_to_nhwc(s.n, s.h, s.w, gimg.get(), f32.get(), nullptr);
    kernels::image_to_nhwc(s.n, s.h, s.w, gimg.get(), bf16_ptr(b16), nullptr);
    const auto gf = f32.download();
    const auto gb = b16.download();
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t p = 0; p < hw; ++p)
        for (int ch = 0; ch < 3; ++ch) {
          const uint8_t u = img[(size_t)((i * hw + p) * 3 + ch)];
          const double plain = ((double)u / 255.0 - kTorchvisionMean[ch]) / kTorchvisionStd[ch];
          const float same = cpu[(size_t)((i * 3 + ch) * hw + p)];
          const float got = gf[(size_t)((i * hw + p) * 3 + ch)];
          ASSERT_NEAR(got, plain, 2e-6) << "fp32 NHWC image " << i << " pixel " << p << " ch " << ch;
          ASSERT_EQ(got, same) << "fp32 NHWC image " << i << " pixel " << p << " ch " << ch;
          const uint16_t gotb = gb[(size_t)((i * hw + p) * 3 + ch)];
          ASSERT_EQ(gotb, bf16_bits(same)) << "bf16 NHWC image " << i << " pixel " << p << " ch " << ch;
          // bf16 keeps 8 significant bits: rounding to nearest moves a value by at most 2^-8 of itself
          ASSERT_NEAR(bf16_value(gotb), plain, std::fabs(plain) / 256 + 2e-6) << "bf16 NHWC pixel " << p;
        }
  }
}
