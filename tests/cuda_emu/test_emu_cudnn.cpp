// Tests of the emulated cuDNN (include/cudnn.h, emu_cudnn.cpp) on its own, before it is trusted as the
// independent check of src/cuda/convolution.cpp: the three passes against direct formulas written here in
// NCHW index order (a gather for backward data, where the fake scatters), the adjoint identity that ties
// the passes together, bf16 rounding, alpha/beta, the NCHW format and the convolution mode, the algorithm
// search, and the refusals (workspace too small, inconsistent descriptors).
//
// Device memory is host memory in the emulator, so buffers here are plain vectors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "include/cuda_bf16.h"
#include "include/cuda_runtime.h"
#include "include/cudnn.h"

namespace {

#define CUDNN_OK(call) ASSERT_EQ((call), CUDNN_STATUS_SUCCESS) << #call

// A convolution is queued on the handle's stream and runs when the host synchronises (emu_streams.h); these
// tests read its output at once, so each call is followed by the synchronisation a program would make first.
cudnnStatus_t finished(cudnnStatus_t status) {
  cudaDeviceSynchronize();
  return status;
}

struct Shape {
  int n, c, h, w;      // x: images, input channels, rows, columns
  int k, r, s;         // filter: output channels, tap rows, tap columns
  int stride, pad;     // along rows
  int stride_w = -1;   // along columns; -1: as along rows
  int pad_w = -1;
  int u() const { return stride; }
  int v() const { return stride_w < 0 ? stride : stride_w; }
  int ph() const { return pad; }
  int pw() const { return pad_w < 0 ? pad : pad_w; }
  int ho() const { return (h + 2 * ph() - r) / u() + 1; }
  int wo() const { return (w + 2 * pw() - s) / v() + 1; }
  size_t x_count() const { return (size_t)n * c * h * w; }
  size_t w_count() const { return (size_t)k * c * r * s; }
  size_t y_count() const { return (size_t)n * k * ho() * wo(); }
};

// Stride 2 with pad 1, 3x3 and 1x1 kernels, one and two images, odd sizes (so the last row and column of the
// input are or are not reached), a stride-1 case, and one where rows and columns are treated differently
// (so a swapped stride, pad or tap count shows).
const Shape kShapes[] = {
    {1, 2, 5, 5, 3, 3, 3, 2, 1},  //
    {2, 3, 6, 7, 2, 3, 3, 2, 1},  //
    {2, 3, 5, 4, 4, 1, 1, 2, 1},  // 1x1 with pad: the border outputs see only padding
    {1, 2, 4, 6, 3, 1, 1, 2, 0},  //
    {2, 2, 4, 5, 3, 3, 3, 1, 1},  //
    {2, 2, 7, 6, 3, 3, 2, 2, 1, 1, 0},  // rows and columns differ in taps, stride and pad
};

// Offsets into the test's buffers of the logical NCHW element (n, c, h, w) of a channels-last tensor, and
// of the logical (k, c, r, s) element of an NHWC-format filter, stored (K, R, S, C).
size_t at_nhwc(int channels, int rows, int cols, int n, int c, int h, int w) {
  return (((size_t)n * rows + h) * cols + w) * channels + c;
}
size_t at_x(const Shape& sh, int n, int c, int h, int w) { return at_nhwc(sh.c, sh.h, sh.w, n, c, h, w); }
size_t at_y(const Shape& sh, int n, int k, int h, int w) { return at_nhwc(sh.k, sh.ho(), sh.wo(), n, k, h, w); }
size_t at_w(const Shape& sh, int k, int c, int r, int s) { return (((size_t)k * sh.r + r) * sh.s + s) * sh.c + c; }

// ---- the direct formulas, in double, over channels-last buffers of doubles

// y[n, k, oh, ow] = sum_{c, r, s} x[n, c, oh * u - pad_h + r, ow * v - pad_w + s] * w[k, c, r, s]
std::vector<double> ref_forward(const Shape& sh, const std::vector<double>& x, const std::vector<double>& w) {
  std::vector<double> y(sh.y_count());  // (N, Ho, Wo, K)
  for (int n = 0; n < sh.n; ++n)
    for (int k = 0; k < sh.k; ++k)
      for (int oh = 0; oh < sh.ho(); ++oh)
        for (int ow = 0; ow < sh.wo(); ++ow) {
          double sum = 0;
          for (int c = 0; c < sh.c; ++c)
            for (int r = 0; r < sh.r; ++r)
              for (int s = 0; s < sh.s; ++s) {
                const int ih = oh * sh.u() - sh.ph() + r, iw = ow * sh.v() - sh.pw() + s;
                if (ih >= 0 && ih < sh.h && iw >= 0 && iw < sh.w)
                  sum += x[at_x(sh, n, c, ih, iw)] * w[at_w(sh, k, c, r, s)];
              }
          y[at_y(sh, n, k, oh, ow)] = sum;
        }
  return y;
}

// dx[n, c, ih, iw] = sum over the (k, r, s) and output pixels (oh, ow) with oh * u - pad_h + r == ih and
// ow * v - pad_w + s == iw of dy[n, k, oh, ow] * w[k, c, r, s]: solved for (oh, ow) per pixel.
std::vector<double> ref_backward_data(const Shape& sh, const std::vector<double>& dy, const std::vector<double>& w) {
  std::vector<double> dx(sh.x_count());  // (N, H, W, C)
  for (int n = 0; n < sh.n; ++n)
    for (int c = 0; c < sh.c; ++c)
      for (int ih = 0; ih < sh.h; ++ih)
        for (int iw = 0; iw < sh.w; ++iw) {
          double sum = 0;
          for (int k = 0; k < sh.k; ++k)
            for (int r = 0; r < sh.r; ++r)
              for (int s = 0; s < sh.s; ++s) {
                const int th = ih + sh.ph() - r, tw = iw + sh.pw() - s;  // = oh * u, ow * v
                if (th < 0 || tw < 0 || th % sh.u() || tw % sh.v()) continue;
                const int oh = th / sh.u(), ow = tw / sh.v();
                if (oh < sh.ho() && ow < sh.wo()) sum += dy[at_y(sh, n, k, oh, ow)] * w[at_w(sh, k, c, r, s)];
              }
          dx[at_x(sh, n, c, ih, iw)] = sum;
        }
  return dx;
}

// dw[k, c, r, s] = sum_{n, oh, ow} x[n, c, oh * u - pad_h + r, ow * v - pad_w + s] * dy[n, k, oh, ow]
std::vector<double> ref_backward_filter(const Shape& sh, const std::vector<double>& x, const std::vector<double>& dy) {
  std::vector<double> dw(sh.w_count());  // (K, R, S, C)
  for (int k = 0; k < sh.k; ++k)
    for (int c = 0; c < sh.c; ++c)
      for (int r = 0; r < sh.r; ++r)
        for (int s = 0; s < sh.s; ++s) {
          double sum = 0;
          for (int n = 0; n < sh.n; ++n)
            for (int oh = 0; oh < sh.ho(); ++oh)
              for (int ow = 0; ow < sh.wo(); ++ow) {
                const int ih = oh * sh.u() - sh.ph() + r, iw = ow * sh.v() - sh.pw() + s;
                if (ih >= 0 && ih < sh.h && iw >= 0 && iw < sh.w)
                  sum += x[at_x(sh, n, c, ih, iw)] * dy[at_y(sh, n, k, oh, ow)];
              }
          dw[at_w(sh, k, c, r, s)] = sum;
        }
  return dw;
}

// ---- data

std::vector<float> random_floats(size_t count, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(count);
  for (float& f : v) f = dist(gen);
  return v;
}
std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16_rn(v[i]);
  return out;
}
std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<double> to_double(const std::vector<__nv_bfloat16>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}
double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// ---- descriptors and calls, the way src/cuda/convolution.cpp makes them

