// The cuDNN convolution wrapper (src/cuda/convolution.h) against the CPU reference convolution
// (cpu::conv2d_forward / conv2d_backward, NCHW with (Co, Ci, kh, kw) weights, run in double): every distinct
// convolution of ResNet-50 at batch 2 and a set of odd shapes, forward, backward_data and backward_filter, in
// fp32 and bf16. Inputs are laid out channels-last on the host; every output is filled with NaN (all bits
// set) before each call, so an element cuDNN did not write fails the comparison. Each pass runs twice: the
// first call searches for the algorithm, the second uses the cached plan; a deterministic plan must give
// the same bits both times.
//
// Tolerances, relative to the sum of |terms| of each output (the reference run on |inputs|):
//  - fp32 (FMA math, no TF32): 1e-5. A sum of n products accumulated in fp32 is off by rounding only, in
//    practice a few 2^-24 of the sum of |terms| for the random-sign data here (the worst case n * 2^-24 is
//    never approached); 1e-5 leaves two orders of magnitude of margin, yet a missing or misplaced term of
//    a forward or data-gradient sum (at least 1/4608 of it here) or a wrong kernel row (1/7 to 1/3) fails.
//  - bf16 (inputs rounded to bf16 on the host first, so the reference sees the same values): 1e-2. The
//    products are exact in fp32 and accumulated in fp32, but the result is rounded to bf16 (8 bits), up to
//    2^-9 = 0.2% of |result| <= 0.2% of the sum of |terms|; 1e-2 is 5x that, and still catches any layout,
//    stride, padding or kernel-orientation error (each moves a large fraction of the terms).
// Outputs with no terms at all (input pixels a strided 1x1 kernel never reads) get a floor of rel * 1e-3 of
// the mean magnitude, so an algorithm that works in a transformed domain may leave rounding noise there
// while a NaN or a stale value still fails.
#include "moco/host_layout.h"
#include "moco/bf16_host.h"
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../../src/cuda/convolution.h"
#include "../../src/cuda/device_buffer.h"
#include "../../src/cuda/resnet50_convs.h"
#include "../scoped_env.h"
#include "gpu_test.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;
using cpu::ConvShape;
using cuda::DeviceBuffer;

namespace {

constexpr double kRelF32 = 1e-5;
constexpr double kRelBf16 = 1e-2;


std::vector<float> normals(size_t n, uint64_t stream) { return normal_floats(n, 4242, stream); }

// Each value replaced by the nearest bf16, kept as float: what the GPU will see.
std::vector<float> rounded_to_bf16(std::vector<float> v) {
  for (auto& x : v) x = bf16_value(bf16_bits(x));
  return v;
}

// (A, B, C, D) -> (A, C, D, B): NCHW to NHWC, and equally (Co, Ci, kh, kw) to (Co, kh, kw, Ci).
std::vector<float> channels_last(const std::vector<float>& v, int64_t a, int64_t b, int64_t c, int64_t d) {
  std::vector<float> out(v.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c * d; ++k) out[(size_t)((i * c * d + k) * b + j)] = v[(size_t)((i * b + j) * c * d + k)];
  return out;
}
// (A, C, D, B) -> (A, B, C, D): the inverse.
std::vector<float> channels_first(const std::vector<float>& v, int64_t a, int64_t b, int64_t c, int64_t d) {
  std::vector<float> out(v.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c * d; ++k) out[(size_t)((i * b + j) * c * d + k)] = v[(size_t)((i * c * d + k) * b + j)];
  return out;
}

// Device values in the test's dtype: fp32 as is, bf16 as its bits.
class DeviceValues {
 public:
  DeviceValues(const std::vector<float>& host, DType dt, const char* what) : dt_(dt) {
    if (dt == DType::F32) {
      f_ = DeviceBuffer<float>(host, what);
    } else {
      std::vector<uint16_t> bits(host.size());
      for (size_t i = 0; i < host.size(); ++i) bits[i] = bf16_bits(host[i]);
      b_ = DeviceBuffer<uint16_t>(bits, what);
    }
  }
  DeviceValues(size_t n, DType dt, const char* what) : dt_(dt) {
    if (dt == DType::F32)
      f_ = DeviceBuffer<float>(n, what);
    else
      b_ = DeviceBuffer<uint16_t>(n, what);
  }
  void* get() { return dt_ == DType::F32 ? (void*)f_.get() : (void*)b_.get(); }
  void fill_bytes(int byte) { dt_ == DType::F32 ? f_.fill_bytes(byte) : b_.fill_bytes(byte); }
  void poison() { fill_bytes(0xFF); }
  std::vector<float> download() const {
    if (dt_ == DType::F32) return f_.download();
    const std::vector<uint16_t> bits = b_.download();
    std::vector<float> v(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) v[i] = bf16_value(bits[i]);
    return v;
  }

