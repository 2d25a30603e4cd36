// cuDNN convolutions (src/cuda/convolution.h) on every distinct ResNet-50 convolution at batch 256 in bf16:
// forward, data gradient and filter gradient, each with the algorithm the search chose, then the whole
// network's convolution time per image (each shape weighted by how often it occurs). Compute-bound, so the
// measure is TFLOP/s, counting 2 * N * Ho * Wo * Co * Ci * kh * kw flops per pass (the same for all three).
// Checks the three passes of one shape against the CPU first and refuses to time a wrong wrapper.
//   build/bench_conv
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../src/cuda/convolution.h"
#include "../src/cuda/resnet50_convs.h"
#include "gpu_bench.h"
#include "moco/host_layout.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;
using cpu::ConvShape;
using cuda::DeviceBuffer;

namespace {

constexpr int64_t kBatch = 256;

// (A, B, C, D) -> (A, C, D, B): NCHW to NHWC, and equally (Co, Ci, kh, kw) to (Co, kh, kw, Ci). With
// `inverse`, the other way.
std::vector<float> permute(const std::vector<float>& v, int64_t a, int64_t b, int64_t c, int64_t d, bool inverse) {
  std::vector<float> out(v.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c * d; ++k) {
        const size_t first = (size_t)((i * b + j) * c * d + k), last = (size_t)((i * c * d + k) * b + j);
        if (inverse)
          out[first] = v[last];
        else
          out[last] = v[first];
      }
  return out;
}

// Standard normal values rounded to bf16 (kept as float, so the CPU sees what the GPU sees).
std::vector<float> bf16_normals(size_t n, uint64_t stream) {
  return bf16_values(bf16_bits(normal_floats(n, 77, stream)));
}


// got (bf16, channels-last, permuted back by the caller) within 1e-2 of each output's sum of |terms|: the
// bf16 rounding of the result is at most 2^-9 of it (see tests/gpu/test_convolution.cpp).
bool matches(const char* pass, const std::vector<uint16_t>& got_bits, int64_t a, int64_t b, int64_t c, int64_t d,
             const std::vector<float>& ref, const std::vector<float>& mag) {
  std::vector<float> got(got_bits.size());
  for (size_t i = 0; i < got.size(); ++i) got[i] = moco::bf16_value(got_bits[i]);
  got = permute(got, a, b, c, d, true);
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs((double)got[i] - ref[i]) <= 1e-2 * mag[i] + 1e-30)) {
      std::printf("conv %s: element %zu = %g, CPU %g (sum of |terms| %g); refusing to time it\n", pass, i, got[i],
                  ref[i], mag[i]);
      return false;
    }
  return true;
}