struct Descs {
  cudnnHandle_t handle = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;  // the first failure while building them

  Descs(const Shape& sh, cudnnDataType_t type, cudnnTensorFormat_t format = CUDNN_TENSOR_NHWC,
        cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION) {
    auto keep = [this](cudnnStatus_t st) {
      if (status == CUDNN_STATUS_SUCCESS) status = st;
    };
    keep(cudnnCreate(&handle));
    keep(cudnnCreateTensorDescriptor(&x));
    keep(cudnnSetTensor4dDescriptor(x, format, type, sh.n, sh.c, sh.h, sh.w));
    keep(cudnnCreateFilterDescriptor(&w));
    keep(cudnnSetFilter4dDescriptor(w, type, format, sh.k, sh.c, sh.r, sh.s));
    keep(cudnnCreateConvolutionDescriptor(&conv));
    keep(cudnnSetConvolution2dDescriptor(conv, sh.ph(), sh.pw(), sh.u(), sh.v(), 1, 1, mode, CUDNN_DATA_FLOAT));
    keep(cudnnSetConvolutionMathType(conv, type == CUDNN_DATA_FLOAT ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    keep(cudnnCreateTensorDescriptor(&y));
    keep(cudnnSetTensor4dDescriptor(y, format, type, sh.n, sh.k, sh.ho(), sh.wo()));
  }
  ~Descs() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
    if (handle) cudnnDestroy(handle);
  }
};

const float kOne = 1.f, kZero = 0.f;

// Each pass, run with algorithm `algo` and exactly the workspace it asks for. The output starts as NaN
// (0xFF bytes), which beta = 0 must ignore.
template <class T>
cudnnStatus_t forward(const Descs& d, int algo, const std::vector<T>& x, const std::vector<T>& w, std::vector<T>& y) {
  size_t bytes = 0;
  if (cudnnStatus_t st = cudnnGetConvolutionForwardWorkspaceSize(d.handle, d.x, d.w, d.conv, d.y,
                                                                 (cudnnConvolutionFwdAlgo_t)algo, &bytes))
    return st;
  std::vector<unsigned char> ws(bytes);  // (bytes) workspace
  std::memset(y.data(), 0xFF, y.size() * sizeof(T));
  return finished(cudnnConvolutionForward(d.handle, &kOne, d.x, x.data(), d.w, w.data(), d.conv, (cudnnConvolutionFwdAlgo_t)algo,
                                 ws.data(), bytes, &kZero, d.y, y.data()));
}
template <class T>
cudnnStatus_t backward_data(const Descs& d, int algo, const std::vector<T>& dy, const std::vector<T>& w,
                            std::vector<T>& dx) {
  size_t bytes = 0;
  if (cudnnStatus_t st = cudnnGetConvolutionBackwardDataWorkspaceSize(d.handle, d.w, d.y, d.conv, d.x,
                                                                      (cudnnConvolutionBwdDataAlgo_t)algo, &bytes))
    return st;
  std::vector<unsigned char> ws(bytes);  // (bytes) workspace
  std::memset(dx.data(), 0xFF, dx.size() * sizeof(T));
  return finished(cudnnConvolutionBackwardData(d.handle, &kOne, d.w, w.data(), d.y, dy.data(), d.conv,
                                      (cudnnConvolutionBwdDataAlgo_t)algo, ws.data(), bytes, &kZero, d.x, dx.data()));
}
template <class T>
cudnnStatus_t backward_filter(const Descs& d, int algo, const std::vector<T>& x, const std::vector<T>& dy,
                              std::vector<T>& dw) {
  size_t bytes = 0;
  if (cudnnStatus_t st = cudnnGetConvolutionBackwardFilterWorkspaceSize(d.handle, d.x, d.y, d.conv, d.w,
                                                                        (cudnnConvolutionBwdFilterAlgo_t)algo, &bytes))
    return st;
  std::vector<unsigned char> ws(bytes);  // (bytes) workspace
  std::memset(dw.data(), 0xFF, dw.size() * sizeof(T));
  return finished(cudnnConvolutionBackwardFilter(d.handle, &kOne, d.x, x.data(), d.y, dy.data(), d.conv,
                                        (cudnnConvolutionBwdFilterAlgo_t)algo, ws.data(), bytes, &kZero, d.w,
                                        dw.data()));
}

// fp32: the fake rounds a double sum once, so it is within a few ulps of the double reference.
void expect_close_f32(const std::vector<float>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-6 * (1 + std::fabs(want[i]))) << what << " element " << i;
}

