// The channels-last leaf ops (kernels/nhwc_ops.cuh: pointwise_nhwc, linear_bias, pool_nhwc, layout_nhwc,
// weight_pack) against their CPU twins (include/moco/cpu_ops.h, NCHW; layouts converted on the host) or, for
// casts, layouts and weight packing, against the plain host permutation / conversion. Every output is
// poisoned with NaN before the kernel runs. bf16 inputs are rounded on the host, and where the kernel's fp32
// result is the CPU's fp32 result rounded once, the host rounds the CPU result the same way and the
// comparison is exact; only true reductions (bias gradient, average pool) carry a tolerance, stated there.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "gpu_test.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"
#include "nhwc_ops.cuh"
#include "nhwc_test_util.h"

using namespace moco;
using cuda::DeviceBuffer;
using nhwc_test::DevTensor;
using nhwc_test::round_to;
using nhwc_test::rounded;
using nhwc_test::same_value;
using nhwc_test::to_nchw;
using nhwc_test::to_nhwc;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Lengths around the vector widths (4 floats, 8 bf16) and a long one for the grid-stride loop.
const int64_t kLengths[] = {1, 7, 8, 9, 1027, 262144 + 13};

// Normal values with a few exact zeros and NaNs, as T holds them.
template <class T>
std::vector<float> pointwise_input(int64_t n, uint64_t stream) {
  std::vector<float> v = nhwc_test::normal_floats(n, stream);
  for (int64_t i = 0; i < n; i += 97) v[i] = 0.f;
  for (int64_t i = 5; i < n; i += 389) v[i] = kNaN;
  return rounded<T>(v);
}

template <class T>
void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(same_value(got[i], want[i])) << what << " at " << i << ": got " << got[i] << ", want " << want[i];
}

// ReLU forward / backward and add, out of place and in place, aligned and not (skip = 1 element).
template <class T>
void check_pointwise() {
  for (int64_t n : kLengths)
    for (size_t skip : {0, 1}) {
      const std::string what = std::string(nhwc_test::type_name<T>()) + " n=" + std::to_string(n) +
                               (skip ? " unaligned" : "");
      const auto a = pointwise_input<T>(n, 1), b = pointwise_input<T>(n, 2);
      std::vector<float> relu_ref(n), drelu_ref(n), add_ref(n);
      cpu::relu_forward<float>(n, a.data(), relu_ref.data());
      cpu::relu_backward<float>(n, relu_ref.data(), b.data(), drelu_ref.data());
      cpu::add_forward<float>(n, a.data(), b.data(), add_ref.data());
      add_ref = rounded<T>(add_ref);  // the fp32 sum rounded once, as the kernel stores it

      DevTensor<T> da(a, "a", skip), db(b, "b", skip), dy(n, "y", skip), dr(relu_ref, "relu output", skip);
      dy.poison();
      kernels::relu_forward<T>(n, da.get(), dy.get(), nullptr);
      expect_same<T>(dy.download(), relu_ref, what + " relu_forward");
      dy.poison();
      kernels::relu_backward<T>(n, dr.get(), db.get(), dy.get(), nullptr);
      expect_same<T>(dy.download(), drelu_ref, what + " relu_backward");
      dy.poison();
      kernels::add_forward<T>(n, da.get(), db.get(), dy.get(), nullptr);
      expect_same<T>(dy.download(), add_ref, what + " add_forward");

      // in place: relu over x, relu_backward into dy, add into a
      DevTensor<T> x(a, "x", skip), g(b, "dy", skip), s(a, "a in place", skip);
      kernels::relu_forward<T>(n, x.get(), x.get(), nullptr);
      expect_same<T>(x.download(), relu_ref, what + " relu_forward in place");
      kernels::relu_backward<T>(n, dr.get(), g.get(), g.get(), nullptr);
      expect_same<T>(g.download(), drelu_ref, what + " relu_backward in place");
      kernels::add_forward<T>(n, s.get(), db.get(), s.get(), nullptr);
      expect_same<T>(s.download(), add_ref, what + " add_forward in place");
    }
}