bool correct() {
  const ConvShape s{4, 64, 14, 14, 48, 3, 3, 2, 1};
  const int64_t ho = s.ho(), wo = s.wo();
  const size_t nx = (size_t)(s.n * s.ci * s.h * s.w), nw = (size_t)(s.co * s.ci * 9),
               ny = (size_t)(s.n * s.co * ho * wo);
  const auto x = bf16_normals(nx, 1);   // (N, Ci, H, W)
  const auto w = bf16_normals(nw, 2);   // (Co, Ci, kh, kw)
  const auto dy = bf16_normals(ny, 3);  // (N, Co, Ho, Wo)
  auto abs_of = [](std::vector<float> v) {
    for (auto& e : v) e = std::fabs(e);
    return v;
  };
  std::vector<float> ref_y(ny), mag_y(ny), ref_dx(nx), mag_dx(nx), ref_dw(nw, 0.f), mag_dw(nw, 0.f);
  cpu::conv2d_forward<float>(s, x.data(), w.data(), ref_y.data());
  cpu::conv2d_forward<float>(s, abs_of(x).data(), abs_of(w).data(), mag_y.data());
  cpu::conv2d_backward<float>(s, x.data(), w.data(), dy.data(), ref_dx.data(), ref_dw.data());
  cpu::conv2d_backward<float>(s, abs_of(x).data(), abs_of(w).data(), abs_of(dy).data(), mag_dx.data(), mag_dw.data());

  DeviceBuffer<uint16_t> dx_in(bf16_bits(permute(x, s.n, s.ci, s.h, s.w, false)), "x");     // (N, H, W, Ci)
  DeviceBuffer<uint16_t> dw_in(bf16_bits(permute(w, s.co, s.ci, 3, 3, false)), "w");       // (Co, kh, kw, Ci)
  DeviceBuffer<uint16_t> ddy_in(bf16_bits(permute(dy, s.n, s.co, ho, wo, false)), "dy");   // (N, Ho, Wo, Co)
  DeviceBuffer<uint16_t> y(ny, "y"), dx(nx, "dx"), dw(nw, "dw");                          // same layouts
  y.poison();
  dx.poison();
  dw.poison();
  cuda::Convolutions conv(nullptr);
  conv.forward(s, DType::BF16, dx_in.get(), dw_in.get(), y.get());
  conv.backward_data(s, DType::BF16, ddy_in.get(), dw_in.get(), dx.get());
  conv.backward_filter(s, DType::BF16, dx_in.get(), ddy_in.get(), dw.get());
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());
  return matches("forward", y.download(), s.n, s.co, ho, wo, ref_y, mag_y) &&
         matches("backward_data", dx.download(), s.n, s.ci, s.h, s.w, ref_dx, mag_dx) &&
         matches("backward_filter", dw.download(), s.co, s.ci, 3, 3, ref_dw, mag_dw);
}

// Random bf16 values: one random block, uploaded over the whole buffer (the values only need to be ordinary
// numbers; generating hundreds of millions on the host would dominate the run).
void fill_random(DeviceBuffer<uint16_t>& buf, uint64_t stream) {
  const std::vector<uint16_t> block = bf16_bits(bf16_normals((size_t)1 << 20, stream));
  for (size_t at = 0; at < buf.size(); at += block.size()) {
    const size_t n = std::min(block.size(), buf.size() - at);
    MOCO_CUDA_CHECK(cudaMemcpy(buf.get() + at, block.data(), n * sizeof(uint16_t), cudaMemcpyHostToDevice));
  }
}

// The algorithm describe() reports for a pass: the text between "<pass>: " and the next comma.
std::string algorithm(const std::string& described, const std::string& pass) {
  const size_t at = described.find(" " + pass + ": ");
  if (at == std::string::npos) return "?";
  const size_t from = at + pass.size() + 3;
  return described.substr(from, described.find(',', from) - from);
}

}  // namespace

