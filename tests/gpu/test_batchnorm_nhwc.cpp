// Channels-last batch normalisation (kernels/batchnorm_nhwc) against the CPU reference (src/cpu/batchnorm.cpp,
// NCHW) and, for the fused tail, against the CPU composition bn -> add -> relu. Inputs are random with a
// per-channel offset and scale; layouts are converted on the host; every output is poisoned with NaN before
// the kernel runs, so an element the kernel forgot to write fails the comparison. bf16 inputs are rounded on
// the host first, so the CPU sees exactly the values the kernel reads and only arithmetic and the final
// rounding differ.
//
// Sizes: N = 6 with groups 1, 2, 3 (and 6 with HW = 1: one value per group, the unbiased-variance corner);
// C = 3, 17, 67 (scalar path), 24 and 264 (16-byte vector path, one and several channel tiles); HW = 35
// (5 x 7) and 1; N = 8 x 323 rows (several row chunks per group); N = 2 x 90000 rows (chunks longer than the
// minimum, a short last chunk).
//
// Tolerances, each relative to a scale that bounds the terms of the computation at that element:
//   fp32 1e-5: the GPU rounds a handful of fp32 operations (2^-24 each) and reduces in fp32 partials, where
//     the CPU works in double; 1e-5 is ~100x that, yet ~100x below a wrong formula (biased instead of
//     unbiased variance moves var by 1/M >= 3e-3 at M <= 323, a wrong group by O(1)).
//   bf16 2^-8: the output is rounded once to bf16 (at most 2^-9 of its magnitude), doubled to cover the fp32
//     arithmetic under it; statistics and parameter gradients stay fp32 and keep the fp32 tolerance.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "batchnorm_nhwc.cuh"
#include "gpu_test.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"
#include "nhwc_test_util.h"

using namespace moco;
using cuda::DeviceBuffer;
using nhwc_test::DevTensor;
using nhwc_test::rounded;
using nhwc_test::to_nchw;
using nhwc_test::to_nhwc;

