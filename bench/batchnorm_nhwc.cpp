// Batch normalisation (train mode) over bf16 channels-last activations at ResNet-50's shapes, N = 256: the
// forward with the fused ReLU (bn -> relu) and with the residual tail (bn -> add -> relu), and their
// backwards. Memory-bound, so the measure is the fraction of the device's copy bandwidth. Checks the
// kernels against the CPU reference first (N=6, 7x7, C=64, 2 groups, residual + ReLU) and refuses to time
// wrong ones.
//
// Bytes counted (gpu_bench.h convention: each input read once, each output written once, 2 B per element,
// a mask bit 1/8 B), as the step runs each:
//   forward  bn+relu:        x, y                                 (4 B/elem)
//   forward  bn+add+relu:    x, residual, y, mask bits            (6.125 B/elem)
//   backward relu:           x, dy, dx (the mask rebuilt from x)  (6 B/elem)
//   backward relu+residual:  x, mask bits, dy, dx, d_residual     (8.125 B/elem)
//   and, for comparison, the residual backward reading y instead of the bits (10 B/elem).
// The kernels read the inputs twice (once for the statistics, once to apply them), so "moved" counts those
// passes too (6, 8.125, 10, 12.25 and 16 B/elem); both numbers print.
//   build/bench_batchnorm_nhwc
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "batchnorm_nhwc.cuh"
#include "gpu_bench.h"
#include "moco/host_layout.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

__nv_bfloat16* bf(DeviceBuffer<uint16_t>& b) { return reinterpret_cast<__nv_bfloat16*>(b.get()); }

std::vector<float> normals(size_t n, uint64_t stream, double mean, double sd) {
  return normal_floats(n, 31, stream, mean, sd);
}

DeviceBuffer<double> workspace(int64_t n, int64_t hw, int64_t c, int64_t groups) {
  return DeviceBuffer<double>((kernels::batchnorm_workspace_bytes(n, hw, c, groups) + 7) / 8, "bn workspace");
}

// Within `tol` of the reference relative to (1 + |ref|): loose next to tests/gpu/test_batchnorm_nhwc.cpp
// (bf16 outputs carry 2^-9 relative rounding), but any wrong statistic or term is far outside it.
bool close(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::fabs(got[i] - ref[i]) <= tol * (1.0 + std::fabs(ref[i])))) {
      std::printf("batchnorm_nhwc: %s[%zu] = %g, CPU %g; refusing to time it\n", what, i, got[i], ref[i]);
      return false;
    }
  return true;
}