 private:
  DType dt_;
  DeviceBuffer<float> f_;
  DeviceBuffer<uint16_t> b_;
};

class Stream {
 public:
  Stream() { MOCO_CUDA_CHECK(cudaStreamCreate(&s_)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

std::string describe_shape(const ConvShape& s, DType dt) {
  return "N=" + std::to_string(s.n) + " Ci=" + std::to_string(s.ci) + " " + std::to_string(s.h) + "x" +
         std::to_string(s.w) + " Co=" + std::to_string(s.co) + " k=" + std::to_string(s.kh) + "x" +
         std::to_string(s.kw) + " stride=" + std::to_string(s.stride) + " pad=" + std::to_string(s.pad) + " " +
         dtype_name(dt);
}

size_t lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

size_t occurrences(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// got within rel * mag (+ the no-term floor) of ref, element by element; NaN fails.
::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& ref,
                                 const std::vector<double>& mag, double rel, const std::string& what) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " elements, expected " << ref.size();
  double mean_mag = 0;
  for (double m : mag) mean_mag += m;
  mean_mag /= (double)std::max<size_t>(mag.size(), 1);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = rel * std::max(mag[i], 1e-3 * mean_mag) + 1e-30;
    if (!(std::fabs((double)got[i] - ref[i]) <= tol)) {
      if (bad == 0) first = i;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " elements off; first ["
                                       << first << "] = " << got[first] << ", reference " << ref[first]
                                       << ", sum of |terms| " << mag[first] << ", relative tolerance " << rel;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// `offset` elements in front of `v`: on the device, the array then starts that many elements past
// cudaMalloc's 256-byte alignment.
std::vector<float> shifted(const std::vector<float>& v, size_t offset) {
  std::vector<float> out(offset, 0.f);
  out.insert(out.end(), v.begin(), v.end());
  return out;
}

// One shape through the three passes and the adding backward data (each twice: searched, then cached)
// against the CPU reference, every device array starting `offset` elements into its allocation. The adding
// call's dx starts as a prior sum, which the search must leave in place and the result must contain.
void check_conv(cuda::Convolutions& conv, cudaStream_t stream, const ConvShape& s, DType dt, uint64_t seed,
                size_t offset = 0) {
  const double rel = dt == DType::F32 ? kRelF32 : kRelBf16;
  const int64_t ho = s.ho(), wo = s.wo();
  const size_t nx = (size_t)(s.n * s.ci * s.h * s.w), nw = (size_t)(s.co * s.ci * s.kh * s.kw),
               ny = (size_t)(s.n * s.co * ho * wo);
  std::vector<float> x = normals(nx, 3 * seed);       // (N, Ci, H, W)
  std::vector<float> w = normals(nw, 3 * seed + 1);   // (Co, Ci, kh, kw)
  std::vector<float> dy = normals(ny, 3 * seed + 2);  // (N, Co, Ho, Wo)
  std::vector<float> prior = normals(nx, 7 * seed + 5);  // (N, Ci, H, W) the sum the adding call adds into
  if (dt == DType::BF16) {
    x = rounded_to_bf16(x);
    w = rounded_to_bf16(w);
    dy = rounded_to_bf16(dy);
    prior = rounded_to_bf16(prior);
  }

  // The reference in double on the same values, and on their magnitudes (each output's sum of |terms|).
  // conv2d_backward accumulates into dw, so both start at zero; it overwrites dx.
  std::vector<double> ref_y(ny), mag_y(ny), ref_dx(nx), mag_dx(nx), ref_dw(nw, 0.0), mag_dw(nw, 0.0);
  {
    const auto xd = widened(x, false), wd = widened(w, false), dyd = widened(dy, false);
    const auto xa = widened(x, true), wa = widened(w, true), dya = widened(dy, true);
    cpu::conv2d_forward<double>(s, xd.data(), wd.data(), ref_y.data());
    cpu::conv2d_forward<double>(s, xa.data(), wa.data(), mag_y.data());
    cpu::conv2d_backward<double>(s, xd.data(), wd.data(), dyd.data(), ref_dx.data(), ref_dw.data());
    cpu::conv2d_backward<double>(s, xa.data(), wa.data(), dya.data(), mag_dx.data(), mag_dw.data());
  }
  std::vector<double> ref_sum(nx), mag_sum(nx);  // (N, Ci, H, W) prior + dx
  for (size_t i = 0; i < nx; ++i) {
    ref_sum[i] = prior[i] + ref_dx[i];
    mag_sum[i] = std::fabs(prior[i]) + mag_dx[i];
  }

  DeviceValues dx_in(shifted(channels_last(x, s.n, s.ci, s.h, s.w), offset), dt, "x");     // (N, H, W, Ci)
  DeviceValues dw_in(shifted(channels_last(w, s.co, s.ci, s.kh, s.kw), offset), dt, "w");  // (Co, kh, kw, Ci)
  DeviceValues ddy_in(shifted(channels_last(dy, s.n, s.co, ho, wo), offset), dt, "dy");    // (N, Ho, Wo, Co)
  DeviceValues y_out(offset + ny, dt, "y"), dx_out(offset + nx, dt, "dx"), dw_out(offset + nw, dt, "dw");
  const size_t elem = dt == DType::F32 ? 4 : 2;
  auto at = [&](DeviceValues& v) { return static_cast<void*>(static_cast<char*>(v.get()) + offset * elem); };
  auto values = [&](const DeviceValues& v) {
    std::vector<float> all = v.download();
    return std::vector<float>(all.begin() + (std::ptrdiff_t)offset, all.end());
  };
  const std::string name = describe_shape(s, dt) + (offset ? " at offset " + std::to_string(offset) : "");

  std::vector<float> first[4];
  for (int round = 0; round < 2; ++round) {
    y_out.poison();
    conv.forward(s, dt, at(dx_in), at(dw_in), at(y_out));
    dx_out.poison();
    conv.backward_data(s, dt, at(ddy_in), at(dw_in), at(dx_out));
    dw_out.poison();
    conv.backward_filter(s, dt, at(dx_in), at(ddy_in), at(dw_out));
    DeviceValues sum_out(shifted(channels_last(prior, s.n, s.ci, s.h, s.w), offset), dt, "dx sum");
    conv.backward_data(s, dt, at(ddy_in), at(dw_in), at(sum_out), /*add=*/true);
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));

    const std::vector<float> y = channels_first(values(y_out), s.n, s.co, ho, wo);
    const std::vector<float> dxg = channels_first(values(dx_out), s.n, s.ci, s.h, s.w);
    const std::vector<float> dwg = channels_first(values(dw_out), s.co, s.ci, s.kh, s.kw);
    const std::vector<float> sumg = channels_first(values(sum_out), s.n, s.ci, s.h, s.w);
    const std::string r = round == 0 ? " (searched)" : " (cached plan)";
    EXPECT_TRUE(within(y, ref_y, mag_y, rel, name + " forward" + r)) << conv.describe();
    EXPECT_TRUE(within(dxg, ref_dx, mag_dx, rel, name + " backward_data" + r)) << conv.describe();
    EXPECT_TRUE(within(dwg, ref_dw, mag_dw, rel, name + " backward_filter" + r)) << conv.describe();
    EXPECT_TRUE(within(sumg, ref_sum, mag_sum, rel, name + " backward_data adding" + r)) << conv.describe();
    if (round == 0) {
      first[0] = y;
      first[1] = dxg;
      first[2] = dwg;
      first[3] = sumg;
    } else if (conv.describe().find("NON-DETERMINISTIC") == std::string::npos) {
      // every plan so far is deterministic, so the cached run must reproduce the searched one bit for bit
      EXPECT_TRUE(same_bits(first[0], y)) << name << " forward differs between two runs";
      EXPECT_TRUE(same_bits(first[1], dxg)) << name << " backward_data differs between two runs";
      EXPECT_TRUE(same_bits(first[2], dwg)) << name << " backward_filter differs between two runs";
      EXPECT_TRUE(same_bits(first[3], sumg)) << name << " adding backward_data differs between two runs";
    }
  }
}

// Graph mode's promise, from describe(): every pass has a graph plan, except that a data gradient added to dx
// may keep the legacy algorithm where no graph engine takes beta = 1 (consider_graph), or where the engine
// taken wrote over dx instead of adding (graph_plan_adds). Those are printed. On the emulator, whose engines
// add unless MOCO_EMU_GRAPH_BETA=refuse or =ignore says otherwise, the test knows which to expect: none, or
// every adding line.
::testing::AssertionResult all_graph(const std::string& described) {
  const bool emulated = on_the_emulator();
  const char* beta = std::getenv("MOCO_EMU_GRAPH_BETA");
  const bool refused = beta && (std::string(beta) == "refuse" || std::string(beta) == "ignore");
  size_t at = 0, n = 0, adding = 0, kept_legacy = 0;
  while (at < described.size()) {
    const size_t end = described.find('\n', at);
    const std::string line = described.substr(at, end - at);
    const bool add = line.find("(dx added to)") != std::string::npos;
    adding += add;
    if (line.find(": graph engine ") == std::string::npos) {
      if (!add) return ::testing::AssertionFailure() << "a pass without a graph plan: " << line;
      std::printf("graph mode kept the legacy algorithm: %s\n", line.c_str());
      ++kept_legacy;
    }
    ++n;
    at = end == std::string::npos ? described.size() : end + 1;
  }
  if (n == 0) return ::testing::AssertionFailure() << "no plans at all";
  if (emulated && kept_legacy != (refused ? adding : 0))
    return ::testing::AssertionFailure() << kept_legacy << " of " << adding << " adding lines kept the legacy "
                                         << "algorithm; expected " << (refused ? adding : 0);
  return ::testing::AssertionSuccess();
}

void check_resnet50(DType dt, cuda::ConvApi api, int64_t batch) {
  Stream stream;
  cuda::Convolutions conv(stream.get(), api, cuda::StemForm::kDirect);  // the stem's other form has its own tests
  const auto convs = cuda::resnet50_convs(batch);
  // the stem; 4 in stage 1 (its stride-1 downsample, 64 -> 256 at 56x56, has the shape of its conv3); 6 in
  // each later stage (first block's 1x1, strided 3x3 and downsample; later blocks' 1x1 and 3x3; the expand)
  ASSERT_EQ(convs.size(), 23u);
  int total = 0;
  for (const auto& c : convs) total += c.count;
  ASSERT_EQ(total, 53);  // 1 + 16 bottlenecks x 3 + 4 downsamples
  uint64_t seed = 100;
  for (const auto& c : convs) {
    check_conv(conv, stream.get(), c.shape, dt, seed++);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_EQ(conv.cached_shapes(), 23);
  EXPECT_EQ(lines(conv.describe()), 92u);  // four passes each: the adding backward data is one
  if (api == cuda::ConvApi::kGraph) {
    EXPECT_TRUE(all_graph(conv.describe()));
  }
  std::printf("%s", conv.describe().c_str());  // the chosen algorithms, for the log
}

template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected a moco::Error mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}


void check_odd_shapes(cuda::ConvApi api) {
  Stream stream;
  cuda::Convolutions conv(stream.get(), api);
  struct Kernel { int64_t k, stride, pad; };
  const Kernel kernels[] = {{1, 1, 0}, {1, 2, 0}, {3, 1, 1}, {3, 2, 1}, {3, 2, 0}, {5, 2, 2}};
  const int64_t cos[] = {4, 17, 3};
  uint64_t seed = 1000;
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t ci : {3, 5, 17})
      for (int64_t hw : {7, 9})
        for (const Kernel& k : kernels) {
          const ConvShape s{3, ci, hw, hw, cos[seed % 3], k.k, k.k, k.stride, k.pad};
          check_conv(conv, stream.get(), s, dt, seed++);
          if (::testing::Test::HasFatalFailure()) return;
        }
  // not square, stride 2 over odd sizes in both directions
  for (DType dt : {DType::F32, DType::BF16}) {
    check_conv(conv, stream.get(), ConvShape{2, 5, 7, 9, 6, 3, 3, 2, 1}, dt, seed++);
    check_conv(conv, stream.get(), ConvShape{1, 3, 9, 7, 5, 1, 1, 2, 0}, dt, seed++);
  }
  if (api == cuda::ConvApi::kGraph) {
    EXPECT_TRUE(all_graph(conv.describe()));
  }
}

}  // namespace

TEST(GpuConvolution, ResNet50ShapesFp32MatchCpu) {
  MOCO_REQUIRE_GPU();
  check_resnet50(DType::F32, cuda::ConvApi::kLegacy, 2);
}

TEST(GpuConvolution, ResNet50ShapesBf16MatchCpu) {
  MOCO_REQUIRE_GPU();
  check_resnet50(DType::BF16, cuda::ConvApi::kLegacy, 2);
}

TEST(GpuConvolution, OddShapesMatchCpu) {
  MOCO_REQUIRE_GPU();
  check_odd_shapes(cuda::ConvApi::kLegacy);
}

// The graph API (MOCO_CONV_API=graph): every pass of every ResNet-50 shape in bf16, and the odd shapes in
// both dtypes, run a graph plan and match the CPU as the legacy algorithms do. Batch 1: the plans do not
// depend on it, and each pass is run once per candidate plan, which costs minutes on the emulator.
TEST(GpuConvolution, GraphApiResNet50ShapesBf16MatchCpu) {
  MOCO_REQUIRE_GPU();
  check_resnet50(DType::BF16, cuda::ConvApi::kGraph, 1);
}

TEST(GpuConvolution, GraphApiOddShapesMatchCpu) {
  MOCO_REQUIRE_GPU();
  check_odd_shapes(cuda::ConvApi::kGraph);
}

// auto: both APIs are timed on the first call of each pass, describe() reports both times, and whichever
// wins computes the right values.
TEST(GpuConvolution, AutoApiTimesBothAndMatchesCpu) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kAuto);
  check_conv(conv, stream.get(), ConvShape{2, 16, 9, 9, 24, 3, 3, 1, 1}, DType::BF16, 2001);
  check_conv(conv, stream.get(), ConvShape{2, 24, 9, 9, 16, 1, 1, 2, 0}, DType::BF16, 2002);
  const std::string d = conv.describe();
  EXPECT_EQ(lines(d), 8u);
  size_t timed = 0;  // a pass timed both ways says "... ms timed against ... ms ..." or "; timed ... against ..."
  for (const char* mark : {" ms timed against ", "; timed "})
    for (size_t at = d.find(mark); at != std::string::npos; at = d.find(mark, at + 1)) ++timed;
  EXPECT_EQ(timed, 8u) << d;  // one per pass, whichever API it names
  std::printf("%s", d.c_str());
}