namespace {

constexpr float kEps = 1e-5f, kMomentum = 0.1f;
constexpr double kRel32 = 1e-5;             // see the top of the file
constexpr double kRelBf16 = 1.0 / 256;      // see the top of the file
constexpr int64_t kTrackedBefore = 7;       // num_batches_tracked before the forward

template <class T>
double out_rel() {
  return nhwc_test::kIsBf16<T> ? kRelBf16 : kRel32;
}

struct Case {
  int64_t n, hw, c, groups;
};
const Case kCases[] = {{6, 35, 3, 1},  {6, 35, 17, 2}, {6, 35, 67, 3},  {6, 35, 24, 1},    {6, 35, 264, 2},
                       {6, 1, 17, 3},  {6, 1, 5, 6},   {8, 323, 67, 2}, {2, 90000, 5, 2}};

std::string describe(const Case& k) {
  return "N=" + std::to_string(k.n) + " HW=" + std::to_string(k.hw) + " C=" + std::to_string(k.c) +
         " groups=" + std::to_string(k.groups);
}

// Host inputs in NCHW; activations hold values a T can hold.
struct Inputs {
  std::vector<float> x, residual, dy;  // (N, C, HW)
  std::vector<float> gamma, beta;      // (C)
  std::vector<float> rm, rv;           // (C) running statistics before the call
  std::vector<float> dgamma0, dbeta0;  // (C) the gradient buffers before the backward (non-zero: accumulation)
};

template <class T>
Inputs make_inputs(const Case& k, uint64_t seed, double offset = 3.0, double scale_lo = 0.5, double scale_hi = 2.0) {
  Rng r(77, seed);
  Inputs in;
  const int64_t size = k.n * k.c * k.hw;
  in.x.resize(size);
  std::vector<double> mu(k.c), sd(k.c);
  for (int64_t ch = 0; ch < k.c; ++ch) {
    mu[ch] = r.uniform(-offset, offset);
    sd[ch] = r.uniform(scale_lo, scale_hi);
  }
  for (int64_t i = 0; i < k.n; ++i)
    for (int64_t ch = 0; ch < k.c; ++ch)
      for (int64_t p = 0; p < k.hw; ++p) in.x[(i * k.c + ch) * k.hw + p] = (float)(mu[ch] + sd[ch] * r.normal());
  in.x = rounded<T>(in.x);
  in.residual = rounded<T>(nhwc_test::normal_floats(size, seed * 8 + 1));
  in.dy = rounded<T>(nhwc_test::normal_floats(size, seed * 8 + 2));
  in.gamma = nhwc_test::normal_floats(k.c, seed * 8 + 3, 1.0, 0.5);
  in.beta = nhwc_test::normal_floats(k.c, seed * 8 + 4, 0.0, 0.5);
  in.rm = nhwc_test::normal_floats(k.c, seed * 8 + 5, 0.0, 1.0);
  in.rv.resize(k.c);
  for (auto& v : in.rv) v = (float)r.uniform(0.2, 3.0);
  in.dgamma0 = nhwc_test::normal_floats(k.c, seed * 8 + 6, 0.0, 0.25);
  in.dbeta0 = nhwc_test::normal_floats(k.c, seed * 8 + 7, 0.0, 0.25);
  return in;
}

// The CPU composition bn -> [add] -> [relu], with running statistics.
struct ForwardRef {
  std::vector<float> y;                      // (N, C, HW)
  std::vector<float> save_mean, save_invstd;  // (groups, C)
  std::vector<float> rm, rv;                 // (C)
  int64_t tracked = kTrackedBefore;
};
ForwardRef cpu_forward(const Case& k, const Inputs& in, bool use_res, bool relu) {
  const int64_t size = k.n * k.c * k.hw;
  ForwardRef r;
  r.y.resize(size);
  r.save_mean.resize(k.groups * k.c);
  r.save_invstd.resize(k.groups * k.c);
  r.rm = in.rm;
  r.rv = in.rv;
  cpu::batchnorm_train_forward<float>(cpu::BNShape{k.n, k.c, k.hw, k.groups}, in.x.data(), in.gamma.data(),
                                      in.beta.data(), kEps, kMomentum, r.y.data(), r.save_mean.data(),
                                      r.save_invstd.data(), r.rm.data(), r.rv.data(), &r.tracked);
  if (use_res) cpu::add_forward<float>(size, r.y.data(), in.residual.data(), r.y.data());
  if (relu) cpu::relu_forward<float>(size, r.y.data(), r.y.data());
  return r;
}

DeviceBuffer<double> workspace_for(const Case& k) {
  const size_t bytes = kernels::batchnorm_workspace_bytes(k.n, k.hw, k.c, k.groups);
  return DeviceBuffer<double>((bytes + 7) / 8, "bn workspace");  // cudaMalloc: 256-byte aligned
}

// A train forward's device buffers: the inputs uploaded channels-last (`skip` elements into their
// allocations), the outputs poisoned.
template <class T>
struct ForwardBuffers {
  ForwardBuffers(const Case& k, const Inputs& in, size_t skip)
      : x(to_nhwc(in.x, k.n, k.c, k.hw), "x", skip),
        res(to_nhwc(in.residual, k.n, k.c, k.hw), "residual", skip),
        y((size_t)(k.n * k.c * k.hw), "y", skip),
        gamma(in.gamma, "gamma"),
        beta(in.beta, "beta"),
        rm(in.rm, "running_mean"),
        rv(in.rv, "running_var"),
        smean((size_t)(k.groups * k.c), "save_mean"),
        sinv((size_t)(k.groups * k.c), "save_invstd"),
        tracked(std::vector<int64_t>{kTrackedBefore}, "num_batches_tracked"),
        ws(workspace_for(k)) {
    y.poison();
    smean.poison();
    sinv.poison();
  }
  DevTensor<T> x, res, y;                           // (N, HW, C) each
  DeviceBuffer<float> gamma, beta, rm, rv;          // (C) each
  DeviceBuffer<float> smean, sinv;                  // (groups, C) each
  DeviceBuffer<int64_t> tracked;                    // (1)
  DeviceBuffer<double> ws;                          // batchnorm_workspace_bytes
};

// Forward: y against the CPU composition, the saved statistics, the running statistics and the counter.
template <class T>
void check_train_forward(const Case& k, bool use_res, bool relu, size_t skip, uint64_t seed) {
  const Inputs in = make_inputs<T>(k, seed);
  const ForwardRef ref = cpu_forward(k, in, use_res, relu);
  const int64_t size = k.n * k.c * k.hw, per = k.n / k.groups;
  ForwardBuffers<T> b(k, in, skip);
  auto& y = b.y;
  auto &smean = b.smean, &sinv = b.sinv, &rm = b.rm, &rv = b.rv;
  kernels::batchnorm_train_forward<T>(k.n, k.hw, k.c, k.groups, b.x.get(), b.gamma.get(), b.beta.get(), kEps,
                                      kMomentum, use_res ? b.res.get() : nullptr, relu, y.get(), smean.get(),
                                      sinv.get(), rm.get(), rv.get(), b.tracked.get(), b.ws.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " " + describe(k) +
                           (use_res ? " +residual" : "") + (relu ? " +relu" : "") + (skip ? " unaligned" : "");
  const auto got_mean = smean.download(), got_inv = sinv.download();
  for (int64_t i = 0; i < k.groups * k.c; ++i) {
    const double sd = 1.0 / ref.save_invstd[i];
    ASSERT_NEAR(got_mean[i], ref.save_mean[i], kRel32 * (std::fabs(ref.save_mean[i]) + sd)) << what << " mean " << i;
    ASSERT_NEAR(got_inv[i], ref.save_invstd[i], kRel32 * ref.save_invstd[i]) << what << " invstd " << i;
  }
  const auto got_y = to_nchw(y.download(), k.n, k.c, k.hw);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t img = i / (k.c * k.hw), ch = (i / k.hw) % k.c, gc = (img / per) * k.c + ch;
    const double is = ref.save_invstd[gc], mean = ref.save_mean[gc];
    const double xhat = ((double)in.x[i] - mean) * is;
    // the terms of y, plus the statistics' own error (~ (|mean| + std) relative) carried through gamma * invstd
    const double scale = std::fabs(in.gamma[ch]) * (std::fabs(xhat) + 1.0 + std::fabs(mean) * is) +
                         std::fabs(in.beta[ch]) + (use_res ? std::fabs(in.residual[i]) : 0.0);
    ASSERT_NEAR(got_y[i], ref.y[i], out_rel<T>() * scale) << what << " y at NCHW index " << i;
  }
  const auto got_rm = rm.download(), got_rv = rv.download();
  for (int64_t ch = 0; ch < k.c; ++ch) {
    ASSERT_NEAR(got_rm[ch], ref.rm[ch], kRel32 * (std::fabs(ref.rm[ch]) + 1.0)) << what << " running_mean " << ch;
    ASSERT_NEAR(got_rv[ch], ref.rv[ch], kRel32 * ref.rv[ch]) << what << " running_var " << ch;
  }
  EXPECT_EQ(b.tracked.download()[0], ref.tracked) << what << " num_batches_tracked";
}

// Backward from the CPU forward's statistics and output y (rounded to T, as the forward stored it).
// dres_mode: 0 no residual gradient, 1 into its own buffer, 2 in place over dy.
template <class T>
void check_train_backward(const Case& k, bool relu, int dres_mode, size_t skip, uint64_t seed) {
  const Inputs in = make_inputs<T>(k, seed);
  const ForwardRef ref = cpu_forward(k, in, dres_mode != 0, relu);
  const int64_t size = k.n * k.c * k.hw, per = k.n / k.groups;
  const std::vector<float> y = rounded<T>(ref.y);
  std::vector<float> g = in.dy;  // the gradient at the pre-ReLU sum
  if (relu) cpu::relu_backward<float>(size, y.data(), in.dy.data(), g.data());
  std::vector<float> dx_ref(size), dgamma_ref = in.dgamma0, dbeta_ref = in.dbeta0;
  cpu::batchnorm_train_backward<float>(cpu::BNShape{k.n, k.c, k.hw, k.groups}, in.x.data(), in.gamma.data(),
                                       ref.save_mean.data(), ref.save_invstd.data(), g.data(), dx_ref.data(),
                                       dgamma_ref.data(), dbeta_ref.data());

  DevTensor<T> x(to_nhwc(in.x, k.n, k.c, k.hw), "x", skip), dy(to_nhwc(in.dy, k.n, k.c, k.hw), "dy", skip);
  DevTensor<T> y_dev(to_nhwc(y, k.n, k.c, k.hw), "y", skip);
  DevTensor<T> dres(size, "d_residual", skip), dx(size, "dx", skip);
  DeviceBuffer<float> gamma(in.gamma, "gamma"), smean(ref.save_mean, "save_mean"), sinv(ref.save_invstd, "save_invstd");
  DeviceBuffer<float> dgamma(in.dgamma0, "dgamma"), dbeta(in.dbeta0, "dbeta");
  DeviceBuffer<double> ws = workspace_for(k);
  dres.poison();
  dx.poison();
  T* d_residual = dres_mode == 0 ? nullptr : dres_mode == 1 ? dres.get() : dy.get();
  // with y: the mask as the CPU forward stored it (the mask rebuilt from x has its own test below)
  kernels::batchnorm_train_backward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), nullptr, smean.get(),
                                       sinv.get(), relu ? y_dev.get() : nullptr, relu, dy.get(), d_residual, dx.get(),
                                       dgamma.get(), dbeta.get(), ws.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " " + describe(k) + (relu ? " relu" : "") +
                           (dres_mode == 1 ? " d_residual" : dres_mode == 2 ? " d_residual over dy" : "") +
                           (skip ? " unaligned" : "");