std::string name(const Shape& sh) {
  return "N=" + std::to_string(sh.n) + " C=" + std::to_string(sh.c) + " " + std::to_string(sh.h) + "x" +
         std::to_string(sh.w) + " K=" + std::to_string(sh.k) + " " + std::to_string(sh.r) + "x" +
         std::to_string(sh.s) + " stride=" + std::to_string(sh.u()) + "," + std::to_string(sh.v()) +
         " pad=" + std::to_string(sh.ph()) + "," + std::to_string(sh.pw());
}

// Runs `pass(algo, out)` for every algorithm number below `count`: each one the fake has (not NOT_SUPPORTED) must
// succeed and match `want`, and at least two must exist, so the algorithm bookkeeping is exercised too.
template <class Pass>
void expect_every_algorithm(const Shape& sh, int count, size_t out_count, const std::vector<double>& want,
                            const char* what, Pass&& pass) {
  int ran = 0;
  for (int a = 0; a < count; ++a) {
    std::vector<float> out(out_count);
    const cudnnStatus_t st = pass(a, out);
    if (st == CUDNN_STATUS_NOT_SUPPORTED) continue;
    ASSERT_EQ(st, CUDNN_STATUS_SUCCESS) << name(sh) << " " << what << " algo " << a;
    expect_close_f32(out, want, name(sh) + " " + what + " algo " + std::to_string(a));
    ++ran;
  }
  EXPECT_GE(ran, 2) << name(sh) << " " << what;
}