// A graph plan is built for 16-byte-aligned data. A later call of the same shape with pointers that are not
// aligned runs the legacy algorithm instead (a graph engine's vector loads would fault), with the same values.
TEST(GpuConvolution, GraphPlansLeaveUnalignedCallsToTheLegacyAlgorithm) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kGraph);
  const ConvShape s{2, 8, 7, 7, 16, 3, 3, 1, 1};
  for (DType dt : {DType::F32, DType::BF16}) {
    check_conv(conv, stream.get(), s, dt, 3001, 0);  // searched on aligned buffers: graph plans
    check_conv(conv, stream.get(), s, dt, 3002, 1);  // one element off: 4 or 2 bytes past the alignment
  }
  EXPECT_TRUE(all_graph(conv.describe()));
}

// With MOCO_CONV_API=graph the first call must be aligned, since the graph plans are timed on its buffers.
TEST(GpuConvolution, GraphApiRefusesAnUnalignedFirstCall) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kGraph);
  const ConvShape s{1, 8, 5, 5, 8, 3, 3, 1, 1};
  DeviceValues x(201, DType::BF16, "x"), w(577, DType::BF16, "w"), y(201, DType::BF16, "y");
  x.fill_bytes(0);
  w.fill_bytes(0);
  auto off = [](DeviceValues& v) { return static_cast<void*>(static_cast<char*>(v.get()) + 2); };
  expect_error([&] { conv.forward(s, DType::BF16, off(x), off(w), off(y)); }, "16-byte aligned");
}