  // per (group, channel): mean |g| and mean |g * xhat|, the sizes of the two reduced terms of dx
  std::vector<double> mg(k.groups * k.c, 0.0), mgx(k.groups * k.c, 0.0), sg(k.c, 0.0), sgx(k.c, 0.0);
  const double count = (double)(per * k.hw);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t img = i / (k.c * k.hw), ch = (i / k.hw) % k.c, gc = (img / per) * k.c + ch;
    const double xhat = ((double)in.x[i] - ref.save_mean[gc]) * ref.save_invstd[gc];
    mg[gc] += std::fabs(g[i]) / count;
    mgx[gc] += std::fabs(g[i] * xhat) / count;
    sg[ch] += std::fabs(g[i]);
    sgx[ch] += std::fabs(g[i] * xhat);
  }
  const auto got_dx = to_nchw(dx.download(), k.n, k.c, k.hw);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t img = i / (k.c * k.hw), ch = (i / k.hw) % k.c, gc = (img / per) * k.c + ch;
    const double xhat = ((double)in.x[i] - ref.save_mean[gc]) * ref.save_invstd[gc];
    const double scale = std::fabs(in.gamma[ch] * ref.save_invstd[gc]) *
                         (std::fabs(g[i]) + mg[gc] + std::fabs(xhat) * mgx[gc]);
    ASSERT_NEAR(got_dx[i], dx_ref[i], out_rel<T>() * scale + 1e-30) << what << " dx at NCHW index " << i;
  }
  if (dres_mode != 0) {
    // g is dy or 0, exactly representable: d_residual must equal it bit for bit (in value)
    const auto got = to_nchw(dres_mode == 1 ? dres.download() : dy.download(), k.n, k.c, k.hw);
    for (int64_t i = 0; i < size; ++i) ASSERT_EQ(got[i], g[i]) << what << " d_residual at NCHW index " << i;
  }
  const auto got_dg = dgamma.download(), got_db = dbeta.download();
  for (int64_t ch = 0; ch < k.c; ++ch) {
    ASSERT_NEAR(got_dg[ch], dgamma_ref[ch], kRel32 * (std::fabs(in.dgamma0[ch]) + sgx[ch]) + 1e-30)
        << what << " dgamma " << ch;
    ASSERT_NEAR(got_db[ch], dbeta_ref[ch], kRel32 * (std::fabs(in.dbeta0[ch]) + sg[ch]) + 1e-30)
        << what << " dbeta " << ch;
  }
}