bool correct() {
  const int64_t n = 6, hw = 49, c = 64, groups = 2, size = n * hw * c;
  const float eps = 1e-5f, momentum = 0.1f;
  const auto x = bf16_values(bf16_bits(normals(size, 1, 0.5, 2.0)));  // (N, C, HW), bf16 values
  const auto res = bf16_values(bf16_bits(normals(size, 2, 0.0, 1.0)));
  const auto dy = bf16_values(bf16_bits(normals(size, 3, 0.0, 1.0)));
  const auto gamma = normals(c, 4, 1.0, 0.3), beta = normals(c, 5, 0.0, 0.3);
  // CPU: bn -> add -> relu, then relu backward and bn backward
  std::vector<float> y(size), smean(groups * c), sinv(groups * c), dx(size), dg(c, 0.f), db(c, 0.f), g(size);
  cpu::batchnorm_train_forward<float>(cpu::BNShape{n, c, hw, groups}, x.data(), gamma.data(), beta.data(), eps,
                                      momentum, y.data(), smean.data(), sinv.data(), nullptr, nullptr, nullptr);
  cpu::add_forward<float>(size, y.data(), res.data(), y.data());
  cpu::relu_forward<float>(size, y.data(), y.data());
  const auto y_bf = bf16_values(bf16_bits(y));  // the mask comes from the stored bf16 output
  cpu::relu_backward<float>(size, y_bf.data(), dy.data(), g.data());
  cpu::batchnorm_train_backward<float>(cpu::BNShape{n, c, hw, groups}, x.data(), gamma.data(), smean.data(),
                                       sinv.data(), g.data(), dx.data(), dg.data(), db.data());

  DeviceBuffer<uint16_t> xd(bf16_bits(to_nhwc(x, n, c, hw)), "x"), dres(bf16_bits(to_nhwc(res, n, c, hw)), "res");
  DeviceBuffer<uint16_t> ddy(bf16_bits(to_nhwc(dy, n, c, hw)), "dy"), yd((size_t)size, "y"),
      ddx((size_t)size, "dx"), ddres((size_t)size, "d_residual");
  DeviceBuffer<float> dgamma(gamma, "gamma"), dbeta(beta, "beta"), dsm((size_t)(groups * c), "save_mean"),
      dsi((size_t)(groups * c), "save_invstd"), ddg(std::vector<float>(c, 0.f), "dgamma"),
      ddb(std::vector<float>(c, 0.f), "dbeta");
  DeviceBuffer<double> ws = workspace(n, hw, c, groups);
  yd.poison();
  ddx.poison();
  ddres.poison();
  kernels::batchnorm_train_forward<__nv_bfloat16>(n, hw, c, groups, bf(xd), dgamma.get(), dbeta.get(), eps,
                                                  momentum, bf(dres), true, bf(yd), dsm.get(), dsi.get(), nullptr,
                                                  nullptr, nullptr, ws.get(), nullptr);
  // the backward gets the CPU's statistics and mask, so it is checked on its own
  dsm.upload(smean);
  dsi.upload(sinv);
  DeviceBuffer<uint16_t> y_cpu(bf16_bits(to_nhwc(y_bf, n, c, hw)), "y (CPU)");
  kernels::batchnorm_train_backward<__nv_bfloat16>(n, hw, c, groups, bf(xd), dgamma.get(), nullptr, dsm.get(),
                                                   dsi.get(), bf(y_cpu), true, bf(ddy), bf(ddres), bf(ddx), ddg.get(),
                                                   ddb.get(), ws.get(), nullptr);
  const auto got_y = to_nchw(bf16_values(yd.download()), n, c, hw);
  const auto got_dx = to_nchw(bf16_values(ddx.download()), n, c, hw);
  const auto got_dres = to_nchw(bf16_values(ddres.download()), n, c, hw);
  return close("y", got_y, y, 1e-2) && close("dx", got_dx, dx, 1e-2) && close("d_residual", got_dres, g, 0.0) &&
         close("dgamma", ddg.download(), dg, 1e-4) && close("dbeta", ddb.download(), db, 1e-4);
}

// Fill a large bf16 buffer by repeating a block of random values (generating ~200M normals on the host
// would dominate the run).
void fill(DeviceBuffer<uint16_t>& b, uint64_t stream, double mean, double sd) {
  const auto block = bf16_bits(normals((size_t)1 << 20, stream, mean, sd));
  for (size_t off = 0; off < b.size(); off += block.size()) {
    const size_t m = std::min(block.size(), b.size() - off);
    MOCO_CUDA_CHECK(cudaMemcpy(b.get() + off, block.data(), m * sizeof(uint16_t), cudaMemcpyHostToDevice));
  }
}

struct BnShape {
  int64_t h, c;
};

}  // namespace