// plans() and use_plans(): a second object given the first's plans runs the same algorithms (and graph
// engines) without a search, with the right values; a plan this machine refuses is searched again; text that
// is not plans throws, naming the line.
TEST(GpuConvolution, GivenPlansRunWithoutASearch) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  const ConvShape a{2, 16, 9, 9, 24, 3, 3, 1, 1}, b{2, 24, 9, 9, 16, 1, 1, 2, 0};
  for (cuda::ConvApi api : {cuda::ConvApi::kLegacy, cuda::ConvApi::kGraph}) {
    cuda::Convolutions first(stream.get(), api);
    check_conv(first, stream.get(), a, DType::BF16, 4001);
    check_conv(first, stream.get(), b, DType::F32, 4002);
    const std::string text = first.plans();
    EXPECT_EQ(lines(text), 9u) << text;  // a header and one line per shape and pass (adding backward data too)
    cuda::Convolutions second(stream.get(), cuda::ConvApi::kLegacy);  // the plans decide, not the mode
    second.use_plans(text);
    check_conv(second, stream.get(), a, DType::BF16, 4003);
    check_conv(second, stream.get(), b, DType::F32, 4004);
    EXPECT_EQ(second.plans(), text);
    const std::string d = second.describe();
    size_t given = 0;
    for (size_t at = d.find("as given"); at != std::string::npos; at = d.find("as given", at + 1)) ++given;
    EXPECT_EQ(given, 8u) << d;
  }
  // an algorithm number no cuDNN has: refused, searched again, and still right
  cuda::Convolutions third(stream.get(), cuda::ConvApi::kLegacy);
  third.use_plans("2 16 9 9 24 3 3 1 1 bf16 forward 99 1 1 -1\n");
  check_conv(third, stream.get(), a, DType::BF16, 4005);
  EXPECT_EQ(third.describe().find("as given"), std::string::npos) << third.describe();
  expect_error([&] { third.use_plans("# plans\n2 16 9 9 24 3 3 1\n"); }, "line 2");
  expect_error([&] { third.use_plans("2 16 9 9 24 3 3 1 1 f16 forward 1 1 1 -1\n"); }, "line 1");
  expect_error([&] { third.use_plans("2 16 9 9 24 3 3 1 1 bf16 sideways 1 1 1 -1\n"); }, "sideways");
  expect_error([&] { third.use_plans("2 16 9 9 24 3 3 1 1 bf16 forward 1 1 -1\n"); }, "line 1");  // a field short
}