template <class T>
void check_all_forward() {
  uint64_t seed = 1;
  for (const Case& k : kCases)
    for (int fusion = 0; fusion < 4; ++fusion) check_train_forward<T>(k, fusion & 1, fusion & 2, 0, seed++);
  check_train_forward<T>(Case{6, 35, 24, 2}, true, true, 1, seed++);  // vector-width C, unaligned pointers
}

template <class T>
void check_all_backward() {
  uint64_t seed = 100;
  for (const Case& k : kCases)
    for (bool relu : {false, true})
      for (int dres_mode : {0, 1, 2}) check_train_backward<T>(k, relu, dres_mode, 0, seed++);
  check_train_backward<T>(Case{6, 35, 24, 2}, true, 1, 1, seed++);
}

}  // namespace

TEST(GpuBatchnormNhwc, TrainForwardFp32MatchesCpuComposition) {
  MOCO_REQUIRE_GPU();
  check_all_forward<float>();
}

TEST(GpuBatchnormNhwc, TrainForwardBf16MatchesCpuCompositionOnTheRoundedInputs) {
  MOCO_REQUIRE_GPU();
  check_all_forward<__nv_bfloat16>();
}

TEST(GpuBatchnormNhwc, TrainBackwardFp32MatchesCpu) {
  MOCO_REQUIRE_GPU();
  check_all_backward<float>();
}

TEST(GpuBatchnormNhwc, TrainBackwardBf16MatchesCpuOnTheRoundedInputs) {
  MOCO_REQUIRE_GPU();
  check_all_backward<__nv_bfloat16>();
}