TEST(EmulatedCudnn, ForwardMatchesTheDirectFormula) {
  for (const Shape& sh : kShapes) {
    Descs d(sh, CUDNN_DATA_FLOAT);
    CUDNN_OK(d.status);
    const std::vector<float> x = random_floats(sh.x_count(), 1), w = random_floats(sh.w_count(), 2);
    expect_every_algorithm(sh, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, sh.y_count(),
                           ref_forward(sh, to_double(x), to_double(w)), "forward",
                           [&](int a, std::vector<float>& y) { return forward(d, a, x, w, y); });
  }
}

TEST(EmulatedCudnn, BackwardDataMatchesTheDirectFormula) {
  for (const Shape& sh : kShapes) {
    Descs d(sh, CUDNN_DATA_FLOAT);
    CUDNN_OK(d.status);
    const std::vector<float> dy = random_floats(sh.y_count(), 3), w = random_floats(sh.w_count(), 4);
    expect_every_algorithm(sh, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, sh.x_count(),
                           ref_backward_data(sh, to_double(dy), to_double(w)), "backward_data",
                           [&](int a, std::vector<float>& dx) { return backward_data(d, a, dy, w, dx); });
  }
}

TEST(EmulatedCudnn, BackwardFilterMatchesTheDirectFormula) {
  for (const Shape& sh : kShapes) {
    Descs d(sh, CUDNN_DATA_FLOAT);
    CUDNN_OK(d.status);
    const std::vector<float> x = random_floats(sh.x_count(), 5), dy = random_floats(sh.y_count(), 6);
    expect_every_algorithm(sh, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, sh.w_count(),
                           ref_backward_filter(sh, to_double(x), to_double(dy)), "backward_filter",
                           [&](int a, std::vector<float>& dw) { return backward_filter(d, a, x, dy, dw); });
  }
}

// bf16 data: the products of bf16 values are exact in double, so each output is the exact sum rounded once
// to bf16: within half a bf16 ulp (8 significant bits: at most 2^-8 of its magnitude) of the reference.
TEST(EmulatedCudnn, Bf16PassesRoundTheExactSumOnce) {
  const Shape sh{2, 3, 6, 7, 2, 3, 3, 2, 1};
  Descs d(sh, CUDNN_DATA_BFLOAT16);
  CUDNN_OK(d.status);
  const auto x = to_bf16(random_floats(sh.x_count(), 7)), w = to_bf16(random_floats(sh.w_count(), 8)),
             dy = to_bf16(random_floats(sh.y_count(), 9));
  auto check = [](const std::vector<__nv_bfloat16>& got, const std::vector<double>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_LE(std::fabs(__bfloat162float(got[i]) - want[i]), std::ldexp(std::fabs(want[i]), -8))
          << what << " element " << i << ": " << __bfloat162float(got[i]) << " vs " << want[i];
  };
  std::vector<__nv_bfloat16> y(sh.y_count()), dx(sh.x_count()), dw(sh.w_count());
  CUDNN_OK(forward(d, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, x, w, y));
  check(y, ref_forward(sh, to_double(x), to_double(w)), "forward");
  CUDNN_OK(backward_data(d, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, dy, w, dx));
  check(dx, ref_backward_data(sh, to_double(dy), to_double(w)), "backward_data");
  CUDNN_OK(backward_filter(d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, x, dy, dw));
  check(dw, ref_backward_filter(sh, to_double(x), to_double(dy)), "backward_filter");
}

// One rounding, not two: x = (1, 2^-8, 2^-30) and w = (1, 1, 1) (all exact in bf16) give the exact sum
// 1 + 2^-8 + 2^-30, just above the midpoint of the bf16 neighbours 1 and 1 + 2^-7, so it rounds up. Rounding
// to float first would land on the midpoint 1 + 2^-8 and then round to even, down to 1.
TEST(EmulatedCudnn, Bf16OutputIsRoundedOnceFromTheExactSum) {
  const Shape sh{1, 3, 1, 1, 1, 1, 1, 1, 0};
  Descs d(sh, CUDNN_DATA_BFLOAT16);
  CUDNN_OK(d.status);
  const std::vector<__nv_bfloat16> x = to_bf16({1.f, std::ldexp(1.f, -8), std::ldexp(1.f, -30)}),
                                   w = to_bf16({1.f, 1.f, 1.f});
  std::vector<__nv_bfloat16> y(1);
  CUDNN_OK(forward(d, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, x, w, y));
  EXPECT_EQ(__bfloat162float(y[0]), 1.f + std::ldexp(1.f, -7));
}