TEST(GpuConvolution, ApiComesFromTheEnvironment) {
  test::ScopedEnv env("MOCO_CONV_API", nullptr);
  EXPECT_EQ(cuda::conv_api_from_env(), cuda::ConvApi::kAuto);
  env.set("legacy");
  EXPECT_EQ(cuda::conv_api_from_env(), cuda::ConvApi::kLegacy);
  env.set("graph");
  EXPECT_EQ(cuda::conv_api_from_env(), cuda::ConvApi::kGraph);
  env.set("auto");
  EXPECT_EQ(cuda::conv_api_from_env(), cuda::ConvApi::kAuto);
  env.set("fastest");
  expect_error([] { cuda::conv_api_from_env(); }, "MOCO_CONV_API=fastest");
}

TEST(GpuConvolution, PlansAreCachedPerShapeAndDtype) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get());
  EXPECT_EQ(conv.cached_shapes(), 0);
  EXPECT_EQ(conv.workspace_bytes(), 0u);
  EXPECT_EQ(conv.describe(), "");
  EXPECT_FALSE(conv.frozen());

  const ConvShape a{2, 16, 14, 14, 32, 3, 3, 1, 1}, b{2, 32, 14, 14, 16, 1, 1, 2, 0};
  check_conv(conv, stream.get(), a, DType::F32, 1);  // four passes, each searched then cached
  EXPECT_EQ(conv.cached_shapes(), 1);
  EXPECT_EQ(lines(conv.describe()), 4u);
  const size_t ws = conv.workspace_bytes();
  check_conv(conv, stream.get(), a, DType::F32, 2);  // the same shape again: nothing new
  EXPECT_EQ(conv.cached_shapes(), 1);
  EXPECT_EQ(lines(conv.describe()), 4u);
  EXPECT_EQ(conv.workspace_bytes(), ws);
  check_conv(conv, stream.get(), a, DType::BF16, 3);  // the dtype is part of the key
  EXPECT_EQ(conv.cached_shapes(), 2);
  EXPECT_EQ(lines(conv.describe()), 8u);
  check_conv(conv, stream.get(), b, DType::F32, 4);
  EXPECT_EQ(conv.cached_shapes(), 3);
  EXPECT_EQ(lines(conv.describe()), 12u);
  EXPECT_GE(conv.workspace_bytes(), ws);  // grows or stays, never shrinks

  // a new batch size is a new shape, and only the pass that ran gets a plan
  ConvShape c = a;
  c.n = 3;
  DeviceValues x((size_t)(c.n * c.ci * c.h * c.w), DType::F32, "x"), w((size_t)(c.co * c.ci * 9), DType::F32, "w");
  DeviceValues y((size_t)(c.n * c.co * c.ho() * c.wo()), DType::F32, "y");
  x.fill_bytes(0);
  w.fill_bytes(0);
  y.poison();
  conv.forward(c, DType::F32, x.get(), w.get(), y.get());
  MOCO_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  for (float v : y.download()) ASSERT_EQ(v, 0.f);  // zeros in, zeros out, no NaN left
  EXPECT_EQ(conv.cached_shapes(), 4);
  EXPECT_EQ(lines(conv.describe()), 13u);
}