int main() {
  return bench::run(correct, [&](bench::Timer& timer, double copy_gbs) {
    const int64_t n = 256, groups = 1;
    const float eps = 1e-5f, momentum = 0.1f;
    const BnShape shapes[] = {{56, 64}, {56, 256}, {28, 512}, {14, 1024}, {7, 2048}};  // the stages' BN inputs
    for (const BnShape& s : shapes) {
      const int64_t hw = s.h * s.h, c = s.c, size = n * hw * c;
      DeviceBuffer<uint16_t> x((size_t)size, "x"), res((size_t)size, "residual"), y((size_t)size, "y"),
          dy((size_t)size, "dy"), dx((size_t)size, "dx"), dres((size_t)size, "d_residual");
      fill(x, 10, 0.3, 1.5);
      fill(res, 11, 0.0, 1.0);
      fill(dy, 12, 0.0, 1.0);
      DeviceBuffer<float> gamma(normals(c, 13, 1.0, 0.2), "gamma"), beta(normals(c, 14, 0.0, 0.2), "beta");
      DeviceBuffer<float> rm(std::vector<float>(c, 0.f), "running_mean"), rv(std::vector<float>(c, 1.f), "running_var");
      DeviceBuffer<float> sm((size_t)(groups * c), "save_mean"), si((size_t)(groups * c), "save_invstd");
      DeviceBuffer<float> dg(std::vector<float>(c, 0.f), "dgamma"), db(std::vector<float>(c, 0.f), "dbeta");
      DeviceBuffer<int64_t> tracked(std::vector<int64_t>{0}, "num_batches_tracked");
      DeviceBuffer<double> ws = workspace(n, hw, c, groups);
      DeviceBuffer<uint8_t> bits((size_t)size / 8, "relu mask");  // (N * HW * C / 8)
      // as the step runs it: with a residual the forward also writes the ReLU's mask as bits
      auto forward = [&](bool with_res) {
        kernels::batchnorm_train_forward<__nv_bfloat16>(n, hw, c, groups, bf(x), gamma.get(), beta.get(), eps,
                                                        momentum, with_res ? bf(res) : nullptr, true, bf(y), sm.get(),
                                                        si.get(), rm.get(), rv.get(), tracked.get(), ws.get(), nullptr,
                                                        with_res ? bits.get() : nullptr);
      };
      // as the step runs it: without a residual the ReLU's mask is rebuilt from x, with one it comes from the
      // bits; `from_y` reads y instead, as the step did before the bits (their gain, side by side)
      auto backward = [&](bool with_res, bool from_y) {
        kernels::batchnorm_train_backward<__nv_bfloat16>(
            n, hw, c, groups, bf(x), gamma.get(), beta.get(), sm.get(), si.get(), from_y ? bf(y) : nullptr, true,
            bf(dy), with_res ? bf(dres) : nullptr, bf(dx), dg.get(), db.get(), ws.get(), nullptr,
            with_res && !from_y ? bits.get() : nullptr);
      };
      struct Line {
        const char* name;
        double ms;
        double bytes_per, passes_bytes_per;  // minimum, and what the kernels move (a mask bit is 1/8 byte)
      };
      const double fwd_ms = timer.median_ms([&] { forward(false); });
      const double fwd_res_ms = timer.median_ms([&] { forward(true); });  // leaves y and the bits for backward
      const double bwd_ms = timer.median_ms([&] { backward(false, false); });
      const double bwd_res_ms = timer.median_ms([&] { backward(true, false); });
      const double bwd_res_y_ms = timer.median_ms([&] { backward(true, true); });
      for (const Line& l : {Line{"fwd bn+relu", fwd_ms, 4, 6}, Line{"fwd bn+add+relu", fwd_res_ms, 6.125, 8.125},
                            Line{"bwd relu", bwd_ms, 6, 10}, Line{"bwd relu+dres", bwd_res_ms, 8.125, 12.25},
                            Line{"bwd relu+dres y", bwd_res_y_ms, 10, 16}}) {
        const double gbs = (double)size * l.bytes_per / (l.ms * 1e-3) / 1e9;
        const double moved = (double)size * l.passes_bytes_per / (l.ms * 1e-3) / 1e9;
        std::printf("batchnorm_nhwc bf16 %-16s N=%lld %2lldx%-2lld C=%-4lld: %8.4f ms  %6.0f GB/s (%5.2f B/elem)  "
                    "%.2f of copy  (moved %6.0f GB/s, %.2f of copy)\n",
                    l.name, (long long)n, (long long)s.h, (long long)s.h, (long long)c, l.ms, gbs, l.bytes_per,
                    gbs / copy_gbs, moved, moved / copy_gbs);
      }
      std::printf("batchnorm_nhwc bf16 residual backward, mask from bits against from y: %.2fx\n",
                  bwd_res_y_ms / bwd_res_ms);
    }
  });
}