// <conv(x, w), dy> == <x, backward_data(dy, w)> == <w, backward_filter(x, dy)>: all three are the same sum
// of x * w * dy products, so the backward passes are the adjoints of the forward one.
TEST(EmulatedCudnn, BackwardPassesAreTheAdjointsOfForward) {
  for (const Shape& sh : kShapes) {
    Descs d(sh, CUDNN_DATA_FLOAT);
    CUDNN_OK(d.status);
    const std::vector<float> x = random_floats(sh.x_count(), 10), w = random_floats(sh.w_count(), 11),
                             dy = random_floats(sh.y_count(), 12);
    std::vector<float> y(sh.y_count()), dx(sh.x_count()), dw(sh.w_count());
    CUDNN_OK(forward(d, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, x, w, y));
    CUDNN_OK(backward_data(d, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, dy, w, dx));
    CUDNN_OK(backward_filter(d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, x, dy, dw));
    const double a = dot(to_double(y), to_double(dy)), b = dot(to_double(x), to_double(dx)),
                 c = dot(to_double(w), to_double(dw));
    const double tol = 1e-5 * (1 + std::fabs(a));
    EXPECT_NEAR(a, b, tol) << name(sh);
    EXPECT_NEAR(a, c, tol) << name(sh);
  }
}

TEST(EmulatedCudnn, AlphaScalesAndBetaBlends) {
  const Shape sh = kShapes[1];
  Descs d(sh, CUDNN_DATA_FLOAT);
  CUDNN_OK(d.status);
  const std::vector<float> x = random_floats(sh.x_count(), 13), w = random_floats(sh.w_count(), 14),
                           y0 = random_floats(sh.y_count(), 15);
  const std::vector<double> conv = ref_forward(sh, to_double(x), to_double(w));
  std::vector<float> y = y0;
  const float alpha = 2.f, beta = 0.5f;
  CUDNN_OK(finished(cudnnConvolutionForward(d.handle, &alpha, d.x, x.data(), d.w, w.data(), d.conv,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &beta, d.y, y.data())));
  std::vector<double> want(conv.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = alpha * conv[i] + beta * y0[i];
  expect_close_f32(y, want, "alpha 2, beta 0.5");
}

// The NCHW format describes the same logical tensors with other strides; the convolution mode applies the
// filter mirrored. Both against the NHWC cross-correlation on rearranged data.
TEST(EmulatedCudnn, NchwFormatAndConvolutionModeAreHonoured) {
  const Shape sh = kShapes[1];
  const std::vector<float> x = random_floats(sh.x_count(), 16), w = random_floats(sh.w_count(), 17);
  const std::vector<double> want = ref_forward(sh, to_double(x), to_double(w));

  std::vector<float> x_nchw(x.size()), w_kcrs(w.size());
  for (int n = 0; n < sh.n; ++n)
    for (int c = 0; c < sh.c; ++c)
      for (int h = 0; h < sh.h; ++h)
        for (int v = 0; v < sh.w; ++v) x_nchw[(((size_t)n * sh.c + c) * sh.h + h) * sh.w + v] = x[at_x(sh, n, c, h, v)];
  for (int k = 0; k < sh.k; ++k)
    for (int c = 0; c < sh.c; ++c)
      for (int r = 0; r < sh.r; ++r)
        for (int s = 0; s < sh.s; ++s) w_kcrs[(((size_t)k * sh.c + c) * sh.r + r) * sh.s + s] = w[at_w(sh, k, c, r, s)];
  Descs nchw(sh, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW);
  CUDNN_OK(nchw.status);
  std::vector<float> y_nchw(sh.y_count()), y(sh.y_count());
  CUDNN_OK(forward(nchw, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, x_nchw, w_kcrs, y_nchw));
  for (int n = 0; n < sh.n; ++n)
    for (int k = 0; k < sh.k; ++k)
      for (int h = 0; h < sh.ho(); ++h)
        for (int v = 0; v < sh.wo(); ++v)
          y[at_y(sh, n, k, h, v)] = y_nchw[(((size_t)n * sh.k + k) * sh.ho() + h) * sh.wo() + v];
  expect_close_f32(y, want, "NCHW");

  std::vector<float> w_flipped(w.size());
  for (int k = 0; k < sh.k; ++k)
    for (int c = 0; c < sh.c; ++c)
      for (int r = 0; r < sh.r; ++r)
        for (int s = 0; s < sh.s; ++s) w_flipped[at_w(sh, k, c, sh.r - 1 - r, sh.s - 1 - s)] = w[at_w(sh, k, c, r, s)];
  Descs mirrored(sh, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, CUDNN_CONVOLUTION);
  CUDNN_OK(mirrored.status);
  CUDNN_OK(forward(mirrored, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, x, w_flipped, y));
  expect_close_f32(y, want, "CUDNN_CONVOLUTION with the flipped filter");
}

TEST(EmulatedCudnn, OutputDimFollowsTheDocumentedFormula) {
  cudnnTensorDescriptor_t x;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  CUDNN_OK(cudnnCreateTensorDescriptor(&x));
  CUDNN_OK(cudnnCreateFilterDescriptor(&w));
  CUDNN_OK(cudnnCreateConvolutionDescriptor(&conv));
  CUDNN_OK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 3, 7, 10));
  CUDNN_OK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 5, 3, 3, 2));
  // h: 1 + (7 + 2*1 - ((3-1)*2 + 1)) / 2 = 3;  w: 1 + (10 + 2*0 - ((2-1)*1 + 1)) / 3 = 3
  CUDNN_OK(cudnnSetConvolution2dDescriptor(conv, 1, 0, 2, 3, 2, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  int n = 0, c = 0, h = 0, v = 0;
  CUDNN_OK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &v));
  EXPECT_EQ(n, 2);
  EXPECT_EQ(c, 5);
  EXPECT_EQ(h, 3);
  EXPECT_EQ(v, 3);
  // a filter whose channels are not the input's
  CUDNN_OK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 5, 4, 3, 2));
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &v), CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(x);
  cudnnDestroyFilterDescriptor(w);
  cudnnDestroyConvolutionDescriptor(conv);
}