// After freeze() the workspace never grows: a new shape either fits (and computes) or throws an error that
// names the shape and the bytes it needs. Which of the two happens depends on the algorithms cuDNN measures
// fastest on the device, so the test counts both and holds the invariant that matters: the workspace size.
TEST(GpuConvolution, FrozenWorkspaceNeverGrows) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::conv_api_from_env(), cuda::StemForm::kDirect);  // one entry a shape
  check_conv(conv, stream.get(), ConvShape{2, 8, 7, 7, 8, 1, 1, 1, 0}, DType::BF16, 7);
  const size_t ws = conv.workspace_bytes();
  conv.freeze();
  EXPECT_TRUE(conv.frozen());
  const int before = conv.cached_shapes();
  int fitted = 0, refused = 0, shapes_with_plan = 0;
  for (const auto& c : cuda::resnet50_convs(8)) {
    const ConvShape& s = c.shape;
    const size_t nx = (size_t)(s.n * s.ci * s.h * s.w), nw = (size_t)(s.co * s.ci * s.kh * s.kw),
                 ny = (size_t)(s.n * s.co * s.ho() * s.wo());
    DeviceValues x(nx, DType::BF16, "x"), w(nw, DType::BF16, "w"), dy(ny, DType::BF16, "dy");  // zeros
    DeviceValues y(ny, DType::BF16, "y"), dx(nx, DType::BF16, "dx"), dw(nw, DType::BF16, "dw");
    x.fill_bytes(0);
    w.fill_bytes(0);
    dy.fill_bytes(0);
    y.poison();
    dx.poison();
    dw.poison();
    struct Run { const char* name; std::function<void()> call; DeviceValues* out; };
    const Run runs[] = {
        {"forward", [&] { conv.forward(s, DType::BF16, x.get(), w.get(), y.get()); }, &y},
        {"backward_data", [&] { conv.backward_data(s, DType::BF16, dy.get(), w.get(), dx.get()); }, &dx},
        {"backward_filter", [&] { conv.backward_filter(s, DType::BF16, x.get(), dy.get(), dw.get()); }, &dw},
    };
    bool any_plan = false;
    for (const Run& r : runs) {
      try {
        r.call();
        MOCO_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
        for (float v : r.out->download()) ASSERT_EQ(v, 0.f) << describe_shape(s, DType::BF16) << " " << r.name;
        ++fitted;
        any_plan = true;
      } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("frozen"), std::string::npos) << msg;
        EXPECT_NE(msg.find("Ci=" + std::to_string(s.ci)), std::string::npos) << msg;
        EXPECT_NE(msg.find(" bytes"), std::string::npos) << msg;
        ++refused;
      }
      EXPECT_EQ(conv.workspace_bytes(), ws) << describe_shape(s, DType::BF16) << " " << r.name;
    }
    shapes_with_plan += any_plan;
  }
  EXPECT_EQ(fitted + refused, 3 * 23);
  EXPECT_EQ(conv.cached_shapes(), before + shapes_with_plan);  // a refused search leaves no plan behind
  std::printf("frozen at %zu bytes: %d passes fitted, %d refused\n", ws, fitted, refused);
}

// A search that fails has already run candidates over its output. For a data gradient added to dx, that
// output holds the gradient summed so far: it must be back in dx when the error reaches the caller. Only the
// emulator can make every candidate fail (MOCO_EMU_CUDNN_FIND=fail), after writing over dx as cuDNN does.
TEST(GpuConvolution, FailedAddingSearchGivesTheSumSoFarBack) {
  MOCO_REQUIRE_GPU();
  if (!on_the_emulator()) GTEST_SKIP() << "only the CUDA emulator can make every cuDNN candidate fail";
  const ConvShape s{2, 8, 7, 7, 8, 3, 3, 1, 1};
  for (DType dt : {DType::F32, DType::BF16}) {
    Stream stream;
    cuda::Convolutions conv(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kDirect);
    std::vector<float> sum_so_far((size_t)(s.n * s.ci * s.h * s.w));  // (N, H, W, Ci), exact in bf16
    for (size_t i = 0; i < sum_so_far.size(); ++i) sum_so_far[i] = (float)((int)(i % 61) - 30) * 0.125f;
    DeviceValues dx(sum_so_far, dt, "dx");
    DeviceValues dy((size_t)(s.n * s.co * s.ho() * s.wo()), dt, "dy"), w((size_t)(s.co * s.ci * 9), dt, "w");
    dy.fill_bytes(0);
    w.fill_bytes(0);
    {
      test::ScopedEnv failing("MOCO_EMU_CUDNN_FIND", "fail");
      expect_error([&] { conv.backward_data(s, dt, dy.get(), w.get(), dx.get(), /*add=*/true); },
                   "no usable backward_data algorithm");
    }
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    EXPECT_EQ(dx.download(), sum_so_far) << describe_shape(s, dt);
    EXPECT_EQ(conv.cached_shapes(), 0);  // nothing chosen: the next call searches again
    // and, with searches working again, the same call adds dy's (zero) gradient to the same sum
    conv.backward_data(s, dt, dy.get(), w.get(), dx.get(), /*add=*/true);
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    EXPECT_EQ(dx.download(), sum_so_far) << describe_shape(s, dt);
  }
}

TEST(GpuConvolution, RejectsBadArguments) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get());
  const ConvShape s{1, 4, 5, 5, 4, 3, 3, 1, 1};
  DeviceValues x(100, DType::F32, "x"), w(144, DType::F32, "w"), y(100, DType::F32, "y");
  expect_error([&] { conv.forward(s, DType::F64, x.get(), w.get(), y.get()); }, "f64");
  expect_error([&] { conv.backward_data(s, DType::F16, y.get(), w.get(), x.get()); }, "f16");
  ConvShape bad = s;
  bad.stride = 0;
  expect_error([&] { conv.forward(bad, DType::F32, x.get(), w.get(), y.get()); }, "stride=0");
  bad = s;
  bad.ci = 0;
  expect_error([&] { conv.backward_filter(bad, DType::F32, x.get(), y.get(), w.get()); }, "Ci=0");
  bad = s;
  bad.pad = 0;
  bad.h = 2;
  expect_error([&] { conv.forward(bad, DType::F32, x.get(), w.get(), y.get()); }, "kernel larger");
  expect_error([&] { conv.forward(s, DType::F32, nullptr, w.get(), y.get()); }, "null pointer");
  EXPECT_EQ(conv.cached_shapes(), 0);
}

// ---- the stem's space-to-depth form (StemForm, convolution.h)