// The ReLU's mask as bits (bf16, C a multiple of 8), for a forward with a residual: the forward's bits are
// y > 0 of the y it wrote (checked on the host from that y), and the backward from the bits gives, bit for
// bit, what the backward from y gives (held against the CPU above), with the residual gradient in its own
// buffer. Several chunks per group (8 x 323 rows) and two channel tiles (C 264) included.
TEST(GpuBatchnormNhwc, ReluMaskBitsAreYAboveZeroAndStandInForY) {
  MOCO_REQUIRE_GPU();
  using T = __nv_bfloat16;
  EXPECT_FALSE(kernels::batchnorm_relu_mask_fits<float>(24));  // fp32 vectors hold 4 channels, not 8
  EXPECT_FALSE(kernels::batchnorm_relu_mask_fits<T>(20));
  for (const Case& k : {Case{6, 35, 24, 1}, Case{6, 35, 264, 2}, Case{8, 323, 64, 2}}) {
    ASSERT_TRUE(kernels::batchnorm_relu_mask_fits<T>(k.c)) << describe(k);
    const Inputs in = make_inputs<T>(k, 900 + k.c);
    const int64_t size = k.n * k.c * k.hw;
    ForwardBuffers<T> b(k, in, 0);
    auto &x = b.x, &y = b.y;
    auto &gamma = b.gamma, &beta = b.beta, &smean = b.smean, &sinv = b.sinv;
    auto& ws = b.ws;
    DevTensor<T> dy(to_nhwc(in.dy, k.n, k.c, k.hw), "dy");      // (N, HW, C)
    DeviceBuffer<uint8_t> bits((size_t)size / 8, "relu mask");  // (N * HW * C / 8)
    bits.poison();
    kernels::batchnorm_train_forward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), kEps, kMomentum,
                                        b.res.get(), true, y.get(), smean.get(), sinv.get(), b.rm.get(), b.rv.get(),
                                        b.tracked.get(), ws.get(), nullptr, bits.get());
    const std::vector<float> got_y = y.download();  // (N, HW, C)
    const std::vector<uint8_t> got_bits = bits.download();
    for (int64_t i = 0; i < size; ++i)
      ASSERT_EQ((got_bits[(size_t)i / 8] >> (i % 8)) & 1, got_y[(size_t)i] > 0.f ? 1 : 0)
          << describe(k) << " element " << i << " of y = " << got_y[(size_t)i];

    // backward twice from the same inputs: the mask from y, then from the bits
    std::vector<float> dx_of[2], dres_of[2], dgamma_of[2], dbeta_of[2];
    for (int from_bits = 0; from_bits < 2; ++from_bits) {
      DevTensor<T> dres(size, "d_residual"), dx(size, "dx");
      DeviceBuffer<float> dgamma(in.dgamma0, "dgamma"), dbeta(in.dbeta0, "dbeta");
      dres.poison();
      dx.poison();
      kernels::batchnorm_train_backward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), smean.get(),
                                           sinv.get(), from_bits ? nullptr : y.get(), true, dy.get(), dres.get(),
                                           dx.get(), dgamma.get(), dbeta.get(), ws.get(), nullptr,
                                           from_bits ? bits.get() : nullptr);
      dx_of[from_bits] = dx.download();
      dres_of[from_bits] = dres.download();
      dgamma_of[from_bits] = dgamma.download();
      dbeta_of[from_bits] = dbeta.download();
    }
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    EXPECT_TRUE(same(dx_of[0], dx_of[1])) << describe(k) << " dx";
    EXPECT_TRUE(same(dres_of[0], dres_of[1])) << describe(k) << " d_residual";
    EXPECT_TRUE(same(dgamma_of[0], dgamma_of[1])) << describe(k) << " dgamma";
    EXPECT_TRUE(same(dbeta_of[0], dbeta_of[1])) << describe(k) << " dbeta";
    // and the mask mattered: some elements of y are zero (ReLU'd), some are not
    EXPECT_GT(std::count(got_y.begin(), got_y.end(), 0.f), size / 10) << describe(k);
    EXPECT_GT(std::count_if(got_y.begin(), got_y.end(), [](float v) { return v > 0.f; }), size / 10) << describe(k);
  }
}

// Mean 100, std 0.05: E[x^2] - E[x]^2 in fp32 loses the variance entirely here (x^2 ~ 1e4 carries an fp32
// rounding of ~1e-3 per value against a variance of 2.5e-3), a Welford / shifted reduction keeps it. The
// data themselves are quantised at ulp(100) = 7.6e-6 = 1.5e-4 std, and the running mean inside each thread
// rounds at that grain, so the statistics are checked to 1e-3 relative and y (~ N(0, gamma)) to 1e-2.
TEST(GpuBatchnormNhwc, TrainForwardFp32VarianceSurvivesALargeMean) {
  MOCO_REQUIRE_GPU();
  uint64_t seed = 300;
  for (const Case& k : {Case{6, 35, 17, 1}, Case{6, 35, 17, 3}, Case{8, 323, 24, 2}}) {
    Inputs in = make_inputs<float>(k, seed++, 0.0, 0.05, 0.05);
    for (auto& v : in.x) v += 100.f;
    const ForwardRef ref = cpu_forward(k, in, false, false);
    const int64_t size = k.n * k.c * k.hw;
    DevTensor<float> x(to_nhwc(in.x, k.n, k.c, k.hw), "x"), y(size, "y");
    DeviceBuffer<float> gamma(in.gamma, "gamma"), beta(in.beta, "beta");
    DeviceBuffer<float> smean((size_t)(k.groups * k.c), "save_mean"), sinv((size_t)(k.groups * k.c), "save_invstd");
    DeviceBuffer<double> ws = workspace_for(k);
    y.poison();
    kernels::batchnorm_train_forward<float>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), kEps,
                                            kMomentum, nullptr, false, y.get(), smean.get(), sinv.get(), nullptr,
                                            nullptr, nullptr, ws.get(), nullptr);
    const auto got_inv = sinv.download();
    for (int64_t i = 0; i < k.groups * k.c; ++i)
      ASSERT_NEAR(got_inv[i], ref.save_invstd[i], 1e-3 * ref.save_invstd[i]) << describe(k) << " invstd " << i;
    const auto got_y = to_nchw(y.download(), k.n, k.c, k.hw);
    for (int64_t i = 0; i < size; ++i) {
      const int64_t ch = (i / k.hw) % k.c;
      ASSERT_NEAR(got_y[i], ref.y[i], 1e-2 * std::fabs(in.gamma[ch]) + 1e-6) << describe(k) << " y " << i;
    }
  }
}

