// cuDNN convolutions (src/cuda/convolution.h) on every distinct ResNet-50 convolution at batch 256 in bf16:
// forward, data gradient and filter gradient, through the legacy API (the algorithm the search chose) and
// through the graph API (the fastest qualifying engine), side by side, then the whole network's convolution
// time per image (each shape weighted by how often it occurs) for each API and for the faster of the two per
// pass, which is what MOCO_CONV_API=auto approaches. Compute-bound, so the measure is TFLOP/s, counting
// 2 * N * Ho * Wo * Co * Ci * kh * kw flops per pass (the same for all three).
// Last, where each bottleneck's two input gradients meet: conv1's data gradient written and then added to the
// shortcut's by a separate add kernel, against cuDNN adding it as it writes (beta 1), which the step does.
// Checks the three passes of one shape against the CPU through each API first: a wrong legacy wrapper stops
// the bench, a wrong or refused graph API is reported and left untimed.
//   build/bench_conv
//   MOCO_BENCH_CONV_BATCH=1 build/bench_conv_emu    (a smaller batch: rehearses the whole bench on the emulator)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../src/cuda/convolution.h"
#include "../src/cuda/resnet50_convs.h"
#include "gpu_bench.h"
#include "nhwc_ops.cuh"
#include "moco/host_layout.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;
using cpu::ConvShape;
using cuda::DeviceBuffer;

namespace {

// The batch: 256 (the authors' per-step batch), or MOCO_BENCH_CONV_BATCH.
int64_t batch_size() {
  const char* v = std::getenv("MOCO_BENCH_CONV_BATCH");
  if (!v) return 256;
  const long long b = std::atoll(v);
  if (b < 1) ::moco::fail("MOCO_BENCH_CONV_BATCH=", v, " is not a batch size (expected an integer >= 1)");
  return b;
}

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

// The three passes of shape s, in the given API and stem form, against the CPU.
bool correct_with(cuda::ConvApi api, const ConvShape& s = {4, 64, 14, 14, 48, 3, 3, 2, 1},
                  cuda::StemForm stem = cuda::StemForm::kDirect) {
  const int64_t ho = s.ho(), wo = s.wo();
  const size_t nx = (size_t)(s.n * s.ci * s.h * s.w), nw = (size_t)(s.co * s.ci * s.kh * s.kw),
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
  DeviceBuffer<uint16_t> dw_in(bf16_bits(permute(w, s.co, s.ci, s.kh, s.kw, false)), "w");  // (Co, kh, kw, Ci)
  DeviceBuffer<uint16_t> ddy_in(bf16_bits(permute(dy, s.n, s.co, ho, wo, false)), "dy");   // (N, Ho, Wo, Co)
  DeviceBuffer<uint16_t> y(ny, "y"), dx(nx, "dx"), dw(nw, "dw");                          // same layouts
  y.poison();
  dx.poison();
  dw.poison();
  cuda::Convolutions conv(nullptr, api, stem);
  conv.forward(s, DType::BF16, dx_in.get(), dw_in.get(), y.get());
  conv.backward_data(s, DType::BF16, ddy_in.get(), dw_in.get(), dx.get());
  conv.backward_filter(s, DType::BF16, dx_in.get(), ddy_in.get(), dw.get());
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());
  return matches("forward", y.download(), s.n, s.co, ho, wo, ref_y, mag_y) &&
         matches("backward_data", dx.download(), s.n, s.ci, s.h, s.w, ref_dx, mag_dx) &&
         matches("backward_filter", dw.download(), s.co, s.ci, s.kh, s.kw, ref_dw, mag_dw);
}

// Whether the graph API passed its check (and so is timed); set by correct().
bool g_graph_ok = false;