TEST(GpuNhwcKernels, PointwiseMatchCpuExactly) {
  MOCO_REQUIRE_GPU();
  check_pointwise<float>();
  check_pointwise<__nv_bfloat16>();
}

template <class Src, class Dst>
void check_cast() {
  for (int64_t n : kLengths)
    for (size_t skip : {0, 1}) {
      std::vector<float> x = pointwise_input<Src>(n, 3);
      x[0] = std::numeric_limits<float>::infinity();
      DevTensor<Src> dx(x, "x", skip);
      DevTensor<Dst> dy(n, "y", skip);
      dy.poison();
      kernels::cast<Src, Dst>(n, dx.get(), dy.get(), nullptr);
      expect_same<Dst>(dy.download(), rounded<Dst>(x),
                       std::string("cast ") + nhwc_test::type_name<Src>() + " -> " + nhwc_test::type_name<Dst>() +
                           " n=" + std::to_string(n) + (skip ? " unaligned" : ""));
    }
}

TEST(GpuNhwcKernels, CastsRoundToNearestEven) {
  MOCO_REQUIRE_GPU();
  check_cast<float, float>();
  check_cast<float, __nv_bfloat16>();
  check_cast<__nv_bfloat16, float>();
  check_cast<__nv_bfloat16, __nv_bfloat16>();
}

// Bias forward against cpu::linear_forward with and without the bias (same GEMM, so y0 + b is the CPU's
// own float sum: exact); bias backward against cpu::linear_backward's db, accumulated onto non-zero db.
// Tolerance for db: the GPU sums each column in 8 fp32 lanes and a tree, the CPU sequentially in fp32, so
// both are within n * 2^-24 of the sum of |dy|; 1e-5 of that sum covers n <= 100 with room, while a missing
// or doubled row moves db by ~1/n of it.
template <class T>
void check_bias() {
  for (int64_t n : {1, 6, 37})
    for (int64_t o : {1, 17, 67, 130}) {
      const int64_t in = 5;
      const std::string what = std::string(nhwc_test::type_name<T>()) + " N=" + std::to_string(n) +
                               " O=" + std::to_string(o);
      const auto x = nhwc_test::normal_floats(n * in, 10), w = nhwc_test::normal_floats(o * in, 11);
      const auto b = nhwc_test::normal_floats(o, 12);
      std::vector<float> y0(n * o), y_ref(n * o);
      cpu::linear_forward<float>(n, in, o, x.data(), w.data(), nullptr, y0.data());
      y0 = rounded<T>(y0);  // what a T activation holds before the bias is added
      for (int64_t i = 0; i < n * o; ++i) y_ref[i] = round_to<T>(y0[i] + b[i % o]);
      DevTensor<T> y(y0, "y");
      DeviceBuffer<float> bias(b, "bias");
      kernels::bias_add_forward<T>(n, o, bias.get(), y.get(), nullptr);
      expect_same<T>(y.download(), y_ref, what + " bias_add_forward");

      const auto dy = rounded<T>(nhwc_test::normal_floats(n * o, 13));
      const auto db0 = nhwc_test::normal_floats(o, 14);
      std::vector<float> db_ref = db0, mag(o, 0.f);
      cpu::linear_backward<float>(n, in, o, x.data(), w.data(), dy.data(), nullptr, nullptr, db_ref.data());
      for (int64_t i = 0; i < n * o; ++i) mag[i % o] += std::fabs(dy[i]);
      DevTensor<T> ddy(dy, "dy");
      DeviceBuffer<float> db(db0, "db");
      kernels::bias_backward<T>(n, o, ddy.get(), db.get(), nullptr);
      const auto got = db.download();
      for (int64_t j = 0; j < o; ++j)
        ASSERT_NEAR(got[j], db_ref[j], 1e-5 * (std::fabs(db0[j]) + mag[j])) << what << " bias_backward " << j;
    }
}