int main() {
  return bench::run(correct, [&](bench::Timer& timer, double /*copy_gbs: conv is compute-bound*/) {
    const auto convs = cuda::resnet50_convs(kBatch);
    size_t max_x = 0, max_w = 0, max_y = 0;
    for (const auto& c : convs) {
      const ConvShape& s = c.shape;
      max_x = std::max(max_x, (size_t)(s.n * s.ci * s.h * s.w));
      max_w = std::max(max_w, (size_t)(s.co * s.ci * s.kh * s.kw));
      max_y = std::max(max_y, (size_t)(s.n * s.co * s.ho() * s.wo()));
    }
    DeviceBuffer<uint16_t> x(max_x, "x"), dx(max_x, "dx");  // (N, H, W, Ci) of the largest input
    DeviceBuffer<uint16_t> w(max_w, "w"), dw(max_w, "dw");  // (Co, kh, kw, Ci) of the largest filter
    DeviceBuffer<uint16_t> y(max_y, "y"), dy(max_y, "dy");  // (N, Ho, Wo, Co) of the largest output
    fill_random(x, 11);
    fill_random(w, 12);
    fill_random(dy, 13);

    double net_ms[3] = {0, 0, 0}, net_flop = 0;
    double stem_ms[2] = {0, 0};  // the stem's forward and filter gradient, with its 3 input channels
    std::printf("bf16, N=%lld, median of %d runs, L2 flushed; TFLOP/s = 2*N*Ho*Wo*Co*Ci*kh*kw / time\n",
                (long long)kBatch, bench::kReps);
    for (const auto& c : convs) {
      const ConvShape& s = c.shape;
      cuda::Convolutions conv(nullptr);  // one per shape, so describe() lists just this shape's plans
      const double ms[3] = {
          timer.median_ms([&] { conv.forward(s, DType::BF16, x.get(), w.get(), y.get()); }),
          timer.median_ms([&] { conv.backward_data(s, DType::BF16, dy.get(), w.get(), dx.get()); }),
          timer.median_ms([&] { conv.backward_filter(s, DType::BF16, x.get(), dy.get(), dw.get()); }),
      };
      const double flop = 2.0 * (double)(s.n * s.ho() * s.wo() * s.co * s.ci * s.kh * s.kw);
      const std::string described = conv.describe();
      const char* passes[3] = {"forward", "backward_data", "backward_filter"};
      const char* short_names[3] = {"fwd", "dgrad", "wgrad"};
      std::printf("%lldx%lld s%lld %4lld->%-4lld at %3lldx%-3lld x%d:", (long long)s.kh, (long long)s.kw,
                  (long long)s.stride, (long long)s.ci, (long long)s.co, (long long)s.h, (long long)s.w, c.count);
      for (int p = 0; p < 3; ++p)
        std::printf("  %s %7.3f ms %5.1f TFLOP/s %s", short_names[p], ms[p], flop / (ms[p] * 1e-3) / 1e12,
                    algorithm(described, passes[p]).c_str());
      std::printf("%s\n", described.find("NON-DETERMINISTIC") != std::string::npos ? "  (non-deterministic)" : "");
      // training never needs the image's gradient, so the stem's data gradient is left out of the total
      const bool stem = s.ci == 3;
      if (stem) stem_ms[0] = ms[0], stem_ms[1] = ms[2];
      for (int p = 0; p < 3; ++p)
        if (!(p == 1 && stem)) {
          net_ms[p] += c.count * ms[p];
          net_flop += c.count * flop;
        }
    }
    const double total = net_ms[0] + net_ms[1] + net_ms[2];
    std::printf("whole network, per image (x multiplicity, stem dgrad excluded): fwd %.1f us  dgrad %.1f us  "
                "wgrad %.1f us  total %.1f us = %.0f img/s for the convolutions alone, %.1f TFLOP/s\n",
                net_ms[0] * 1e3 / kBatch, net_ms[1] * 1e3 / kBatch, net_ms[2] * 1e3 / kBatch, total * 1e3 / kBatch,
                kBatch / (total * 1e-3), net_flop / (total * 1e-3) / 1e12);

    // The stem with a zero fourth input channel: cuDNN's tensor-core kernels want channel counts that are
    // multiples of 4 or 8 in bf16, so 3 channels may leave the stem on slower ones. Timed here so that a
    // measurement, not a guess, decides whether the input should carry a fourth channel.
    for (const auto& c : convs) {
      if (c.shape.ci != 3) continue;
      ConvShape s4 = c.shape;
      s4.ci = 4;
      cuda::Convolutions conv(nullptr);
      const double fwd = timer.median_ms([&] { conv.forward(s4, DType::BF16, x.get(), w.get(), y.get()); });
      const double wgrad = timer.median_ms([&] { conv.backward_filter(s4, DType::BF16, x.get(), dy.get(), dw.get()); });
      std::printf("stem with a zero fourth channel (Ci 4): fwd %7.3f ms  wgrad %7.3f ms  against Ci 3: fwd %7.3f ms  "
                  "wgrad %7.3f ms  (%.2fx together)\n", fwd, wgrad, stem_ms[0], stem_ms[1],
                  (stem_ms[0] + stem_ms[1]) / (fwd + wgrad));
    }
  });
}