// Each pass's fastest deterministic algorithm needs a workspace; one byte less, or none, is refused, and
// the bytes it is given are overwritten (the caller's workspace is scratch, not storage).
TEST(EmulatedCudnn, WorkspaceTooSmallIsRefused) {
  const Shape sh = kShapes[1];
  Descs d(sh, CUDNN_DATA_FLOAT);
  CUDNN_OK(d.status);
  const std::vector<float> x = random_floats(sh.x_count(), 18), w = random_floats(sh.w_count(), 19),
                           dy = random_floats(sh.y_count(), 20);
  std::vector<float> y(sh.y_count()), dx(sh.x_count()), dw(sh.w_count());

  size_t fwd = 0, bwd_data = 0, bwd_filter = 0;
  CUDNN_OK(cudnnGetConvolutionForwardWorkspaceSize(d.handle, d.x, d.w, d.conv, d.y,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, &fwd));
  CUDNN_OK(cudnnGetConvolutionBackwardDataWorkspaceSize(d.handle, d.w, d.y, d.conv, d.x,
                                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &bwd_data));
  CUDNN_OK(cudnnGetConvolutionBackwardFilterWorkspaceSize(d.handle, d.x, d.y, d.conv, d.w,
                                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, &bwd_filter));
  ASSERT_GT(fwd, 0u);
  ASSERT_GT(bwd_data, 0u);
  ASSERT_GT(bwd_filter, 0u);
  std::vector<unsigned char> ws(std::max({fwd, bwd_data, bwd_filter}), 0);  // (bytes) workspace

  EXPECT_EQ(finished(cudnnConvolutionForward(d.handle, &kOne, d.x, x.data(), d.w, w.data(), d.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws.data(), fwd - 1, &kZero, d.y,
                                    y.data())),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(finished(cudnnConvolutionForward(d.handle, &kOne, d.x, x.data(), d.w, w.data(), d.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, nullptr, fwd, &kZero, d.y,
                                    y.data())),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(finished(cudnnConvolutionBackwardData(d.handle, &kOne, d.w, w.data(), d.y, dy.data(), d.conv,
                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws.data(), bwd_data - 1, &kZero, d.x,
                                         dx.data())),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(finished(cudnnConvolutionBackwardFilter(d.handle, &kOne, d.x, x.data(), d.y, dy.data(), d.conv,
                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws.data(), bwd_filter - 1, &kZero,
                                           d.w, dw.data())),
            CUDNN_STATUS_BAD_PARAM);

  // exactly enough: runs, and the workspace has been used
  CUDNN_OK(finished(cudnnConvolutionForward(d.handle, &kOne, d.x, x.data(), d.w, w.data(), d.conv,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws.data(), fwd, &kZero, d.y,
                                   y.data())));
  EXPECT_EQ(ws[0], 0xFF);
  EXPECT_EQ(ws[fwd - 1], 0xFF);

  // an algorithm the fake does not have, and a value that is no algorithm
  size_t bytes = 0;
  EXPECT_EQ(cudnnGetConvolutionForwardWorkspaceSize(d.handle, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_FFT,
                                                    &bytes),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(finished(cudnnConvolutionForward(d.handle, &kOne, d.x, x.data(), d.w, w.data(), d.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, ws.data(), ws.size(), &kZero, d.y, y.data())),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cudnnGetConvolutionForwardWorkspaceSize(d.handle, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                    &bytes),
            CUDNN_STATUS_BAD_PARAM);
}

TEST(EmulatedCudnn, InconsistentDescriptorsAreRefused) {
  const Shape sh = kShapes[1];
  Descs d(sh, CUDNN_DATA_FLOAT);
  CUDNN_OK(d.status);
  const std::vector<float> x = random_floats(sh.x_count() * 2, 21), w = random_floats(sh.w_count() * 2, 22);
  std::vector<float> y(sh.y_count() * 2);
  auto run = [&](cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd, cudnnTensorDescriptor_t yd) {
    return finished(cudnnConvolutionForward(d.handle, &kOne, xd, x.data(), wd, w.data(), d.conv,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &kZero, yd, y.data()));
  };
  ASSERT_EQ(run(d.x, d.w, d.y), CUDNN_STATUS_SUCCESS);

  cudnnFilterDescriptor_t w_other;
  cudnnTensorDescriptor_t t_other;
  CUDNN_OK(cudnnCreateFilterDescriptor(&w_other));
  CUDNN_OK(cudnnCreateTensorDescriptor(&t_other));
  // the filter's input channels are not x's
  CUDNN_OK(cudnnSetFilter4dDescriptor(w_other, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, sh.k, sh.c + 1, sh.r, sh.s));
  EXPECT_EQ(run(d.x, w_other, d.y), CUDNN_STATUS_BAD_PARAM);
  // another data type
  CUDNN_OK(cudnnSetFilter4dDescriptor(w_other, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, sh.k, sh.c, sh.r, sh.s));
  EXPECT_EQ(run(d.x, w_other, d.y), CUDNN_STATUS_BAD_PARAM);
  // y one row short, then with the wrong channel count, then from another batch size
  CUDNN_OK(cudnnSetTensor4dDescriptor(t_other, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, sh.n, sh.k, sh.ho() - 1, sh.wo()));
  EXPECT_EQ(run(d.x, d.w, t_other), CUDNN_STATUS_BAD_PARAM);
  CUDNN_OK(cudnnSetTensor4dDescriptor(t_other, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, sh.n, sh.k + 1, sh.ho(), sh.wo()));
  EXPECT_EQ(run(d.x, d.w, t_other), CUDNN_STATUS_BAD_PARAM);
  CUDNN_OK(cudnnSetTensor4dDescriptor(t_other, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, sh.n + 1, sh.k, sh.ho(), sh.wo()));
  EXPECT_EQ(run(d.x, d.w, t_other), CUDNN_STATUS_BAD_PARAM);
  // the backward passes check the same consistency (dy as y, dx as x)
  std::vector<float> dx(sh.x_count());
  EXPECT_EQ(finished(cudnnConvolutionBackwardData(d.handle, &kOne, d.w, w.data(), t_other, y.data(), d.conv,
                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &kZero, d.x, dx.data())),
            CUDNN_STATUS_BAD_PARAM);
  // a descriptor created but never set
  cudnnTensorDescriptor_t unset;
  CUDNN_OK(cudnnCreateTensorDescriptor(&unset));
  EXPECT_EQ(run(unset, d.w, d.y), CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(unset);
  cudnnDestroyTensorDescriptor(t_other);
  cudnnDestroyFilterDescriptor(w_other);

  // descriptor arguments cuDNN documents as bad
  cudnnTensorDescriptor_t t;
  cudnnConvolutionDescriptor_t c;
  CUDNN_OK(cudnnCreateTensorDescriptor(&t));
  CUDNN_OK(cudnnCreateConvolutionDescriptor(&c));
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, -2, 3, 3), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(c, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(c, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  cudnnDestroyTensorDescriptor(t);
  cudnnDestroyConvolutionDescriptor(c);
}

// The search reports every algorithm of the pass: the ones that ran first, by time, with at least two
// deterministic ones and one that needs a workspace; those whose workspace did not fit as ALLOC_FAILED; the
// rest as NOT_SUPPORTED. It leaves garbage (NaN) in the output.
TEST(EmulatedCudnn, FindReportsCandidatesAndScribblesOverTheOutput) {
  const Shape sh = kShapes[1];
  Descs d(sh, CUDNN_DATA_FLOAT);
  CUDNN_OK(d.status);
  const std::vector<float> x = random_floats(sh.x_count(), 23), w = random_floats(sh.w_count(), 24),
                           dy = random_floats(sh.y_count(), 25);
  std::vector<float> y(sh.y_count(), 0.f), dx(sh.x_count(), 0.f), dw(sh.w_count(), 0.f);
  std::vector<unsigned char> big(size_t(64) << 20);  // (64 MiB) workspace: enough for every candidate here

  auto check = [](const auto* perf, int returned, int max_count, const char* what) {
    EXPECT_EQ(returned, max_count) << what;
    int ok = 0, deterministic = 0, with_workspace = 0;
    float last = -1.f;
    bool failed_seen = false;
    for (int i = 0; i < returned; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) {
        failed_seen = true;
        continue;
      }
      EXPECT_FALSE(failed_seen) << what << ": a successful candidate after a failed one";
      EXPECT_GE(perf[i].time, last) << what << ": not sorted by time";
      last = perf[i].time;
      EXPECT_EQ(perf[i].mathType, CUDNN_FMA_MATH) << what;
      ++ok;
      if (perf[i].determinism == CUDNN_DETERMINISTIC) ++deterministic;
      if (perf[i].memory > 0) ++with_workspace;
    }
    EXPECT_GE(ok, 2) << what;
    EXPECT_GE(deterministic, 2) << what;
    EXPECT_GE(with_workspace, 1) << what;
  };
  int max_count = 0, returned = 0;
  {
    CUDNN_OK(cudnnGetConvolutionForwardAlgorithmMaxCount(d.handle, &max_count));
    EXPECT_EQ(max_count, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(max_count);
    CUDNN_OK(cudnnFindConvolutionForwardAlgorithmEx(d.handle, d.x, x.data(), d.w, w.data(), d.conv, d.y, y.data(),
                                                    max_count, &returned, perf.data(), big.data(), big.size()));
    check(perf.data(), returned, max_count, "forward");
    EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y.back()));
  }
  {
    CUDNN_OK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(d.handle, &max_count));
    EXPECT_EQ(max_count, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(max_count);
    CUDNN_OK(cudnnFindConvolutionBackwardDataAlgorithmEx(d.handle, d.w, w.data(), d.y, dy.data(), d.conv, d.x,
                                                         dx.data(), max_count, &returned, perf.data(), big.data(),
                                                         big.size()));
    check(perf.data(), returned, max_count, "backward_data");
    EXPECT_TRUE(std::isnan(dx[0]) && std::isnan(dx.back()));
  }
  {
    CUDNN_OK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(d.handle, &max_count));
    EXPECT_EQ(max_count, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(max_count);
    CUDNN_OK(cudnnFindConvolutionBackwardFilterAlgorithmEx(d.handle, d.x, x.data(), d.y, dy.data(), d.conv, d.w,
                                                           dw.data(), max_count, &returned, perf.data(), big.data(),
                                                           big.size()));
    check(perf.data(), returned, max_count, "backward_filter");
    EXPECT_TRUE(std::isnan(dw[0]) && std::isnan(dw.back()));

    // No workspace at all: only ALGO_0 (none needed) runs; the others that exist here report ALLOC_FAILED.
    // Fewer results asked for: that many come back.
    CUDNN_OK(cudnnFindConvolutionBackwardFilterAlgorithmEx(d.handle, d.x, x.data(), d.y, dy.data(), d.conv, d.w,
                                                           dw.data(), 3, &returned, perf.data(), nullptr, 0));
    ASSERT_EQ(returned, 3);
    EXPECT_EQ(perf[0].algo, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
    EXPECT_EQ(perf[0].status, CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(perf[0].memory, 0u);
    EXPECT_EQ(perf[1].status, CUDNN_STATUS_ALLOC_FAILED);
    EXPECT_EQ(perf[2].status, CUDNN_STATUS_ALLOC_FAILED);
  }
}

TEST(EmulatedCudnn, ErrorStringsAreCudnnsNames) {
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_SUCCESS), "CUDNN_STATUS_SUCCESS");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED), "CUDNN_STATUS_NOT_SUPPORTED");
  EXPECT_EQ((int)CUDNN_STATUS_BAD_PARAM, 2000);
  EXPECT_EQ((int)CUDNN_STATUS_NOT_SUPPORTED, 3000);
  EXPECT_EQ((int)CUDNN_DATA_BFLOAT16, 9);
  EXPECT_EQ((int)CUDNN_TENSOR_NHWC, 1);
}

}  // namespace