// Eval mode: the running statistics normalise (no groups), dx = gamma * invstd * dy, parameter gradients
// accumulate. fp32 dx is three roundings of a product (1e-6 relative covers it).
template <class T>
void check_eval(const Case& k, uint64_t seed) {
  const Inputs in = make_inputs<T>(k, seed);
  const int64_t size = k.n * k.c * k.hw;
  const cpu::BNShape s{k.n, k.c, k.hw, 1};
  std::vector<float> y_ref(size), dx_ref(size), dg_ref = in.dgamma0, db_ref = in.dbeta0;
  cpu::batchnorm_eval_forward<float>(s, in.x.data(), in.gamma.data(), in.beta.data(), in.rm.data(), in.rv.data(), kEps,
                                     y_ref.data());
  cpu::batchnorm_eval_backward<float>(s, in.x.data(), in.gamma.data(), in.rm.data(), in.rv.data(), kEps, in.dy.data(),
                                      dx_ref.data(), dg_ref.data(), db_ref.data());
  DevTensor<T> x(to_nhwc(in.x, k.n, k.c, k.hw), "x"), dy(to_nhwc(in.dy, k.n, k.c, k.hw), "dy");
  DevTensor<T> y(size, "y"), dx(size, "dx");
  DeviceBuffer<float> gamma(in.gamma, "gamma"), beta(in.beta, "beta"), rm(in.rm, "running_mean"),
      rv(in.rv, "running_var"), dg(in.dgamma0, "dgamma"), db(in.dbeta0, "dbeta");
  DeviceBuffer<double> ws = workspace_for(k);
  y.poison();
  dx.poison();
  kernels::batchnorm_eval_forward<T>(k.n, k.hw, k.c, x.get(), gamma.get(), beta.get(), rm.get(), rv.get(), kEps,
                                     y.get(), nullptr);
  kernels::batchnorm_eval_backward<T>(k.n, k.hw, k.c, x.get(), gamma.get(), rm.get(), rv.get(), kEps, dy.get(),
                                      dx.get(), dg.get(), db.get(), ws.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " eval " + describe(k);
  const auto got_y = to_nchw(y.download(), k.n, k.c, k.hw), got_dx = to_nchw(dx.download(), k.n, k.c, k.hw);
  const double dx_rel = nhwc_test::kIsBf16<T> ? kRelBf16 : 1e-6;
  std::vector<double> sg(k.c, 0.0), sgx(k.c, 0.0);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t ch = (i / k.hw) % k.c;
    const double is = 1.0 / std::sqrt((double)in.rv[ch] + kEps), xhat = ((double)in.x[i] - in.rm[ch]) * is;
    const double scale =
        std::fabs(in.gamma[ch]) * (std::fabs(xhat) + 1.0 + std::fabs(in.rm[ch]) * is) + std::fabs(in.beta[ch]);
    ASSERT_NEAR(got_y[i], y_ref[i], out_rel<T>() * scale) << what << " y " << i;
    ASSERT_NEAR(got_dx[i], dx_ref[i], dx_rel * std::fabs(dx_ref[i]) + 1e-30) << what << " dx " << i;
    sg[ch] += std::fabs(in.dy[i]);
    sgx[ch] += std::fabs(in.dy[i] * xhat);
  }
  const auto got_dg = dg.download(), got_db = db.download();
  for (int64_t ch = 0; ch < k.c; ++ch) {
    ASSERT_NEAR(got_dg[ch], dg_ref[ch], kRel32 * (std::fabs(in.dgamma0[ch]) + sgx[ch])) << what << " dgamma " << ch;
    ASSERT_NEAR(got_db[ch], db_ref[ch], kRel32 * (std::fabs(in.dbeta0[ch]) + sg[ch])) << what << " dbeta " << ch;
  }
}

TEST(GpuBatchnormNhwc, EvalForwardBackwardMatchCpu) {
  MOCO_REQUIRE_GPU();
  uint64_t seed = 400;
  for (const Case& k : kCases) {
    const Case one{k.n, k.hw, k.c, 1};
    check_eval<float>(one, seed++);
    check_eval<__nv_bfloat16>(one, seed++);
  }
}