// Forced into the form, the ResNet-50 stem and odd stride-2 shapes with 1 to 4 input channels (odd and even
// kernels, non-square ones, padding up to 3, odd sizes) match the CPU's direct convolution in every pass, each
// searched then cached and bit for bit the same (check_conv); backward data runs directly. The forward and
// filter-gradient lines of describe() name the form, and each stride-1 shape is a cached shape of its own.
TEST(GpuConvolution, StemSpaceToDepthFormMatchesCpu) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kSpaceToDepth);
  const ConvShape shapes[] = {
      {2, 3, 224, 224, 64, 7, 7, 2, 3},  // the ResNet-50 stem
      {2, 1, 9, 9, 8, 3, 3, 2, 1},   {1, 2, 8, 11, 5, 4, 4, 2, 1},  {2, 4, 10, 7, 6, 5, 3, 2, 2},
      {3, 3, 13, 13, 17, 7, 7, 2, 3}, {2, 3, 12, 12, 4, 2, 2, 2, 0},
  };
  uint64_t seed = 5000;
  for (DType dt : {DType::F32, DType::BF16})
    for (const ConvShape& s : shapes) {
      ASSERT_TRUE(cuda::space_to_depth_fits(s)) << describe_shape(s, dt);
      check_conv(conv, stream.get(), s, dt, seed++);
      if (::testing::Test::HasFatalFailure()) return;
    }
  const std::string d = conv.describe();
  const size_t n = 2 * std::size(shapes);
  EXPECT_EQ(occurrences(d, "; stem form: space_to_depth"), 2 * n) << d;  // forward and backward_filter
  EXPECT_EQ(conv.cached_shapes(), (int)(2 * n)) << d;                    // each shape and its stride-1 form
  std::printf("%s", d.c_str());
}

// The form's shape: stride 1, no padding, 16 channels, half the kernel rounded up, the same output.
TEST(GpuConvolution, StemSpaceToDepthShape) {
  const ConvShape stem{256, 3, 224, 224, 64, 7, 7, 2, 3};
  const ConvShape z = cuda::space_to_depth_shape(stem);
  EXPECT_EQ(describe_shape(z, DType::BF16), "N=256 Ci=16 115x115 Co=64 k=4x4 stride=1 pad=0 bf16");
  EXPECT_EQ(z.ho(), stem.ho());
  EXPECT_EQ(z.wo(), stem.wo());
  const ConvShape odd{1, 2, 8, 11, 5, 4, 4, 2, 1};
  EXPECT_EQ(cuda::space_to_depth_shape(odd).ho(), odd.ho());
  EXPECT_EQ(cuda::space_to_depth_shape(odd).wo(), odd.wo());
  EXPECT_TRUE(cuda::space_to_depth_fits(stem));
  EXPECT_FALSE(cuda::space_to_depth_fits(ConvShape{2, 5, 9, 9, 8, 3, 3, 2, 1}));   // 5 channels: 20 > 16
  EXPECT_FALSE(cuda::space_to_depth_fits(ConvShape{2, 3, 9, 9, 8, 3, 3, 1, 1}));   // stride 1
  EXPECT_FALSE(cuda::space_to_depth_fits(ConvShape{2, 3, 9, 9, 8, 1, 1, 2, 0}));   // a 1x1 kernel
}

// auto (the default): both forms are timed on the first forward and filter-gradient call, describe() reports
// both times, and whichever wins computes the right values.
TEST(GpuConvolution, StemFormAutoTimesBothAndMatchesCpu) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kAuto);
  check_conv(conv, stream.get(), ConvShape{2, 3, 32, 32, 16, 7, 7, 2, 3}, DType::BF16, 5100);
  const std::string d = conv.describe();
  EXPECT_EQ(occurrences(d, "; stem form: "), 2u) << d;
  EXPECT_EQ(occurrences(d, " ms timed against "), 2u) << d;
  std::printf("%s", d.c_str());
}

// Auto mode grows the workspace only for the form it keeps: afterwards it holds what an object given the same
// plans (the same algorithms and form, nothing timed) holds, whichever form was kept. The stride-1 form's own
// search, for a form then turned down, leaves no trace in it.
TEST(GpuConvolution, StemFormAutoGrowsTheWorkspaceOnlyForTheFormItKeeps) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  const ConvShape s{2, 3, 32, 32, 16, 7, 7, 2, 3};
  uint64_t seed = 5300;
  for (DType dt : {DType::F32, DType::BF16}) {
    cuda::Convolutions chosen(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kAuto);
    check_conv(chosen, stream.get(), s, dt, seed++);
    cuda::Convolutions given(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kDirect);
    given.use_plans(chosen.plans());
    check_conv(given, stream.get(), s, dt, seed++);
    EXPECT_EQ(chosen.workspace_bytes(), given.workspace_bytes()) << chosen.describe() << given.describe();
  }
}