TEST(GpuNhwcKernels, BiasMatchesLinearCpu) {
  MOCO_REQUIRE_GPU();
  check_bias<float>();
  check_bias<__nv_bfloat16>();
}

// Max-pool on few distinct levels (many ties in every window) with NaNs planted, two of them side by side
// in a row so that one window holds two NaNs (the CPU keeps the later one). Forward: y equals the CPU's
// exactly, and the argmax names the CPU's winner (the GPU keeps its place in the window, the CPU its position
// in the plane). Backward, from the CPU's argmax: the gather sums in the CPU's scatter order, so dx is exact
// too (in bf16 after the host rounds the CPU's fp32 sum once). A forward without an argmax gives the same y.
template <class T>
void check_maxpool(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t stream) {
  const cpu::PoolShape s{n, c, h, w, 3, 2, 1};
  const int64_t ho = s.ho(), wo = s.wo(), in_size = n * c * h * w, out_size = n * c * ho * wo;
  ASSERT_EQ(ho, (h - 1) / 2 + 1);
  Rng r(5, stream);
  std::vector<float> x(in_size);
  for (auto& v : x) v = (float)r.below(4) - 1.5f;  // levels -1.5, -0.5, 0.5, 1.5
  if (in_size > 8) {
    x[3] = kNaN;
    x[in_size / 2] = kNaN;
    x[in_size / 2 + 1] = kNaN;
  }
  std::vector<float> y_ref(out_size);
  std::vector<int64_t> arg_ref(out_size);
  cpu::maxpool_forward<float>(s, x.data(), y_ref.data(), arg_ref.data());

  // the CPU's winner (position iy * W + ix in its plane) as its place in output i's window, NCHW order
  std::vector<uint8_t> place_ref(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    const int64_t oy = (i / wo) % ho, ox = i % wo, iy = arg_ref[i] / w, ix = arg_ref[i] % w;
    ASSERT_TRUE(iy >= 2 * oy - 1 && iy <= 2 * oy + 1 && ix >= 2 * ox - 1 && ix <= 2 * ox + 1) << "CPU argmax " << i;
    place_ref[i] = (uint8_t)((iy - 2 * oy + 1) * 3 + (ix - 2 * ox + 1));
  }

  DevTensor<T> dx_in(to_nhwc(x, n, c, h * w), "x"), dy_out(out_size, "y");
  DeviceBuffer<uint8_t> arg((size_t)out_size, "argmax");
  dy_out.poison();
  arg.poison();
  kernels::maxpool3x3s2_forward<T>(n, h, w, c, dx_in.get(), dy_out.get(), arg.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " maxpool N=" + std::to_string(n) +
                           " C=" + std::to_string(c) + " " + std::to_string(h) + "x" + std::to_string(w);
  expect_same<T>(to_nchw(dy_out.download(), n, c, ho * wo), y_ref, what + " y");
  const auto got_arg = to_nchw(arg.download(), n, c, ho * wo);
  for (int64_t i = 0; i < out_size; ++i)
    ASSERT_EQ((int)got_arg[i], (int)place_ref[i]) << what << " argmax at NCHW index " << i;
  dy_out.poison();
  kernels::maxpool3x3s2_forward<T>(n, h, w, c, dx_in.get(), dy_out.get(), nullptr, nullptr);
  expect_same<T>(to_nchw(dy_out.download(), n, c, ho * wo), y_ref, what + " y without an argmax");

  const auto dy = rounded<T>(nhwc_test::normal_floats(out_size, stream + 1));
  std::vector<float> dx_ref(in_size);
  cpu::maxpool_backward<float>(s, arg_ref.data(), dy.data(), dx_ref.data());
  DeviceBuffer<uint8_t> darg(to_nhwc(place_ref, n, c, ho * wo), "argmax");
  DevTensor<T> ddy(to_nhwc(dy, n, c, ho * wo), "dy"), ddx(in_size, "dx");
  ddx.poison();
  kernels::maxpool3x3s2_backward<T>(n, h, w, c, darg.get(), ddy.get(), ddx.get(), nullptr);
  expect_same<T>(to_nchw(ddx.download(), n, c, h * w), rounded<T>(dx_ref), what + " dx");
}

TEST(GpuNhwcKernels, MaxPoolMatchesCpuWithTiesAndNaN) {
  MOCO_REQUIRE_GPU();
  uint64_t stream = 20;
  for (int64_t c : {3, 17})
    for (auto hw : {std::pair<int64_t, int64_t>{1, 1}, {2, 3}, {5, 7}, {8, 6}, {11, 12}}) {
      check_maxpool<float>(2, c, hw.first, hw.second, stream++);
      check_maxpool<__nv_bfloat16>(2, c, hw.first, hw.second, stream++);
    }
}

// A window whose entries are all equal takes the first in row-major order; a NaN anywhere wins.
TEST(GpuNhwcKernels, MaxPoolArgmaxConvention) {
  MOCO_REQUIRE_GPU();
  const int64_t h = 3, w = 3;  // one channel; outputs 2 x 2
  std::vector<float> x(9, 2.f);
  x[8] = kNaN;  // only the window of output (1, 1) holds it
  DeviceBuffer<float> dx(x, "x"), y(4, "y");
  DeviceBuffer<uint8_t> arg(4, "argmax");
  y.poison();
  arg.poison();
  kernels::maxpool3x3s2_forward<float>(1, h, w, 1, dx.get(), y.get(), arg.get(), nullptr);
  const std::vector<uint8_t> got = arg.download();
  const std::vector<float> gy = y.download();
  // the place in the window, (iy - 2 oy + 1) * 3 + (ix - 2 ox + 1): window (0,0) spans rows and cols -1..1,
  // so its first inside, (0,0), is place 4; (0,1) spans cols 1..3, its first (0,1) is place 3; (1,0) spans
  // rows 1..3, its first (1,0) is place 1; (1,1)'s NaN at (2,2) is place 4
  EXPECT_EQ(got[0], 4);
  EXPECT_EQ(got[1], 3);
  EXPECT_EQ(got[2], 1);
  EXPECT_EQ(got[3], 4);
  EXPECT_EQ(gy[0], 2.f);
  EXPECT_TRUE(std::isnan(gy[3]));
}

// Global average pool: forward sums HW values in fp32 lanes and a tree, the CPU in double, so the
// difference is within HW * 2^-24 of the mean of |x|; 1e-5 of it covers HW <= 300 with room. bf16 adds one
// rounding of the output (2^-9 relative, 2^-8 allowed). Backward is one fp32 division, as on the CPU: exact.
template <class T>
void check_avgpool(int64_t n, int64_t c, int64_t hw, uint64_t stream) {
  const auto x = rounded<T>(nhwc_test::normal_floats(n * c * hw, stream, 0.5));
  std::vector<float> y_ref(n * c), mag(n * c, 0.f);
  cpu::avgpool_forward<float>(n, c, hw, x.data(), y_ref.data());
  for (int64_t i = 0; i < n * c * hw; ++i) mag[i / hw] += std::fabs(x[i]) / (float)hw;
  DevTensor<T> dx_in(to_nhwc(x, n, c, hw), "x"), dy_out(n * c, "y");
  dy_out.poison();
  kernels::global_avgpool_forward<T>(n, hw, c, dx_in.get(), dy_out.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " avgpool N=" + std::to_string(n) +
                           " C=" + std::to_string(c) + " HW=" + std::to_string(hw);
  const double rel = nhwc_test::kIsBf16<T> ? 1.0 / 256 : 1e-5;
  const auto got = dy_out.download();  // (N, C) in both layouts
  for (int64_t i = 0; i < n * c; ++i) ASSERT_NEAR(got[i], y_ref[i], rel * mag[i]) << what << " y " << i;

  const auto dy = rounded<T>(nhwc_test::normal_floats(n * c, stream + 1));
  std::vector<float> dx_ref(n * c * hw);
  cpu::avgpool_backward<float>(n, c, hw, dy.data(), dx_ref.data());
  DevTensor<T> ddy(dy, "dy"), ddx(n * c * hw, "dx");
  ddx.poison();
  kernels::global_avgpool_backward<T>(n, hw, c, ddy.get(), ddx.get(), nullptr);
  expect_same<T>(to_nchw(ddx.download(), n, c, hw), rounded<T>(dx_ref), what + " dx");
}

TEST(GpuNhwcKernels, GlobalAvgPoolMatchesCpu) {
  MOCO_REQUIRE_GPU();
  uint64_t stream = 40;
  for (int64_t c : {3, 17, 67})
    for (int64_t hw : {1, 35, 49, 300}) {
      check_avgpool<float>(3, c, hw, stream++);
      check_avgpool<__nv_bfloat16>(3, c, hw, stream++);
    }
}

// Layout conversions against the host permutation: exact (fp32 -> bf16 rounds once, as the host does).
template <class T>
void check_layout(int64_t n, int64_t c, int64_t hw, uint64_t stream) {
  const auto x = nhwc_test::normal_floats(n * c * hw, stream);  // (N, C, HW) fp32
  DeviceBuffer<float> dx(x, "x nchw"), back((size_t)(n * c * hw), "back nchw");
  DevTensor<T> y(n * c * hw, "y nhwc");
  y.poison();
  back.poison();
  kernels::nchw_to_nhwc<T>(n, c, hw, dx.get(), y.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " N=" + std::to_string(n) +
                           " C=" + std::to_string(c) + " HW=" + std::to_string(hw);
  expect_same<T>(y.download(), rounded<T>(to_nhwc(x, n, c, hw)), what + " nchw_to_nhwc");
  kernels::nhwc_to_nchw<T>(n, c, hw, y.get(), back.get(), nullptr);
  expect_same<float>(back.download(), rounded<T>(x), what + " nhwc_to_nchw");
}

TEST(GpuNhwcKernels, LayoutConversionsArePermutations) {
  MOCO_REQUIRE_GPU();
  uint64_t stream = 60;
  for (int64_t c : {3, 17, 67})
    for (int64_t hw : {1, 35, 1100}) {
      check_layout<float>(3, c, hw, stream++);
      check_layout<__nv_bfloat16>(3, c, hw, stream++);
    }
}

// Slots as the registry lays them out: convs, a linear weight and bias (numel, 1, 1, 1), with gaps between
// them (alignment padding, a BN slot) that neither launcher may touch.
struct Layout {
  std::vector<kernels::WeightSlot> slots;
  int64_t total = 0;
};
Layout weight_layout() {
  Layout l;
  int64_t off = 0;
  auto add = [&](int64_t co, int64_t ci, int64_t kh, int64_t kw, int64_t gap) {
    l.slots.push_back(kernels::WeightSlot{off, co, ci, kh, kw});
    off += co * ci * kh * kw + gap;
  };
  add(5, 3, 7, 7, 3);   // stem-like conv, then padding
  add(4, 5, 1, 1, 0);   // 1x1 conv, adjacent to the next slot
  add(6, 4, 3, 3, 12);  // 3x3 conv, then a "BN slot"
  add(3, 6, 3, 2, 1);   // non-square kernel: catches a kh / kw swap
  add(77, 1, 1, 1, 5);  // linear weight (numel, 1, 1, 1)
  add(7, 1, 1, 1, 0);   // linear bias, last slot
  l.total = off + 9;    // the flat buffer runs past the last slot
  return l;
}
// The host permutation: master (Co, Ci, kh, kw) index -> compute (Co, kh, kw, Ci) index, or -1 outside slots.
std::vector<int64_t> compute_index_of(const Layout& l) {
  std::vector<int64_t> m(l.total, -1);
  for (const auto& s : l.slots)
    for (int64_t o = 0; o < s.co; ++o)
      for (int64_t i = 0; i < s.ci; ++i)
        for (int64_t a = 0; a < s.kh; ++a)
          for (int64_t b = 0; b < s.kw; ++b)
            m[s.offset + ((o * s.ci + i) * s.kh + a) * s.kw + b] = s.offset + ((o * s.kh + a) * s.kw + b) * s.ci + i;
  return m;
}

template <class T>
void check_weight_pack() {
  const Layout l = weight_layout();
  const auto to = compute_index_of(l);
  const auto params = nhwc_test::normal_floats(l.total, 70);
  DeviceBuffer<kernels::WeightSlot> slots(l.slots, "slots");
  DeviceBuffer<float> dparams(params, "params");
  DevTensor<T> mirror(l.total, "mirror");
  mirror.poison();
  kernels::pack_weights<T>(slots.get(), (int)l.slots.size(), l.total, dparams.get(), mirror.get(), nullptr);
  const std::string what = std::string(nhwc_test::type_name<T>()) + " pack_weights";
  const auto got = mirror.download();
  std::vector<bool> covered(l.total, false);
  for (int64_t j = 0; j < l.total; ++j)
    if (to[j] >= 0) {
      covered[to[j]] = true;
      ASSERT_EQ(got[to[j]], round_to<T>(params[j])) << what << " master element " << j;
    }
  for (int64_t j = 0; j < l.total; ++j)
    ASSERT_TRUE(covered[j] || std::isnan(got[j])) << what << " wrote element " << j << " outside every slot";

  // unpack, one slot at a time as backward does: grads += that slot's mirror gradient permuted back, and
  // nothing outside the slot moves (so after every slot, elements outside all slots keep their values)
  const auto mg = rounded<T>(nhwc_test::normal_floats(l.total, 71));
  const auto g0 = nhwc_test::normal_floats(l.total, 72);
  DevTensor<T> dmg(mg, "mirror grads");
  DeviceBuffer<float> grads1(g0, "grads, slot by slot");
  std::vector<float> want1 = g0;
  for (const auto& slot : l.slots) {
    kernels::unpack_weight_grad<T>(slot, dmg.get(), grads1.get(), nullptr);
    for (int64_t j = slot.offset; j < slot.offset + slot.co * slot.ci * slot.kh * slot.kw; ++j) want1[j] += mg[to[j]];
    const auto got1 = grads1.download();
    for (int64_t j = 0; j < l.total; ++j)
      ASSERT_EQ(got1[j], want1[j]) << nhwc_test::type_name<T>() << " unpack_weight_grad of the slot at "
                                   << slot.offset << ", element " << j;
  }

  // round trip: pack, then unpack onto zeros, gives the params as T holds them in every slot
  DeviceBuffer<float> zeros(std::vector<float>(l.total, 0.f), "zeros");
  for (const auto& slot : l.slots) kernels::unpack_weight_grad<T>(slot, mirror.get(), zeros.get(), nullptr);
  const auto rt = zeros.download();
  for (int64_t j = 0; j < l.total; ++j)
    ASSERT_EQ(rt[j], to[j] >= 0 ? round_to<T>(params[j]) : 0.f) << nhwc_test::type_name<T>() << " round trip " << j;
}

TEST(GpuNhwcKernels, WeightPackingIsTheFilterPermutation) {
  MOCO_REQUIRE_GPU();
  check_weight_pack<float>();
  check_weight_pack<__nv_bfloat16>();
}

}  // namespace