// No atomics: the same inputs give bit-identical outputs and gradients.
template <class T>
void check_deterministic() {
  const Case k{8, 323, 264, 2};
  const Inputs in = make_inputs<T>(k, 500);
  const int64_t size = k.n * k.c * k.hw;
  DevTensor<T> x(to_nhwc(in.x, k.n, k.c, k.hw), "x"), res(to_nhwc(in.residual, k.n, k.c, k.hw), "residual");
  DevTensor<T> dy(to_nhwc(in.dy, k.n, k.c, k.hw), "dy"), y(size, "y"), dx(size, "dx");
  DeviceBuffer<float> gamma(in.gamma, "gamma"), beta(in.beta, "beta");
  DeviceBuffer<float> smean((size_t)(k.groups * k.c), "save_mean"), sinv((size_t)(k.groups * k.c), "save_invstd");
  DeviceBuffer<double> ws = workspace_for(k);
  std::vector<float> first[5];
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> dg(in.dgamma0, "dgamma"), db(in.dbeta0, "dbeta");
    kernels::batchnorm_train_forward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), kEps, kMomentum,
                                        res.get(), true, y.get(), smean.get(), sinv.get(), nullptr, nullptr, nullptr,
                                        ws.get(), nullptr);
    kernels::batchnorm_train_backward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), nullptr, smean.get(),
                                         sinv.get(), y.get(), true, dy.get(), nullptr, dx.get(), dg.get(), db.get(),
                                         ws.get(), nullptr);
    const std::vector<float> out[5] = {y.download(), sinv.download(), dx.download(), dg.download(), db.download()};
    if (run == 0) {
      for (int j = 0; j < 5; ++j) first[j] = out[j];
      continue;
    }
    for (int j = 0; j < 5; ++j)
      ASSERT_EQ(0, std::memcmp(first[j].data(), out[j].data(), out[j].size() * sizeof(float)))
          << nhwc_test::type_name<T>() << " output " << j << " (y, invstd, dx, dgamma, dbeta) differs between runs";
  }
}

// Without a residual the backward may rebuild the ReLU's mask from x instead of reading y: it must be the mask
// y > 0 of this very forward, bit for bit, so dx, dgamma and dbeta equal those of the backward that reads y.
// Every case, vector width and scalar, and C = 1 rows full of zeros (gamma 0: every output is beta's sign).
template <class T>
void check_mask_from_x(const Case& k, uint64_t seed, bool zero_gamma) {
  Inputs in = make_inputs<T>(k, seed);
  if (zero_gamma) std::fill(in.gamma.begin(), in.gamma.end(), 0.f);
  const int64_t size = k.n * k.c * k.hw;
  DevTensor<T> x(to_nhwc(in.x, k.n, k.c, k.hw), "x"), dy(to_nhwc(in.dy, k.n, k.c, k.hw), "dy"), y(size, "y");
  DeviceBuffer<float> gamma(in.gamma, "gamma"), beta(in.beta, "beta");
  DeviceBuffer<float> smean((size_t)(k.groups * k.c), "save_mean"), sinv((size_t)(k.groups * k.c), "save_invstd");
  DeviceBuffer<double> ws = workspace_for(k);
  kernels::batchnorm_train_forward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), kEps, kMomentum,
                                      nullptr, true, y.get(), smean.get(), sinv.get(), nullptr, nullptr, nullptr,
                                      ws.get(), nullptr);
  std::vector<float> out[2][3];  // (with y, from x) x (dx, dgamma, dbeta)
  for (int from_x = 0; from_x < 2; ++from_x) {
    DevTensor<T> dx(size, "dx");
    dx.poison();
    DeviceBuffer<float> dg(in.dgamma0, "dgamma"), db(in.dbeta0, "dbeta");
    kernels::batchnorm_train_backward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), from_x ? beta.get() : nullptr,
                                         smean.get(), sinv.get(), from_x ? nullptr : y.get(), true, dy.get(), nullptr,
                                         dx.get(), dg.get(), db.get(), ws.get(), nullptr);
    out[from_x][0] = dx.download();
    out[from_x][1] = dg.download();
    out[from_x][2] = db.download();
  }
  const char* names[3] = {"dx", "dgamma", "dbeta"};
  for (int j = 0; j < 3; ++j)
    ASSERT_EQ(0, std::memcmp(out[0][j].data(), out[1][j].data(), out[0][j].size() * sizeof(float)))
        << nhwc_test::type_name<T>() << " " << describe(k) << (zero_gamma ? " gamma 0" : "") << ": " << names[j]
        << " with the mask rebuilt from x differs from the one that read y";
}

TEST(GpuBatchnormNhwc, ReluMaskRebuiltFromXIsTheForwardsBitForBit) {
  MOCO_REQUIRE_GPU();
  uint64_t seed = 700;
  for (const Case& k : kCases) {
    check_mask_from_x<float>(k, seed, false);
    check_mask_from_x<__nv_bfloat16>(k, seed++, false);
  }
  check_mask_from_x<__nv_bfloat16>(Case{6, 35, 24, 2}, seed, true);
}