bool correct() {
  if (!correct_with(cuda::ConvApi::kLegacy)) return false;
  // the stem's space-to-depth form, timed below, on a small stem
  if (!correct_with(cuda::ConvApi::kLegacy, {4, 3, 20, 20, 16, 7, 7, 2, 3}, cuda::StemForm::kSpaceToDepth))
    return false;
  try {
    g_graph_ok = correct_with(cuda::ConvApi::kGraph);
    if (!g_graph_ok) std::printf("the graph API gives wrong values (above); only the legacy API is timed\n");
  } catch (const std::exception& e) {
    std::printf("the graph API refused the check shape, so only the legacy API is timed: %s\n", e.what());
  }
  return true;
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
    const int64_t batch = batch_size();
    const auto convs = cuda::resnet50_convs(batch);
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

    // per pass, over the network: the legacy API, the graph API, and the faster of the two per shape
    double net_ms[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}}, net_flop = 0;
    double stem_ms[2] = {0, 0};  // the stem's forward and filter gradient (legacy), with its 3 input channels
    std::printf("bf16, N=%lld, median of %d runs, L2 flushed; TFLOP/s = 2*N*Ho*Wo*Co*Ci*kh*kw / time; "
                "legacy: the legacy API's searched algorithm; graph: the graph API's fastest qualifying engine\n",
                (long long)batch, bench::kReps);
    const char* passes[3] = {"forward", "backward_data", "backward_filter"};
    const char* short_names[3] = {"fwd", "dgrad", "wgrad"};
    for (const auto& c : convs) {
      const ConvShape& s = c.shape;
      // one object per shape and API, so describe() lists just this shape's plans; the stem as it is (its
      // space-to-depth form is timed at the end)
      cuda::Convolutions legacy(nullptr, cuda::ConvApi::kLegacy, cuda::StemForm::kDirect),
          graph(nullptr, cuda::ConvApi::kGraph, cuda::StemForm::kDirect);
      auto time_passes = [&](cuda::Convolutions& conv, double ms[3]) {
        ms[0] = timer.median_ms([&] { conv.forward(s, DType::BF16, x.get(), w.get(), y.get()); });
        ms[1] = timer.median_ms([&] { conv.backward_data(s, DType::BF16, dy.get(), w.get(), dx.get()); });
        ms[2] = timer.median_ms([&] { conv.backward_filter(s, DType::BF16, x.get(), dy.get(), dw.get()); });
      };
      double lm[3], gm[3] = {-1, -1, -1};
      time_passes(legacy, lm);
      std::string graph_error;
      if (g_graph_ok) {
        try {
          time_passes(graph, gm);
        } catch (const std::exception& e) {
          graph_error = e.what();
          gm[0] = gm[1] = gm[2] = -1;
          MOCO_CUDA_CHECK(cudaDeviceSynchronize());
        }
      }
      const double flop = 2.0 * (double)(s.n * s.ho() * s.wo() * s.co * s.ci * s.kh * s.kw);
      const std::string lines_legacy = legacy.describe(), lines_graph = graph.describe();
      std::printf("%lldx%lld s%lld %4lld->%-4lld at %3lldx%-3lld x%d:\n", (long long)s.kh, (long long)s.kw,
                  (long long)s.stride, (long long)s.ci, (long long)s.co, (long long)s.h, (long long)s.w, c.count);
      for (int p = 0; p < 3; ++p) {
        std::printf("  %-5s legacy %7.3f ms %5.1f TFLOP/s %-44s", short_names[p], lm[p],
                    flop / (lm[p] * 1e-3) / 1e12, algorithm(lines_legacy, passes[p]).c_str());
        if (gm[p] > 0)
          std::printf("  graph %7.3f ms %5.1f TFLOP/s %-18s legacy/graph %.2fx\n", gm[p],
                      flop / (gm[p] * 1e-3) / 1e12, algorithm(lines_graph, passes[p]).c_str(), lm[p] / gm[p]);
        else
          std::printf("  graph not timed\n");
      }
      if (lines_legacy.find("NON-DETERMINISTIC") != std::string::npos) std::printf("  (legacy non-deterministic)\n");
      if (!graph_error.empty()) std::printf("  graph API: %s\n", graph_error.c_str());
      // training never needs the image's gradient, so the stem's data gradient is left out of the total
      const bool stem = s.ci == 3;
      if (stem) stem_ms[0] = lm[0], stem_ms[1] = lm[2];
      for (int p = 0; p < 3; ++p) {
        if (p == 1 && stem) continue;
        const double g = gm[p] > 0 ? gm[p] : lm[p];  // untimed: counted at the legacy time
        net_ms[0][p] += c.count * lm[p];
        net_ms[1][p] += c.count * g;
        net_ms[2][p] += c.count * std::min(lm[p], g);
        net_flop += c.count * flop;
      }
    }
    const char* which[3] = {"legacy", "graph", "faster of the two per pass"};
    double totals[3];
    for (int a = 0; a < 3; ++a) {
      const double total = net_ms[a][0] + net_ms[a][1] + net_ms[a][2];
      totals[a] = total;
      std::printf("whole network, %s, per image (x multiplicity, stem dgrad excluded): fwd %.1f us  dgrad %.1f us  "
                  "wgrad %.1f us  total %.1f us = %.0f img/s for the convolutions alone, %.1f TFLOP/s\n",
                  which[a], net_ms[a][0] * 1e3 / batch, net_ms[a][1] * 1e3 / batch, net_ms[a][2] * 1e3 / batch,
                  total * 1e3 / batch, batch / (total * 1e-3), net_flop / (total * 1e-3) / 1e12);
    }
    std::printf("convolution time, legacy / graph: %.2fx; legacy / faster per pass: %.2fx%s\n", totals[0] / totals[1],
                totals[0] / totals[2], g_graph_ok ? "" : " (graph not timed)");

    // The residual gradient sums: for each bottleneck conv1 shape, data gradient then add kernel (what the
    // step did before) against the adding data gradient (what it does now), with the API choice of the step
    // (auto). The sum lands in dx; the shortcut's gradient is y's buffer, as large as any input.
    double separate_ms = 0, adding_ms = 0;
    for (const auto& c : convs) {
      if (c.adding == 0) continue;
      const ConvShape& s = c.shape;
      const int64_t nx = s.n * s.ci * s.h * s.w;
      cuda::Convolutions conv(nullptr, cuda::ConvApi::kAuto);
      DeviceBuffer<uint16_t> d_main((size_t)nx, "conv1 dx");  // (N, H, W, Ci)
      const auto* bf = reinterpret_cast<const __nv_bfloat16*>(y.get());
      const double sep = timer.median_ms([&] {
        conv.backward_data(s, DType::BF16, dy.get(), w.get(), d_main.get());
        kernels::add_forward<__nv_bfloat16>(nx, reinterpret_cast<const __nv_bfloat16*>(d_main.get()), bf,
                                            reinterpret_cast<__nv_bfloat16*>(dx.get()), nullptr);
      });
      const double add = timer.median_ms(
          [&] { conv.backward_data(s, DType::BF16, dy.get(), w.get(), dx.get(), /*add=*/true); });
      std::printf("residual gradient sum, conv1 1x1 %4lld->%-4lld at %3lldx%-3lld x%d: dgrad + add kernel %7.3f ms, "
                  "adding dgrad %7.3f ms (%.2fx)\n", (long long)s.ci, (long long)s.co, (long long)s.h,
                  (long long)s.w, c.adding, sep, add, sep / add);
      separate_ms += c.adding * sep;
      adding_ms += c.adding * add;
    }
    std::printf("residual gradient sums over the network's 16 bottlenecks: dgrad + add kernel %.3f ms, adding dgrad "
                "%.3f ms per step of the query encoder (%.2fx)\n", separate_ms, adding_ms, separate_ms / adding_ms);

    // The stem in other forms that compute the same sums: zero input channels up to 4, 8 or 16, and the
    // 7x7/2 convolution as a 4x4/1 one over a 2x2 space-to-depth input (12 channels, zero-padded to 16; the
    // 7x7 filter zero-padded to 8x8). cuDNN's tensor-core kernels want channel counts that are multiples of
    // 8 in bf16, and the stem's 3 ran at about 34 TFLOP/s on the H200 (a fifth of the 1x1s), 1.8 ms per
    // forward at batch 256, twice a step, plus its filter gradient. Timed here so that a measurement decides
    // whether the step should feed the stem one of these (the auto and legacy APIs, as the step would run it).
    for (const auto& c : convs) {
      if (c.shape.ci != 3) continue;
      struct Form {
        const char* name;
        ConvShape s;
      };
      ConvShape s2d = c.shape;  // (N, 230/2, 230/2, 16) with the 3-pixel padding applied before the rearrangement
      s2d.ci = 16, s2d.h = s2d.w = (c.shape.h + 2 * c.shape.pad) / 2, s2d.kh = s2d.kw = 4, s2d.stride = 1,
      s2d.pad = 0;
      std::vector<Form> forms;
      for (int64_t ci : {4, 8, 16}) {
        ConvShape s = c.shape;
        s.ci = ci;
        forms.push_back({ci == 4 ? "zero channels to Ci 4" : ci == 8 ? "zero channels to Ci 8" : "zero channels to Ci 16",
                         s});
      }
      forms.push_back({"4x4/1 over 2x2 space-to-depth, Ci 16", s2d});
      for (const Form& f : forms) {
        if (s2d.ho() != c.shape.ho() || (size_t)(f.s.n * f.s.h * f.s.w * f.s.ci) > x.size() ||
            (size_t)(f.s.co * f.s.kh * f.s.kw * f.s.ci) > w.size()) {
          std::printf("stem as %s: does not fit the benchmark's buffers, not timed\n", f.name);
          continue;
        }
        for (cuda::ConvApi api : {cuda::ConvApi::kLegacy, cuda::ConvApi::kAuto}) {
          cuda::Convolutions conv(nullptr, api, cuda::StemForm::kDirect);
          const double fwd = timer.median_ms([&] { conv.forward(f.s, DType::BF16, x.get(), w.get(), y.get()); });
          const double wgrad =
              timer.median_ms([&] { conv.backward_filter(f.s, DType::BF16, x.get(), dy.get(), dw.get()); });
          std::printf("stem as %-38s (%s API): fwd %7.3f ms  wgrad %7.3f ms  against Ci 3 (legacy): fwd %7.3f ms  "
                      "wgrad %7.3f ms  (%.2fx for 2 fwd + wgrad, as a step runs them)\n", f.name,
                      cuda::conv_api_name(api), fwd, wgrad, stem_ms[0], stem_ms[1],
                      (2 * stem_ms[0] + stem_ms[1]) / (2 * fwd + wgrad));
        }
      }
      // The two forms as Convolutions runs them for the step (MOCO_STEM_FORM), the space-to-depth one with its
      // input and filter transforms: what its auto mode weighs on the first call.
      double form_ms[2][2];
      for (int f = 0; f < 2; ++f) {
        const cuda::StemForm form = f ? cuda::StemForm::kSpaceToDepth : cuda::StemForm::kDirect;
        cuda::Convolutions conv(nullptr, cuda::ConvApi::kAuto, form);
        form_ms[f][0] = timer.median_ms([&] { conv.forward(c.shape, DType::BF16, x.get(), w.get(), y.get()); });
        form_ms[f][1] =
            timer.median_ms([&] { conv.backward_filter(c.shape, DType::BF16, x.get(), dy.get(), dw.get()); });
      }
      std::printf("stem forms as the step runs them (auto API): direct fwd %7.3f ms  wgrad %7.3f ms; space_to_depth "
                  "with its transforms fwd %7.3f ms  wgrad %7.3f ms  (direct / space_to_depth %.2fx for 2 fwd + "
                  "wgrad)\n", form_ms[0][0], form_ms[0][1], form_ms[1][0], form_ms[1][1],
                  (2 * form_ms[0][0] + form_ms[0][1]) / (2 * form_ms[1][0] + form_ms[1][1]));
    }
  });
}