// The form travels with the plans: a second object given the first's plans runs the stem in the same form
// without timing, and writes the same text back. Plans without the form (made before it existed, or choosing
// the direct form) run directly whatever the mode; a form on a pass or shape that has none is refused.
TEST(GpuConvolution, StemFormTravelsWithThePlans) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  const ConvShape s{2, 3, 18, 18, 8, 7, 7, 2, 3};
  cuda::Convolutions first(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kSpaceToDepth);
  check_conv(first, stream.get(), s, DType::BF16, 5200);
  const std::string text = first.plans();
  EXPECT_EQ(occurrences(text, " space_to_depth\n"), 2u) << text;

  cuda::Convolutions second(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kDirect);
  second.use_plans(text);
  check_conv(second, stream.get(), s, DType::BF16, 5201);
  EXPECT_EQ(second.plans(), text);
  EXPECT_EQ(occurrences(second.describe(), "; stem form: space_to_depth, as given"), 2u) << second.describe();

  cuda::Convolutions direct(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kDirect);
  check_conv(direct, stream.get(), s, DType::BF16, 5202);
  cuda::Convolutions third(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kSpaceToDepth);
  third.use_plans(direct.plans());
  check_conv(third, stream.get(), s, DType::BF16, 5203);
  EXPECT_EQ(third.describe().find("stem form"), std::string::npos) << third.describe();
  EXPECT_EQ(third.cached_shapes(), 1);

  expect_error([&] { third.use_plans("2 3 18 18 8 7 7 2 3 bf16 backward_data 1 1 1 -1 space_to_depth\n"); },
               "space_to_depth form");
  expect_error([&] { third.use_plans("2 16 9 9 8 3 3 1 1 bf16 forward 1 1 1 -1 space_to_depth\n"); },
               "space_to_depth form");
  expect_error([&] { third.use_plans("2 3 18 18 8 7 7 2 3 bf16 forward 1 1 1 -1 sideways\n"); }, "line 1");
  expect_error([&] { third.use_plans("2 3 18 18 8 7 7 2 3 bf16 forward 1 1 1 -1 space_to_depth x\n"); }, "line 1");
}

TEST(GpuConvolution, StemFormComesFromTheEnvironment) {
  test::ScopedEnv env("MOCO_STEM_FORM", nullptr);
  EXPECT_EQ(cuda::stem_form_from_env(), cuda::StemForm::kAuto);
  env.set("direct");
  EXPECT_EQ(cuda::stem_form_from_env(), cuda::StemForm::kDirect);
  env.set("space_to_depth");
  EXPECT_EQ(cuda::stem_form_from_env(), cuda::StemForm::kSpaceToDepth);
  env.set("auto");
  EXPECT_EQ(cuda::stem_form_from_env(), cuda::StemForm::kAuto);
  env.set("s2d");
  expect_error([] { cuda::stem_form_from_env(); }, "MOCO_STEM_FORM=s2d");
}

// The space-to-depth input covers x's rows and columns up to an even count, so with no padding and an odd
// H - kh the last one is in z, against a zero weight. The direct convolution never reads it, and neither
// does the form: an Inf or NaN there leaves the output finite and equal to the CPU's.
TEST(GpuConvolution, StemSpaceToDepthIgnoresWhatTheDirectFormNeverReads) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kSpaceToDepth);
  const ConvShape s{1, 3, 8, 8, 4, 3, 3, 2, 0};  // Ho = 3: rows and columns 0..6 are read, 7 is not
  std::vector<float> x = normals((size_t)(s.n * s.ci * s.h * s.w), 61), w = normals((size_t)(s.co * s.ci * 9), 62);
  for (int64_t c = 0; c < s.ci; ++c)
    for (int64_t i = 0; i < s.h; ++i) {
      x[(size_t)((c * s.h + 7) * s.w + i)] = std::nanf("");                // row 7
      x[(size_t)((c * s.h + i) * s.w + 7)] = i % 2 ? INFINITY : -INFINITY;  // column 7
    }
  const size_t ny = (size_t)(s.n * s.co * s.ho() * s.wo());
  std::vector<double> ref(ny), mag(ny);
  {
    const auto xd = widened(x, false), wd = widened(w, false), xa = widened(x, true), wa = widened(w, true);
    cpu::conv2d_forward<double>(s, xd.data(), wd.data(), ref.data());
    cpu::conv2d_forward<double>(s, xa.data(), wa.data(), mag.data());
  }
  DeviceValues dx(channels_last(x, s.n, s.ci, s.h, s.w), DType::F32, "x");
  DeviceValues dw(channels_last(w, s.co, s.ci, s.kh, s.kw), DType::F32, "w");
  DeviceValues y(ny, DType::F32, "y");
  y.poison();
  conv.forward(s, DType::F32, dx.get(), dw.get(), y.get());
  MOCO_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  EXPECT_TRUE(within(channels_first(y.download(), s.n, s.co, s.ho(), s.wo()), ref, mag, kRelF32, "forward"))
      << conv.describe();
  EXPECT_NE(conv.describe().find("stem form: space_to_depth"), std::string::npos) << conv.describe();
}

// Auto mode on a frozen, empty workspace: the stem keeps the direct form (the space-to-depth one is timed in
// scratch, and would need the workspace to grow), or, where even the direct plan needs workspace, the search
// refuses the shape. Which of the two depends on the algorithms measured fastest (on the emulator: the
// refusal). Either way the workspace never grows.
TEST(GpuConvolution, StemFormAutoNeverGrowsAFrozenWorkspace) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  cuda::Convolutions conv(stream.get(), cuda::ConvApi::kLegacy, cuda::StemForm::kAuto);
  conv.freeze();
  const ConvShape s{2, 3, 32, 32, 8, 7, 7, 2, 3};
  const size_t nx = (size_t)(s.n * s.ci * s.h * s.w), ny = (size_t)(s.n * s.co * s.ho() * s.wo());
  DeviceValues x(nx, DType::BF16, "x"), w((size_t)(s.co * s.ci * 49), DType::BF16, "w"), y(ny, DType::BF16, "y");
  x.fill_bytes(0);
  w.fill_bytes(0);
  y.poison();
  try {
    conv.forward(s, DType::BF16, x.get(), w.get(), y.get());
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    for (float v : y.download()) ASSERT_EQ(v, 0.f);
    const std::string d = conv.describe();
    EXPECT_NE(d.find("stem form: direct"), std::string::npos) << d;
    std::printf("%s", d.c_str());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("frozen"), std::string::npos) << e.what();
  }
  EXPECT_EQ(conv.workspace_bytes(), 0u);
}