// batchnorm_train_apply (the output rebuilt for --recompute-bn-relu) writes what the train forward wrote, bit
// for bit, from the statistics that forward saved: with and without the ReLU, every case's channel count (the
// vector and the scalar paths), split groups, and an output buffer one element off the forward's alignment.
// The oracle is the forward's own output; the forward itself is held against the CPU above.
template <class T>
void check_apply_rebuilds_the_forward(const Case& k, uint64_t seed, bool relu) {
  Inputs in = make_inputs<T>(k, seed);
  const int64_t size = k.n * k.c * k.hw;
  DevTensor<T> x(to_nhwc(in.x, k.n, k.c, k.hw), "x"), y(size, "y"), again(size + 1, "y rebuilt");
  DeviceBuffer<float> gamma(in.gamma, "gamma"), beta(in.beta, "beta");
  DeviceBuffer<float> smean((size_t)(k.groups * k.c), "save_mean"), sinv((size_t)(k.groups * k.c), "save_invstd");
  DeviceBuffer<double> ws = workspace_for(k);
  kernels::batchnorm_train_forward<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), kEps, kMomentum,
                                      nullptr, relu, y.get(), smean.get(), sinv.get(), nullptr, nullptr, nullptr,
                                      ws.get(), nullptr);
  const std::vector<float> want = y.download();
  for (int offset = 0; offset < 2; ++offset) {
    again.poison();
    kernels::batchnorm_train_apply<T>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), beta.get(), smean.get(),
                                      sinv.get(), relu, again.get() + offset, nullptr);
    const std::vector<float> all = again.download();
    ASSERT_EQ(0, std::memcmp(all.data() + offset, want.data(), want.size() * sizeof(float)))
        << nhwc_test::type_name<T>() << " " << describe(k) << (relu ? " relu" : "") << " offset " << offset
        << ": the rebuilt output differs from the forward's";
  }
}

TEST(GpuBatchnormNhwc, TrainApplyRebuildsTheForwardsOutputBitForBit) {
  MOCO_REQUIRE_GPU();
  uint64_t seed = 800;
  for (const Case& k : kCases)
    for (bool relu : {true, false}) {
      check_apply_rebuilds_the_forward<float>(k, seed, relu);
      check_apply_rebuilds_the_forward<__nv_bfloat16>(k, seed++, relu);
    }
}

TEST(GpuBatchnormNhwc, AMaskWithoutYNeedsBetaAndNoResidual) {
  MOCO_REQUIRE_GPU();
  const Case k{6, 35, 8, 1};
  const int64_t size = k.n * k.c * k.hw;
  DevTensor<float> x(size, "x"), dy(size, "dy"), dres(size, "d_residual"), dx(size, "dx");
  DeviceBuffer<float> gamma(std::vector<float>(k.c, 1.f), "gamma"), beta(std::vector<float>(k.c, 0.f), "beta");
  DeviceBuffer<float> smean(std::vector<float>(k.c, 0.f), "save_mean");
  DeviceBuffer<float> sinv(std::vector<float>(k.c, 1.f), "save_invstd");
  DeviceBuffer<float> dg(std::vector<float>(k.c, 0.f), "dgamma"), db(std::vector<float>(k.c, 0.f), "dbeta");
  DeviceBuffer<double> ws = workspace_for(k);
  auto run = [&](const float* b, float* d_residual) {
    kernels::batchnorm_train_backward<float>(k.n, k.hw, k.c, k.groups, x.get(), gamma.get(), b, smean.get(),
                                             sinv.get(), nullptr, true, dy.get(), d_residual, dx.get(), dg.get(),
                                             db.get(), ws.get(), nullptr);
  };
  try {
    run(nullptr, nullptr);
    ADD_FAILURE() << "relu with neither y nor beta was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("both are null"), std::string::npos) << e.what();
  }
  try {
    run(beta.get(), dres.get());
    ADD_FAILURE() << "a mask from x with a residual was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("with a residual"), std::string::npos) << e.what();
  }
}

TEST(GpuBatchnormNhwc, RunsAreBitIdentical) {
  MOCO_REQUIRE_GPU();
  check_deterministic<float>();
  check_deterministic<__nv_bfloat16>();
}

TEST(GpuBatchnormNhwc, RefusesABatchThatDoesNotSplitIntoTheGroups) {
  MOCO_REQUIRE_GPU();
  EXPECT_THROW(kernels::batchnorm_workspace_bytes(6, 35, 17, 4), Error);
  EXPECT_THROW(kernels::batchnorm_workspace_bytes(6, 35, 0, 1), Error);
}
