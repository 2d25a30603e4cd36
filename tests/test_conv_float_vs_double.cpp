// Float convolutions (oneDNN where the build has it, else im2col) against the double im2col reference that
// the finite-difference checks hold to, over the shapes ResNets use (7x7/2 stem, 3x3/1 and /2, 1x1/1 and /2
// downsamples) at odd sizes: the output, the data gradient (overwritten, or skipped when null) and the weight
// gradient (accumulated into what is there); each gradient also alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;

namespace {

std::vector<double> randn(size_t n, uint64_t stream) {
  Rng r(17, stream);
  std::vector<double> v(n);
  for (double& x : v) x = r.normal();
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Largest |a - b| relative to the reference's largest magnitude.
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::fabs((double)a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return worst / scale;
}

}  // namespace

TEST(ConvFloatVsDouble, ResNetShapesForwardAndBothGradients) {
  const cpu::ConvShape shapes[] = {
      {3, 3, 33, 29, 8, 7, 7, 2, 3},    // stem
      {3, 8, 17, 15, 8, 3, 3, 1, 1},    // 3x3/1
      {3, 8, 17, 15, 16, 3, 3, 2, 1},   // 3x3/2
      {3, 16, 9, 8, 32, 1, 1, 1, 0},    // 1x1/1 (bottleneck conv1, conv3)
      {3, 16, 9, 8, 32, 1, 1, 2, 0},    // 1x1/2 (downsample)
      {2, 5, 6, 7, 3, 3, 3, 1, 0},      // no padding
  };
  uint64_t stream = 0;
  for (const cpu::ConvShape& s : shapes) {
    const size_t nx = (size_t)(s.n * s.ci * s.h * s.w), nw = (size_t)(s.co * s.ci * s.kh * s.kw),
                 ny = (size_t)(s.n * s.co * s.ho() * s.wo());
    const std::vector<double> x = randn(nx, ++stream), w = randn(nw, ++stream), dy = randn(ny, ++stream);
    std::vector<double> y(ny), dx(nx), dw(nw, 1.0);  // dw starts at 1: the gradient is added to it
    cpu::conv2d_forward<double>(s, x.data(), w.data(), y.data());
    cpu::conv2d_backward<double>(s, x.data(), w.data(), dy.data(), dx.data(), dw.data());

    const std::vector<float> xf = to_float(x), wf = to_float(w), dyf = to_float(dy);
    std::vector<float> yf(ny), dxf(nx, 123.f), dwf(nw, 1.f);
    cpu::conv2d_forward<float>(s, xf.data(), wf.data(), yf.data());
    cpu::conv2d_backward<float>(s, xf.data(), wf.data(), dyf.data(), dxf.data(), dwf.data());
    const std::string what = "shape n" + std::to_string(s.n) + " ci" + std::to_string(s.ci) + " " +
                             std::to_string(s.h) + "x" + std::to_string(s.w) + " co" + std::to_string(s.co) +
                             " k" + std::to_string(s.kh) + " s" + std::to_string(s.stride);
    EXPECT_LT(rel_err(yf, y), 1e-5) << what;
    EXPECT_LT(rel_err(dxf, dx), 1e-5) << what;
    EXPECT_LT(rel_err(dwf, dw), 1e-5) << what;

    // without the data gradient: dw alone, accumulated again
    std::vector<float> dw_only(nw, 1.f);
    cpu::conv2d_backward<float>(s, xf.data(), wf.data(), dyf.data(), nullptr, dw_only.data());
    EXPECT_LT(rel_err(dw_only, dw), 1e-5) << what << " (dx skipped)";
    // without the weight gradient: dx alone, overwritten
    std::vector<float> dx_only(nx, -7.f);
    cpu::conv2d_backward<float>(s, xf.data(), wf.data(), dyf.data(), dx_only.data(), nullptr);
    EXPECT_LT(rel_err(dx_only, dx), 1e-5) << what << " (dw skipped)";
  }
}
