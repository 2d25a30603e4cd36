// Augmentation pipelines (SPEC section 3) against independent oracles: the torchvision crop algorithm
// replayed here from its description on the same Rng draws, hand-computed pixel values, plain reference
// loops written in this file, and binomial / uniform statistics over many draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "moco/augment.h"
#include "moco/error.h"

using namespace moco;

namespace {

// Statistical tolerances: every rate or mean below is checked to 5 standard errors of its estimate
// (binomial: sqrt(p (1 - p) / n); uniform on [a, b]: (b - a) / sqrt(12 n)). A correct implementation fails
// such a check with probability below 1e-6, and the draws are deterministic, so a pass stays a pass.
constexpr int kDraws = 20000;
double binomial_tol(double p, int n) { return 5.0 * std::sqrt(p * (1.0 - p) / n); }
double uniform_mean_tol(double a, double b, int n) { return 5.0 * (b - a) / std::sqrt(12.0 * n); }

Rng key_rng(uint64_t seed, uint64_t sample, uint64_t view = 0, uint64_t epoch = 0) {
  return Rng(seed, view_stream(epoch, sample, view));
}

// An image whose every pixel is (r, g, b) = f(y, x).
template <class F>
Image make_image(int h, int w, F f) {
  Image img;
  img.h = h;
  img.w = w;
  img.pixels.resize((size_t)h * w * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)f(y, x, c);
  return img;
}

Image noise_image(int h, int w, uint64_t seed) {
  Rng r(seed, 12345);
  return make_image(h, w, [&](int, int, int) { return (int)r.below(256); });
}

// ---- the torchvision RandomResizedCrop algorithm, replayed from its description

CropBox replay_rrc(int H, int W, double lo, double hi, Rng& r, int* tries = nullptr) {
  const double lr0 = std::log(3.0 / 4.0), lr1 = std::log(4.0 / 3.0);
  for (int t = 0; t < 10; ++t) {
    double target = (double)H * W * (lo + (hi - lo) * r.uniform());
    double aspect = std::exp(lr0 + (lr1 - lr0) * r.uniform());
    // std::nearbyint rounds halves to even in the default rounding mode, as Python's round does.
    int w = (int)std::nearbyint(std::sqrt(target * aspect));
    int h = (int)std::nearbyint(std::sqrt(target / aspect));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      int top = (int)std::floor(r.uniform() * (H - h + 1));
      int left = (int)std::floor(r.uniform() * (W - w + 1));
      if (tries) *tries = t + 1;
      return CropBox{top, left, h, w};
    }
  }
  if (tries) *tries = 11;
  int w = W, h = H;
  if ((double)W / H < 0.75) h = (int)std::nearbyint(W / 0.75);
  else if ((double)W / H > 4.0 / 3.0) w = (int)std::nearbyint(H * 4.0 / 3.0);
  return CropBox{(H - h) / 2, (W - w) / 2, h, w};
}

// ---- plain reference for the bilinear resize, one output value at a time in double: PIL's bilinear filter,
// which torchvision's PIL path runs. Growing an axis, the two neighbours of src = (d + 0.5) * in / out - 0.5
// (clamped at the box's edges); shrinking it, the triangle of half-width in / out around (d + 0.5) * in / out,
// over every source pixel it covers, normalised.

// (source index, weight) pairs of output coordinate d of an axis of `in` pixels resized to `out`.
std::vector<std::pair<int, double>> ref_axis_weights(int d, int in, int out) {
  const double scale = (double)in / out;
  std::vector<std::pair<int, double>> w;
  if (in <= out) {
    const double src = std::max(0.0, (d + 0.5) * scale - 0.5);
    const int i0 = std::min((int)src, in - 1), i1 = std::min(i0 + 1, in - 1);
    w.push_back({i0, 1.0 - (src - i0)});
    w.push_back({i1, src - i0});
    return w;
  }
  const double centre = (d + 0.5) * scale;
  double sum = 0;
  for (int j = 0; j < in; ++j) {
    const double t = std::fabs(j + 0.5 - centre) / scale;  // the pixel's centre, in units of the half-width
    if (t < 1.0) {  // under the triangle
      w.push_back({j, 1.0 - t});
      sum += 1.0 - t;
    }
  }
  for (auto& p : w) p.second /= sum;
  return w;
}

// PIL's bilinear weights of ref_axis_weights in its fixed point (1 = 2^22, halves away from zero).
std::vector<std::pair<int, int32_t>> ref_fixed_weights(int d, int in, int out) {
  std::vector<std::pair<int, int32_t>> w;
  for (const auto& [j, v] : ref_axis_weights(d, in, out)) w.push_back({j, (int32_t)(v * (1 << 22) + 0.5)});
  return w;
}

// One of PIL's passes on (h, w, 3) bytes: along x to `n` columns or along y to `n` rows, each output the
// fixed-point sum of its taps rounded to a byte, (2^21 + sum) >> 22, clamped.
std::vector<uint8_t> ref_pil_pass(const std::vector<uint8_t>& in, int h, int w, bool along_x, int n) {
  const int oh = along_x ? h : n, ow = along_x ? n : w;
  std::vector<uint8_t> out((size_t)oh * ow * 3);  // (oh, ow, 3)
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x)
      for (int c = 0; c < 3; ++c) {
        int64_t acc = 1 << 21;
        for (const auto& [j, wt] : ref_fixed_weights(along_x ? x : y, along_x ? w : h, n)) {
          const int sy = along_x ? y : j, sx = along_x ? j : x;
          acc += (int64_t)wt * in[((size_t)sy * w + sx) * 3 + c];
        }
        out[((size_t)y * ow + x) * 3 + c] = (uint8_t)std::min<int64_t>(255, std::max<int64_t>(0, acc >> 22));
      }
  return out;
}

// (oh, ow, 3) bytes: the box of img resized to (oh, ow) as PIL does it, in two passes: along x, then along y;
// or (y_first) along y, then along x.
std::vector<uint8_t> ref_resize_pil(const Image& img, CropBox b, int oh, int ow, bool y_first = false) {
  std::vector<uint8_t> box((size_t)b.h * b.w * 3);  // (b.h, b.w, 3): the box cropped
  for (int y = 0; y < b.h; ++y)
    for (int x = 0; x < b.w; ++x)
      for (int c = 0; c < 3; ++c) box[((size_t)y * b.w + x) * 3 + c] = img.at(b.top + y, b.left + x, c);
  if (y_first) return ref_pil_pass(ref_pil_pass(box, b.h, b.w, false, oh), oh, b.w, true, ow);
  return ref_pil_pass(ref_pil_pass(box, b.h, b.w, true, ow), b.h, ow, false, oh);
}

// (oh, ow, 3) in [0, 1]: the box of img resized to (oh, ow) in exact arithmetic.
std::vector<float> ref_resize(const Image& img, CropBox b, int oh, int ow) {
  std::vector<float> out((size_t)oh * ow * 3);
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x) {
      const auto wy = ref_axis_weights(y, b.h, oh), wx = ref_axis_weights(x, b.w, ow);
      for (int c = 0; c < 3; ++c) {
        double v = 0;
        for (const auto& [iy, ay] : wy)
          for (const auto& [ix, ax] : wx) v += ay * ax * img.at(b.top + iy, b.left + ix, c);
        out[((size_t)y * ow + x) * 3 + c] = (float)(v / 255.0);
      }
    }
  return out;
}

// (3, h, w) from (h, w, 3) bytes, as torchvision's ToTensor (u / 255) and Normalize ((x - mean) / std) compute
// it in float32, with the constants of SPEC section 3 written out again.
std::vector<float> ref_normalize(const std::vector<uint8_t>& hwc, int h, int w) {
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  std::vector<float> out((size_t)3 * h * w);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < h * w; ++i) {
      const float x = (float)hwc[(size_t)i * 3 + c] / 255.f;
      out[(size_t)c * h * w + i] = (x - mean[c]) / sd[c];
    }
  return out;
}

// The bytes as floats in [0, 1], to set them beside the exact-arithmetic resize.
std::vector<float> unit_floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> f(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) f[i] = (float)bytes[i] / 255.f;
  return f;
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  float worst = 0.f;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::fabs(got[i] - want[i]) > worst) worst = std::fabs(got[i] - want[i]), at = i;
  EXPECT_LE(worst, tol) << what << ": worst error at index " << at << " (got " << got[at] << ", want " << want[at] << ")";
}


}  // namespace

// ================================================================ recipes

TEST(AugmentRecipe, NamedRecipesCarrySpecParameters) {
  AugmentRecipe v1 = recipe_from_name("v1");
  EXPECT_EQ(v1.kind, AugmentKind::V1);
  EXPECT_EQ(v1.size, 224);
  EXPECT_FLOAT_EQ(v1.scale_lo, 0.2f);
  EXPECT_FLOAT_EQ(v1.hue, 0.4f);
  EXPECT_FLOAT_EQ(v1.p_jitter, 1.f);
  EXPECT_FLOAT_EQ(v1.p_blur, 0.f);
  AugmentRecipe v2 = recipe_from_name("v2", 96);
  EXPECT_EQ(v2.size, 96);
  EXPECT_FLOAT_EQ(v2.hue, 0.1f);
  EXPECT_FLOAT_EQ(v2.p_jitter, 0.8f);
  EXPECT_FLOAT_EQ(v2.p_blur, 0.5f);
  EXPECT_FLOAT_EQ(v2.sigma_lo, 0.1f);
  EXPECT_FLOAT_EQ(v2.sigma_hi, 2.0f);
  AugmentRecipe small = recipe_from_name("small");
  EXPECT_EQ(small.size, 32);
  EXPECT_FLOAT_EQ(small.scale_lo, 0.08f);
  EXPECT_FLOAT_EQ(small.p_blur, 0.f);
  AugmentRecipe lin = recipe_from_name("lincls_train");
  EXPECT_FLOAT_EQ(lin.scale_lo, 0.08f);
  EXPECT_FLOAT_EQ(lin.p_jitter + lin.p_gray + lin.p_blur, 0.f);
  EXPECT_TRUE(recipe_from_name("eval").eval_center_crop);
  EXPECT_FALSE(recipe_from_name("eval", 32).eval_center_crop);
  for (const char* n : {"v1", "v2", "small", "lincls_train", "eval"})
    EXPECT_EQ(std::string(recipe_name(recipe_from_name(n).kind)), n);
}

TEST(AugmentRecipe, ErrorsNameTheBadValueAndTheAcceptedOnes) {
  try {
    recipe_from_name("v3");
    FAIL() << "an unknown recipe should throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'v3'"), std::string::npos) << m;
    EXPECT_NE(m.find("v1, v2, small, lincls_train, eval"), std::string::npos) << m;
  }
  try {
    recipe_from_name("v2", -5);
    FAIL() << "a negative size should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-5"), std::string::npos) << e.what();
  }
  std::vector<float> out(3 * 32 * 32);
  Image bad;
  bad.h = 4;
  bad.w = 4;
  bad.pixels.resize(10);
  EXPECT_THROW(augment_view(bad, recipe_from_name("small"), 0, 0, 0, 0, out.data()), Error);
  Image ok = noise_image(8, 8, 1);
  EXPECT_THROW(augment_view(ok, recipe_from_name("small"), 0, 0, 0, 0, nullptr), Error);
}

// ================================================================ RandomResizedCrop boxes

// MOCO_RESIZE_AS_PILLOW picks the Pillow whose resize the views reproduce: 13 by default, 12 on request, and
// anything else is an error that names the value.
TEST(AugmentRecipe, ResizeAsPillowComesFromTheEnvironment) {
  const char* before = std::getenv("MOCO_RESIZE_AS_PILLOW");
  const std::string saved = before ? before : "";
  unsetenv("MOCO_RESIZE_AS_PILLOW");
  EXPECT_EQ(recipe_from_name("v2").pillow, PillowResize::Pillow13);
  setenv("MOCO_RESIZE_AS_PILLOW", "12", 1);
  EXPECT_EQ(recipe_from_name("eval").pillow, PillowResize::UpTo12);
  setenv("MOCO_RESIZE_AS_PILLOW", "11", 1);
  try {
    recipe_from_name("v1");
    ADD_FAILURE() << "MOCO_RESIZE_AS_PILLOW=11 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MOCO_RESIZE_AS_PILLOW=11"), std::string::npos) << e.what();
  }
  if (before) setenv("MOCO_RESIZE_AS_PILLOW", saved.c_str(), 1);
  else unsetenv("MOCO_RESIZE_AS_PILLOW");
}

TEST(AugmentCrop, BoxesReplayTorchvisionExactly) {
  struct Case { int h, w; float lo, hi; };
  const Case cases[] = {{256, 256, 0.2f, 1.f}, {375, 500, 0.2f, 1.f}, {640, 480, 0.08f, 1.f},
                        {28, 28, 0.08f, 1.f},  {100, 100, 0.9f, 1.f}, {32, 32, 0.08f, 1.f}};
  int multi_try = 0;
  for (const Case& c : cases)
    for (uint64_t s = 0; s < 200; ++s) {
      Rng a = key_rng(7, s), b = key_rng(7, s);
      int tries = 0;
      CropBox got = random_resized_crop_box(c.h, c.w, c.lo, c.hi, a);
      CropBox want = replay_rrc(c.h, c.w, c.lo, c.hi, b, &tries);
      multi_try += tries > 1;
      ASSERT_EQ(got, want) << c.h << "x" << c.w << " sample " << s << ": got (" << got.top << ", " << got.left
                           << ", " << got.h << ", " << got.w << ") want (" << want.top << ", " << want.left << ", "
                           << want.h << ", " << want.w << ")";
      ASSERT_EQ(a.next_u32(), b.next_u32()) << "the crop consumed a different number of draws";
      ASSERT_GE(got.top, 0);
      ASSERT_LE(got.top + got.h, c.h);
      ASSERT_LE(got.left + got.w, c.w);
    }
  EXPECT_GT(multi_try, 50) << "the cases should exercise rejected tries (scale 0.9-1 on a square rejects often)";
}

TEST(AugmentCrop, FallbackOnExtremeAspectRatios) {
  // Hand-computed: 10 rows x 200 columns is wider than 4/3, so h = 10, w = round(10 * 4/3) = round(13.33) = 13,
  // left = (200 - 13) // 2 = 93. Every try fails: the smallest area 0.2 * 2000 = 400 at ratio <= 4/3 needs
  // h >= sqrt(400 * 3/4) = 17.3 > 10 rows.
  EXPECT_EQ(rrc_fallback_box(10, 200), (CropBox{0, 93, 10, 13}));
  EXPECT_EQ(rrc_fallback_box(200, 10), (CropBox{93, 0, 13, 10}));
  EXPECT_EQ(rrc_fallback_box(100, 120), (CropBox{0, 0, 100, 120}));  // ratio 1.2 is inside [3/4, 4/3]
  // 30 x 100: h = 30, w = round(40) = 40, left = 30.
  EXPECT_EQ(rrc_fallback_box(30, 100), (CropBox{0, 30, 30, 40}));
  for (uint64_t s = 0; s < 100; ++s) {
    Rng a = key_rng(3, s), b = key_rng(3, s);
    EXPECT_EQ(random_resized_crop_box(10, 200, 0.2f, 1.f, a), (CropBox{0, 93, 10, 13}));
    EXPECT_EQ(random_resized_crop_box(200, 10, 0.2f, 1.f, b), (CropBox{93, 0, 13, 10}));
    Rng c = key_rng(3, s);
    for (int i = 0; i < 20; ++i) c.uniform();  // ten failed tries are exactly 20 uniforms
    EXPECT_EQ(a.next_u32(), c.next_u32());
  }
}

TEST(AugmentCrop, AreaAndAspectDistributions) {
  // Scale 0.08-0.5 on a 1000x1000 image never rejects (the widest box is sqrt(0.5 * 4/3) = 0.82 of the
  // side), so the area fraction is uniform on [0.08, 0.5] and the log aspect ratio uniform on
  // [ln 3/4, ln 4/3], up to the rounding of sides of >= 245 pixels (< 0.005 in log ratio).
  const int H = 1000, W = 1000;
  const double lo = 0.08, hi = 0.5, l0 = std::log(0.75), l1 = std::log(4.0 / 3.0);
  std::vector<double> frac, logr;
  for (int s = 0; s < kDraws; ++s) {
    Rng r = key_rng(11, (uint64_t)s);
    CropBox b = random_resized_crop_box(H, W, (float)lo, (float)hi, r);
    frac.push_back((double)b.h * b.w / (H * W));
    logr.push_back(std::log((double)b.w / b.h));
  }
  double mf = 0, ml = 0;
  for (int i = 0; i < kDraws; ++i) mf += frac[i] / kDraws, ml += logr[i] / kDraws;
  EXPECT_NEAR(mf, (lo + hi) / 2, uniform_mean_tol(lo, hi, kDraws) + 1e-3);
  EXPECT_NEAR(ml, 0.0, uniform_mean_tol(l0, l1, kDraws) + 5e-3);
  EXPECT_GE(*std::min_element(frac.begin(), frac.end()), lo - 2e-3);
  EXPECT_LE(*std::max_element(frac.begin(), frac.end()), hi + 2e-3);
  EXPECT_GE(*std::min_element(logr.begin(), logr.end()), l0 - 5e-3);
  EXPECT_LE(*std::max_element(logr.begin(), logr.end()), l1 + 5e-3);
  // Quantiles of a uniform: the q-quantile estimate has standard error sqrt(q (1 - q) / n) * (b - a).
  std::sort(frac.begin(), frac.end());
  std::sort(logr.begin(), logr.end());
  for (double q : {0.1, 0.25, 0.5, 0.75, 0.9}) {
    double se = std::sqrt(q * (1 - q) / kDraws);
    EXPECT_NEAR(frac[(size_t)(q * kDraws)], lo + q * (hi - lo), 5 * se * (hi - lo) + 2e-3) << "q " << q;
    EXPECT_NEAR(logr[(size_t)(q * kDraws)], l0 + q * (l1 - l0), 5 * se * (l1 - l0) + 5e-3) << "q " << q;
  }
  // With the v1 scale on a 500x500 image every box stays within [0.2, 1] of the area (rejections included).
  for (int s = 0; s < 2000; ++s) {
    Rng r = key_rng(12, (uint64_t)s);
    CropBox b = random_resized_crop_box(500, 500, 0.2f, 1.f, r);
    double f = (double)b.h * b.w / (500.0 * 500.0);
    ASSERT_GE(f, 0.2 - 5e-3);
    ASSERT_LE(f, 1.0);
  }
}

// ================================================================ bilinear resize

// `bytes` bytes of fixture <folder>/<name> (tests/fixtures), written by tools/<folder>_fixtures.py.
static std::vector<uint8_t> read_fixture_bytes(const std::string& folder, const std::string& name, size_t bytes) {
  std::ifstream f(std::string(MOCO_FIXTURE_DIR) + "/" + folder + "/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing fixture " << folder << "/" << name << "; run tools/" << folder << "_fixtures.py";
  std::vector<uint8_t> v(bytes);
  f.read(reinterpret_cast<char*>(v.data()), (std::streamsize)bytes);
  EXPECT_EQ((size_t)f.gcount(), bytes) << folder << "/" << name;
  return v;
}

TEST(AugmentResize, FourByFourToTwoByTwoHandValues) {
  // Halving an axis of 4 (PIL's antialiased bilinear): output 0 centres at 1 and takes pixels 0, 1, 2 with the
  // triangle of half-width 2, weights 0.75, 0.75, 0.25, normalised to 3/7, 3/7, 1/7; output 1 centres at 3
  // and takes pixels 1, 2, 3 with 1/7, 3/7, 3/7. v(y, x) = 16 y + 4 x. PIL's first pass, along x, gives each
  // row 16 y + 20/7 and 16 y + 64/7 rounded to bytes: (3, 9), (19, 25), (35, 41), (51, 57). The second, along
  // y: (3 3 + 3 19 + 35) / 7 = 14.4 -> 14, (3 9 + 3 25 + 41) / 7 = 20.4 -> 20, (19 + 3 35 + 3 51) / 7 = 39.6
  // -> 40, (25 + 3 41 + 3 57) / 7 = 45.6 -> 46. (Exact arithmetic would give 14.3, 20.6, 39.4, 45.7: the byte
  // after the first pass moves 20.6 to 20.)
  Image img = make_image(4, 4, [](int y, int x, int) { return 16 * y + 4 * x; });
  std::vector<uint8_t> out(2 * 2 * 3);
  resize_bilinear(img, CropBox{0, 0, 4, 4}, 2, 2, CropBox{0, 0, 2, 2}, PillowResize::UpTo12, out.data());
  const int want[4] = {14, 20, 40, 46};
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(out[i * 3 + c], want[i]) << "pixel " << i;
  // Both axes shrink by 2 pixels, so Pillow 13 also resizes along x first here.
  EXPECT_FALSE(pil_resizes_y_first(4, 4, 2, 2, PillowResize::Pillow13));
}

// Pillow 13's choice of the first pass (found against Pillow 13.0.0): along y when the height shrinks by more
// than twice as many pixels as the width; never for Pillow 12.
TEST(AugmentResize, PillowThirteenGoesAlongYFirstWhenTheHeightShrinksMore) {
  const PillowResize p13 = PillowResize::Pillow13, p12 = PillowResize::UpTo12;
  EXPECT_TRUE(pil_resizes_y_first(200, 120, 41, 41, p13));   // 159 > 2 x 79
  EXPECT_FALSE(pil_resizes_y_first(200, 120, 42, 41, p13));  // 158 = 2 x 79: not more
  EXPECT_TRUE(pil_resizes_y_first(100, 20, 99, 40, p13));    // the width grows: any shrink of the height
  EXPECT_FALSE(pil_resizes_y_first(100, 20, 120, 40, p13));  // the height grows
  EXPECT_FALSE(pil_resizes_y_first(100, 300, 10, 20, p13));  // 90 < 2 x 280
  EXPECT_FALSE(pil_resizes_y_first(200, 120, 41, 41, p12));
}

// Against Pillow (tools/pil_resize_fixtures.py): each box of the picture, cropped and resized as torchvision's
// PIL path does it, shrinking (antialiased) and growing. PIL sums in fixed point and rounds to a byte after
// each pass, so the order of the passes shows: Pillow 13's own resize (<name>.rgb) and the horizontal-first
// order of every Pillow up to 12 (<name>.hfirst.rgb) must both be met byte for byte, and the cases include
// shapes on both sides of the boundary where Pillow 13 goes along y first.
TEST(AugmentResize, MatchesPillowExactly) {
  auto read = [](const std::string& name, size_t bytes) { return read_fixture_bytes("pil_resize", name, bytes); };
  Image pic;
  pic.h = 61, pic.w = 83;
  pic.pixels = read("picture.rgb", (size_t)pic.h * pic.w * 3);
  std::ifstream cases(std::string(MOCO_FIXTURE_DIR) + "/pil_resize/cases.txt");
  int n = 0, y_first = 0, orders_differ = 0;
  std::string name;
  CropBox box;
  int oh = 0, ow = 0;
  while (cases >> name >> box.top >> box.left >> box.h >> box.w >> oh >> ow) {
    const std::vector<uint8_t> hfirst = read(name + ".hfirst.rgb", (size_t)oh * ow * 3);
    const std::vector<uint8_t> pillow13 = read(name + ".rgb", (size_t)oh * ow * 3);
    std::vector<uint8_t> got12((size_t)oh * ow * 3), got13(got12.size());
    resize_bilinear(pic, box, oh, ow, CropBox{0, 0, oh, ow}, PillowResize::UpTo12, got12.data());
    resize_bilinear(pic, box, oh, ow, CropBox{0, 0, oh, ow}, PillowResize::Pillow13, got13.data());
    EXPECT_EQ(got12, hfirst) << name << ": Pillow 12's order, along x first";
    EXPECT_EQ(got13, pillow13) << name << ": Pillow 13's resize";
    y_first += pil_resizes_y_first(box.h, box.w, oh, ow, PillowResize::Pillow13);
    orders_differ += hfirst != pillow13;
    ++n;
  }
  EXPECT_EQ(n, 10);
  // The fixtures exercise both orders, and the order changes bytes in them (else the test could not fail).
  EXPECT_EQ(y_first, 3);
  EXPECT_EQ(orders_differ, 3);
}

TEST(AugmentResize, FourByFourToEightByEightHandValues) {
  // Upsampling by 2: source coordinates d / 2 - 0.25 = (-0.25 -> 0), 0.25, 0.75, ..., 2.75, (3.25 -> 3). On
  // v = 16 y + 4 x both passes land on whole grey levels, so no rounding shows.
  const double coord[8] = {0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3};
  Image lin = make_image(4, 4, [](int y, int x, int) { return 16 * y + 4 * x; });
  std::vector<uint8_t> out(8 * 8 * 3);
  resize_bilinear(lin, CropBox{0, 0, 4, 4}, 8, 8, CropBox{0, 0, 8, 8}, PillowResize::Pillow13, out.data());
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) EXPECT_EQ(out[(y * 8 + x) * 3], 16 * coord[y] + 4 * coord[x]);
  // A single 255 pixel at (1, 2). Along x, row 1 becomes 0.75 255 = 191.25 -> 191 at columns 4 and 5 (samples
  // 1.75 and 2.25) and 0.25 255 = 63.75 -> 64 at column 3 (sample 1.25). Along y, rows 2 and 3 (samples 0.75
  // and 1.25) take 0.75 of row 1: 143.25 -> 143 at (2, 4) and (3, 5), 48 at (2, 3).
  Image dot = make_image(4, 4, [](int y, int x, int) { return (y == 1 && x == 2) ? 255 : 0; });
  resize_bilinear(dot, CropBox{0, 0, 4, 4}, 8, 8, CropBox{0, 0, 8, 8}, PillowResize::Pillow13, out.data());
  EXPECT_EQ(out[(2 * 8 + 4) * 3], 143);
  EXPECT_EQ(out[(3 * 8 + 5) * 3], 143);
  EXPECT_EQ(out[(2 * 8 + 3) * 3], 48);
  EXPECT_EQ(out[0], 0);
}

TEST(AugmentResize, BoxAndWindowMatchThePlainReference) {
  Image img = noise_image(40, 30, 5);
  const PillowResize p13 = PillowResize::Pillow13;
  // A box inside the image reads only inside the box: compare with the reference on the box. The tall box
  // shrinks its height by more than twice its width's shrink, so Pillow 13 goes along y first; Pillow 12 not.
  const std::tuple<CropBox, int, int> cases[] = {{CropBox{3, 7, 11, 13}, 17, 9}, {CropBox{2, 5, 35, 13}, 12, 9}};
  for (const auto& [box, oh, ow] : cases) {
    const bool y_first = pil_resizes_y_first(box.h, box.w, oh, ow, p13);
    std::vector<uint8_t> out((size_t)oh * ow * 3);
    resize_bilinear(img, box, oh, ow, CropBox{0, 0, oh, ow}, p13, out.data());
    EXPECT_EQ(out, ref_resize_pil(img, box, oh, ow, y_first)) << "box resize, y first " << y_first;
    resize_bilinear(img, box, oh, ow, CropBox{0, 0, oh, ow}, PillowResize::UpTo12, out.data());
    EXPECT_EQ(out, ref_resize_pil(img, box, oh, ow, false)) << "box resize as Pillow 12";
    // The exact-arithmetic resize is within a grey level of PIL's two rounded passes (the reference's own check).
    expect_near_all(unit_floats(ref_resize_pil(img, box, oh, ow, y_first)), ref_resize(img, box, oh, ow),
                    1.f / 255.f + 1e-6f, "rounding");
  }
  EXPECT_TRUE(pil_resizes_y_first(35, 13, 12, 9, p13));
  // A window of the resized image is that part of the full result, in either order.
  for (const auto& [dst_h, dst_w] : {std::pair{60, 50}, std::pair{11, 26}}) {
    const bool y_first = pil_resizes_y_first(40, 30, dst_h, dst_w, p13);
    const CropBox win{5, 20, 6, 5};
    std::vector<uint8_t> full = ref_resize_pil(img, CropBox{0, 0, 40, 30}, dst_h, dst_w, y_first);
    std::vector<uint8_t> got((size_t)win.h * win.w * 3), want;
    resize_bilinear(img, CropBox{0, 0, 40, 30}, dst_h, dst_w, win, p13, got.data());
    for (int y = 0; y < win.h; ++y)
      for (int x = 0; x < win.w; ++x)
        for (int c = 0; c < 3; ++c) want.push_back(full[((size_t)(win.top + y) * dst_w + win.left + x) * 3 + c]);
    EXPECT_EQ(got, want) << "window of " << dst_h << "x" << dst_w << ", y first " << y_first;
  }
  EXPECT_TRUE(pil_resizes_y_first(40, 30, 11, 26, p13));
  std::vector<uint8_t> out(16 * 3);
  EXPECT_THROW(resize_bilinear(img, CropBox{35, 0, 10, 10}, 4, 4, CropBox{0, 0, 4, 4}, p13, out.data()), Error);
}

// ================================================================ colour ops

// PIL's grey level, hand-computed: (19595 R + 38470 G + 7471 B + 32768) >> 16.
TEST(AugmentColor, GrayscaleIsPilsFixedPointLuma) {
  uint8_t p[6] = {51, 102, 153, 255, 0, 0};
  to_grayscale(p, 2);
  // 51 19595 + 102 38470 + 153 7471 + 32768 = 999345 + 3923940 + 1143063 + 32768 = 6099116; >> 16 = 93
  // 255 19595 + 32768 = 5029493; >> 16 = 76
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(p[c], 93);
    EXPECT_EQ(p[3 + c], 76);
  }
}

// Image.blend by hand: d + f (v - d) in float, truncated (clamped outside [0, 1]).
TEST(AugmentColor, BrightnessContrastSaturationAsPilBlends) {
  uint8_t b[3] = {51, 102, 204};
  adjust_brightness(b, 1, 1.5f);  // 76.5 -> 76, 153, 306 -> clamped 255
  EXPECT_EQ(b[0], 76);
  EXPECT_EQ(b[1], 153);
  EXPECT_EQ(b[2], 255);
  uint8_t d[3] = {51, 102, 204};
  adjust_brightness(d, 1, 0.5f);  // 25.5 -> 25 (truncated, not rounded), 51, 102
  EXPECT_EQ(d[0], 25);
  EXPECT_EQ(d[1], 51);
  EXPECT_EQ(d[2], 102);
  // Contrast blends towards the image's mean grey level, rounded to an integer: red (grey 76) and blue (grey
  // 29: 255 7471 + 32768 >> 16) have mean 52.5 -> 53; at factor 0.5 red becomes 53 + 0.5 (255 - 53) = 154 and
  // 53 + 0.5 (0 - 53) = 26.5 -> 26.
  uint8_t c[6] = {255, 0, 0, 0, 0, 255};
  EXPECT_EQ(mean_grey_level(c, 2), 53);
  adjust_contrast(c, 2, 0.5f);
  EXPECT_EQ(c[0], 154);
  EXPECT_EQ(c[1], 26);
  EXPECT_EQ(c[5], 154);
  // Saturation blends towards the pixel's own grey: red (grey 76) at 0.5 -> 165.5 -> 165, 38; at 2 -> 434 and
  // -76, clamped to 255 and 0.
  uint8_t s[3] = {255, 0, 0};
  adjust_saturation(s, 1, 0.5f);
  EXPECT_EQ(s[0], 165);
  EXPECT_EQ(s[1], 38);
  uint8_t s2[3] = {255, 0, 0};
  adjust_saturation(s2, 1, 2.f);
  EXPECT_EQ(s2[0], 255);
  EXPECT_EQ(s2[1], 0);
}

// The hue step is int(255 shift) truncated, modulo 256: 1/3 -> 85, -1/3 -> -85 -> 171.
TEST(AugmentColor, HueTurnsRedIntoGreenAndBlue) {
  EXPECT_EQ(hue_turn(1.f / 3.f), 85);
  EXPECT_EQ(hue_turn(-1.f / 3.f), 171);
  EXPECT_EQ(hue_turn(-0.001f), 0);  // -0.255 truncates to 0
  uint8_t red[3] = {255, 0, 0};
  adjust_hue(red, 1, 1.f / 3.f);  // hue byte 85: sextant 2, fraction 0 -> (0, 255, 0)
  EXPECT_EQ(red[0], 0);
  EXPECT_EQ(red[1], 255);
  EXPECT_EQ(red[2], 0);
  uint8_t red2[3] = {255, 0, 0};
  adjust_hue(red2, 1, -1.f / 3.f);  // hue byte 171: sextant 4, fraction 171 6 / 255 - 4 = 0.0235 -> (6, 0, 255)
  EXPECT_EQ(red2[0], 6);
  EXPECT_EQ(red2[1], 0);
  EXPECT_EQ(red2[2], 255);
  uint8_t g[3] = {77, 77, 77};  // grey has no hue
  adjust_hue(g, 1, 0.25f);
  for (uint8_t v : g) EXPECT_EQ(v, 77);
}

TEST(AugmentColor, JitterOrderMattersAsHandComputed) {
  // Grey pixels 204 and 51. Brightness 1.5 then contrast 0: (306 -> 255, 76.5 -> 76), mean 165.5 -> 166.
  // Contrast 0 then brightness 1.5: mean 127.5 -> 128, then 192.
  ColorJitterParams p;
  p.brightness = 1.5f;
  p.contrast = 0.f;
  uint8_t a[6] = {204, 204, 204, 51, 51, 51};
  p.order[0] = 0, p.order[1] = 1, p.order[2] = 2, p.order[3] = 3;
  apply_color_jitter(a, 2, p);
  for (uint8_t v : a) EXPECT_EQ(v, 166);
  uint8_t b[6] = {204, 204, 204, 51, 51, 51};
  p.order[0] = 1, p.order[1] = 0;
  apply_color_jitter(b, 2, p);
  for (uint8_t v : b) EXPECT_EQ(v, 192);
}

// Against Pillow (tools/pil_color_fixtures.py): every colour op of the recipes, as torchvision applies it to a
// PIL image (ImageEnhance's Brightness, Contrast and Color; the hue through convert("HSV"); convert("L") for
// grayscale), at factors inside and outside [0, 1], on 64 x 64 pixels of every kind (random colours,
// greys, ties between channels, the extremes). The bytes must be equal.
TEST(AugmentColor, MatchesPillowExactly) {
  const int h = 64, w = 64;
  const std::vector<uint8_t> in = read_fixture_bytes("pil_color", "pixels.rgb", (size_t)h * w * 3);
  std::ifstream cases(std::string(MOCO_FIXTURE_DIR) + "/pil_color/cases.txt");
  int n = 0;
  std::string name, op;
  float factor = 0;
  while (cases >> name >> op >> factor) {
    const std::vector<uint8_t> want = read_fixture_bytes("pil_color", name + ".rgb", in.size());
    std::vector<uint8_t> got = in;
    if (op == "brightness") adjust_brightness(got.data(), h * w, factor);
    else if (op == "contrast") adjust_contrast(got.data(), h * w, factor);
    else if (op == "saturation") adjust_saturation(got.data(), h * w, factor);
    else if (op == "hue") adjust_hue(got.data(), h * w, factor);
    else if (op == "gray") to_grayscale(got.data(), h * w);
    else FAIL() << "unknown op " << op;
    int differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += got[i] != want[i];
    EXPECT_EQ(differ, 0) << name << ": bytes that differ from Pillow's";
    ++n;
  }
  EXPECT_GE(n, 20);
}

TEST(AugmentColor, JitterFactorDistributions) {
  double sum[4] = {0, 0, 0, 0}, mn[4] = {9, 9, 9, 9}, mx[4] = {-9, -9, -9, -9};
  int first[4] = {0, 0, 0, 0};
  for (int s = 0; s < kDraws; ++s) {
    Rng r = key_rng(21, (uint64_t)s);
    ColorJitterParams p = draw_color_jitter(0.4f, 0.4f, 0.4f, 0.1f, r);
    int seen = 0;
    for (int k = 0; k < 4; ++k) seen |= 1 << p.order[k];
    ASSERT_EQ(seen, 15) << "order is not a permutation of the four ops";
    ++first[p.order[0]];
    const double f[4] = {p.brightness, p.contrast, p.saturation, p.hue};
    for (int k = 0; k < 4; ++k) sum[k] += f[k], mn[k] = std::min(mn[k], f[k]), mx[k] = std::max(mx[k], f[k]);
  }
  for (int k = 0; k < 3; ++k) {
    EXPECT_NEAR(sum[k] / kDraws, 1.0, uniform_mean_tol(0.6, 1.4, kDraws)) << "factor " << k;
    EXPECT_GE(mn[k], 0.6 - 1e-6);
    EXPECT_LE(mx[k], 1.4 + 1e-6);
    EXPECT_LT(mn[k], 0.61);  // the range is covered, not just respected
    EXPECT_GT(mx[k], 1.39);
  }
  EXPECT_NEAR(sum[3] / kDraws, 0.0, uniform_mean_tol(-0.1, 0.1, kDraws));
  EXPECT_GE(mn[3], -0.1 - 1e-6);
  EXPECT_LE(mx[3], 0.1 + 1e-6);
  for (int k = 0; k < 4; ++k)
    EXPECT_NEAR(first[k] / (double)kDraws, 0.25, binomial_tol(0.25, kDraws)) << "op " << k << " first";
  // Strength above 1 clamps the lower end at 0 (torchvision's max(0, 1 - x)).
  for (int s = 0; s < 1000; ++s) {
    Rng r = key_rng(22, (uint64_t)s);
    ColorJitterParams p = draw_color_jitter(1.5f, 0.f, 0.f, 0.5f, r);
    ASSERT_GE(p.brightness, 0.f);
    ASSERT_LE(p.brightness, 2.5f);
    ASSERT_EQ(p.contrast, 1.f);
    ASSERT_EQ(p.saturation, 1.f);
  }
  Rng r = key_rng(0, 0);
  EXPECT_THROW(draw_color_jitter(0.4f, 0.4f, 0.4f, 0.7f, r), Error);
}

// ================================================================ blur, flip, normalise

// PIL's box for sigma: three boxes have variance sigma^2. A box's weights w_j (offsets -R-1..R+1, in units of
// 2^24) have variance sum w_j j^2 / 2^24, and the variances of the passes add. Hand values at sigma 2: variance
// 4/3 per box, integer radius floor((sqrt(17) - 1) / 2) = 1, fraction 3 (2 - 4) / (6 (4/3 - 4)) = 0.375, so
// r = 1.375, inner = floor(2^24 / 3.75) = 4473924, edge = (2^24 - 3 inner) / 2 = 1677722.
TEST(AugmentBlur, ThreeBoxesHaveTheVarianceOfSigma) {
  EXPECT_NEAR(pil_box_radius(2.f), 1.375f, 1e-6f);
  const BlurBox two = pil_blur_box(2.f);
  EXPECT_EQ(two.radius, 1);
  EXPECT_EQ(two.inner, 4473924u);
  EXPECT_EQ(two.edge, 1677722u);
  for (float sigma : {0.1f, 0.5f, 1.0f, 1.37f, 2.0f, 4.0f, 9.5f}) {
    const BlurBox b = pil_blur_box(sigma);
    const double one = (double)(1u << 24);
    const double sum = ((2.0 * b.radius + 1) * b.inner + 2.0 * b.edge) / one;
    double var = 2.0 * b.edge * (b.radius + 1) * (b.radius + 1);
    for (int j = -b.radius; j <= b.radius; ++j) var += (double)b.inner * j * j;
    var /= one;
    EXPECT_NEAR(sum, 1.0, 1e-6) << "sigma " << sigma;
    EXPECT_NEAR(kBlurPasses * var, (double)sigma * sigma, 1e-4 * sigma * sigma) << "sigma " << sigma;
  }
  EXPECT_THROW(pil_blur_box(0.f), Error);
}

// A constant image stays constant, also where the boxes are wider than the image (the edge repeats).
TEST(AugmentBlur, ConstantStaysConstant) {
  for (auto [h, w] : {std::pair<int, int>{3, 4}, {1, 1}, {1, 9}, {30, 2}}) {
    std::vector<uint8_t> flat((size_t)h * w * 3, 64);  // (h, w, 3)
    gaussian_blur(flat.data(), h, w, 4.f);
    for (uint8_t v : flat) ASSERT_EQ(v, 64) << h << "x" << w;
  }
}

// The blur against plain loops written here from PIL's definition: three passes along x and three along y, each output computed on its own from its clamped window, in integers:
// (inner * window sum + edge * (the two pixels beyond) + 2^23) >> 24. The blur keeps running sums and
// transposes instead, and must give the same bytes. Sizes from 1 to wider than the boxes, boxes wider than
// the image, and the fraction-only box of sigma 0.1 (radius 0).
TEST(AugmentBlur, SameBytesAsThePlainPassLoops) {
  auto clamp = [](int i, int n) { return std::min(std::max(i, 0), n - 1); };
  Rng r(12, 34);
  for (int h : {1, 2, 7, 24}) {
    for (int w : {1, 5, 6, 23}) {
      for (float sigma : {0.1f, 0.8f, 2.0f, 3.5f}) {
        std::vector<uint8_t> img((size_t)h * w * 3);  // (h, w, 3)
        for (uint8_t& v : img) v = (uint8_t)r.below(256);
        const BlurBox b = pil_blur_box(sigma);
        std::vector<uint8_t> want = img, next(img.size());  // (h, w, 3) each
        for (int pass = 0; pass < 2 * kBlurPasses; ++pass) {
          const bool along_x = pass < kBlurPasses;
          auto pixel = [&](int y, int x, int c) {
            return (uint32_t)want[((size_t)clamp(y, h) * w + clamp(x, w)) * 3 + c];
          };
          for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
              for (int c = 0; c < 3; ++c) {
                uint32_t window = 0;
                for (int j = -b.radius; j <= b.radius; ++j) window += along_x ? pixel(y, x + j, c) : pixel(y + j, x, c);
                const int far = b.radius + 1;
                const uint32_t beyond = along_x ? pixel(y, x - far, c) + pixel(y, x + far, c)
                                                : pixel(y - far, x, c) + pixel(y + far, x, c);
                next[((size_t)y * w + x) * 3 + c] = (uint8_t)((window * b.inner + beyond * b.edge + (1u << 23)) >> 24);
              }
          want.swap(next);
        }
        gaussian_blur(img.data(), h, w, sigma);
        ASSERT_EQ(img, want) << h << "x" << w << " sigma " << sigma;
      }
    }
  }
}

// Against Pillow (tools/pil_blur_fixtures.py): ImageFilter.GaussianBlur(radius=sigma) of a picture at sigmas
// across and beyond the v2 draw, and of pictures narrower than the boxes. On 8-bit input the blur is Pillow's
// arithmetic, so the bytes must be equal. (The true Gaussian this blur replaced was up to 22 grey levels off
// on these fixtures, bench/results/2026-11-26-blur-as-pil.md.)
TEST(AugmentBlur, MatchesPillowExactly) {
  auto read = [](const std::string& name, size_t bytes) { return read_fixture_bytes("pil_blur", name, bytes); };
  const std::map<std::string, std::pair<int, int>> sizes{
      {"picture", {61, 83}}, {"tiny", {3, 5}}, {"thin", {7, 2}}};  // (h, w) of each input
  std::ifstream cases(std::string(MOCO_FIXTURE_DIR) + "/pil_blur/cases.txt");
  int n = 0;
  std::string name, source;
  float sigma = 0;
  while (cases >> name >> source >> sigma) {
    const auto [h, w] = sizes.at(source);
    const std::vector<uint8_t> in = read(source + ".rgb", (size_t)h * w * 3);
    const std::vector<uint8_t> want = read(name + ".rgb", in.size());
    std::vector<uint8_t> got = in;  // (h, w, 3)
    gaussian_blur(got.data(), h, w, sigma);
    int differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += got[i] != want[i];
    EXPECT_EQ(differ, 0) << name << ": bytes that differ from Pillow's";
    ++n;
  }
  EXPECT_EQ(n, 9);
}

TEST(AugmentFlipNormalize, MirrorColumnsAndNormaliseToChw) {
  uint8_t img[2 * 3 * 3];  // (2, 3, 3): value 10 y + x in every channel, plus 100 times the channel
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) img[(y * 3 + x) * 3 + c] = (uint8_t)(10 * y + x + 100 * c);
  hflip(img, 2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(img[(y * 3 + x) * 3 + c], 10 * y + 2 - x + 100 * c);
  // Black maps to -mean / std, white to (1 - mean) / std, 124 in green to (124 / 255 - 0.456) / 0.224; the
  // output is channel-major. (Bit-exactness against torchvision: AugmentView.MatchesTorchvision.)
  const uint8_t px[2 * 3] = {0, 124, 255, 255, 255, 0};  // (1, 2, 3)
  float chw[3 * 2];
  normalize_to_chw(px, 1, 2, chw);
  EXPECT_NEAR(chw[0], -0.485 / 0.229, 1e-6);
  EXPECT_NEAR(chw[1], (1 - 0.485) / 0.229, 1e-6);
  EXPECT_NEAR(chw[2], (124 / 255.0 - 0.456) / 0.224, 1e-6);
  EXPECT_NEAR(chw[3], (1 - 0.456) / 0.224, 1e-6);
  EXPECT_NEAR(chw[4], (1 - 0.406) / 0.225, 1e-6);
  EXPECT_NEAR(chw[5], -0.406 / 0.225, 1e-6);
}

// ================================================================ the recipes' draws

namespace {

// Replays a recipe's stage draws from the description in SPEC section 3 (torchvision draw order).
struct Replayed {
  CropBox crop;
  bool jitter = false, gray = false, blur = false, flip = false;
  int order[4] = {0, 1, 2, 3};
  double f[4] = {1, 1, 1, 0};
  double sigma = 0;
};

void replay_jitter(Rng& r, double hue, Replayed& o) {
  o.jitter = true;
  for (int i = 3; i >= 1; --i) std::swap(o.order[i], o.order[(int)std::floor(r.uniform() * (i + 1))]);
  for (int k = 0; k < 3; ++k) o.f[k] = 0.6 + 0.8 * r.uniform();
  o.f[3] = -hue + 2 * hue * r.uniform();
}

Replayed replay_view(const std::string& recipe, int H, int W, Rng& r) {
  Replayed o;
  if (recipe == "v1") {  // crop(0.2) -> gray 0.2 -> jitter always (hue 0.4) -> flip
    o.crop = replay_rrc(H, W, 0.2f, 1.f, r);
    o.gray = r.uniform() < 0.2f;
    replay_jitter(r, 0.4f, o);
    o.flip = r.uniform() < 0.5f;
  } else if (recipe == "v2") {  // crop(0.2) -> jitter p 0.8 -> gray 0.2 -> blur p 0.5 -> flip
    o.crop = replay_rrc(H, W, 0.2f, 1.f, r);
    if (r.uniform() < 0.8f) replay_jitter(r, 0.1f, o);
    o.gray = r.uniform() < 0.2f;
    if (r.uniform() < 0.5f) o.blur = true, o.sigma = 0.1f + (2.0f - 0.1f) * r.uniform();
    o.flip = r.uniform() < 0.5f;
  } else if (recipe == "small") {  // crop(0.08) -> flip -> jitter p 0.8 -> gray 0.2
    o.crop = replay_rrc(H, W, 0.08f, 1.f, r);
    o.flip = r.uniform() < 0.5f;
    if (r.uniform() < 0.8f) replay_jitter(r, 0.1f, o);
    o.gray = r.uniform() < 0.2f;
  } else {  // lincls_train: crop(0.08) -> flip
    o.crop = replay_rrc(H, W, 0.08f, 1.f, r);
    o.flip = r.uniform() < 0.5f;
  }
  return o;
}

}  // namespace

TEST(AugmentDraws, EveryRecipeDrawsInTorchvisionOrder) {
  for (const char* name : {"v1", "v2", "small", "lincls_train"}) {
    AugmentRecipe rec = recipe_from_name(name);
    for (uint64_t s = 0; s < 500; ++s) {
      Rng a = key_rng(5, s, 1, 2), b = key_rng(5, s, 1, 2);
      ViewParams p = draw_view_params(rec, 180, 240, a);
      Replayed w = replay_view(name, 180, 240, b);
      ASSERT_EQ(p.crop, w.crop) << name << " sample " << s;
      ASSERT_EQ(p.jitter, w.jitter) << name << " sample " << s;
      ASSERT_EQ(p.gray, w.gray) << name << " sample " << s;
      ASSERT_EQ(p.blur, w.blur) << name << " sample " << s;
      ASSERT_EQ(p.flip, w.flip) << name << " sample " << s;
      if (p.jitter) {
        for (int k = 0; k < 4; ++k) ASSERT_EQ(p.jitter_params.order[k], w.order[k]);
        ASSERT_NEAR(p.jitter_params.brightness, w.f[0], 1e-6);
        ASSERT_NEAR(p.jitter_params.contrast, w.f[1], 1e-6);
        ASSERT_NEAR(p.jitter_params.saturation, w.f[2], 1e-6);
        ASSERT_NEAR(p.jitter_params.hue, w.f[3], 1e-6);
      }
      if (p.blur) {
        ASSERT_NEAR(p.sigma, w.sigma, 1e-5);
      }
      ASSERT_EQ(a.next_u32(), b.next_u32()) << name << ": a different number of draws";
    }
  }
}

TEST(AugmentDraws, StageRatesMatchTheRecipes) {
  struct Rates { const char* name; double jitter, gray, blur, flip; };
  const Rates table[] = {{"v1", 1.0, 0.2, 0.0, 0.5}, {"v2", 0.8, 0.2, 0.5, 0.5},
                         {"small", 0.8, 0.2, 0.0, 0.5}, {"lincls_train", 0.0, 0.0, 0.0, 0.5}};
  for (const Rates& t : table) {
    AugmentRecipe rec = recipe_from_name(t.name);
    int n_jit = 0, n_gray = 0, n_blur = 0, n_flip = 0;
    double sig_sum = 0, sig_min = 9, sig_max = 0, hue_max = 0;
    for (int s = 0; s < kDraws; ++s) {
      Rng r = key_rng(31, (uint64_t)s);
      ViewParams p = draw_view_params(rec, 256, 256, r);
      n_jit += p.jitter, n_gray += p.gray, n_blur += p.blur, n_flip += p.flip;
      if (p.blur) sig_sum += p.sigma, sig_min = std::min(sig_min, (double)p.sigma), sig_max = std::max(sig_max, (double)p.sigma);
      if (p.jitter) hue_max = std::max(hue_max, (double)std::fabs(p.jitter_params.hue));
    }
    auto check = [&](int n, double p, const char* what) {
      EXPECT_NEAR(n / (double)kDraws, p, binomial_tol(p, kDraws) + 1e-12) << t.name << " " << what << " rate";
    };
    check(n_jit, t.jitter, "jitter");
    check(n_gray, t.gray, "grayscale");
    check(n_blur, t.blur, "blur");
    check(n_flip, t.flip, "flip");
    if (n_blur > 0) {
      EXPECT_NEAR(sig_sum / n_blur, 1.05, uniform_mean_tol(0.1, 2.0, n_blur)) << t.name;
      EXPECT_GE(sig_min, 0.1 - 1e-6);
      EXPECT_LE(sig_max, 2.0 + 1e-6);
    }
    if (n_jit > 0) {
      EXPECT_NEAR(hue_max, rec.hue, 0.01) << t.name << ": hue range";
    }
  }
}

// ================================================================ whole views

TEST(AugmentView, PlumbingMatchesThePlainReference) {
  // With every colour stage off, a v2 view is crop -> resize -> flip -> normalise; build that by hand.
  Image img = noise_image(60, 80, 9);
  AugmentRecipe rec = recipe_from_name("v2", 24);
  ViewParams p;
  p.crop = CropBox{5, 10, 40, 50};
  p.flip = true;
  std::vector<float> got((size_t)3 * 24 * 24);
  apply_view(img, rec, p, got.data());
  std::vector<uint8_t> hwc = ref_resize_pil(img, p.crop, 24, 24), flipped(hwc.size());
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 24; ++x)
      for (int c = 0; c < 3; ++c) flipped[((size_t)y * 24 + x) * 3 + c] = hwc[((size_t)y * 24 + 23 - x) * 3 + c];
  EXPECT_EQ(got, ref_normalize(flipped, 24, 24)) << "crop + flip view";
  // Grayscale on: the three de-normalised channels are equal.
  p.gray = true;
  apply_view(img, rec, p, got.data());
  const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
  for (int i = 0; i < 24 * 24; ++i) {
    double r = got[i] * sd[0] + mean[0], g = got[576 + i] * sd[1] + mean[1], b = got[1152 + i] * sd[2] + mean[2];
    ASSERT_NEAR(r, g, 1e-5);
    ASSERT_NEAR(r, b, 1e-5);
  }
}

TEST(AugmentView, EvalResizesShorterSideAndCentreCrops) {
  // 300x400 at S = 224: resize to 256 x int(256 * 400 / 300) = 256 x 341, then crop 224 at
  // top round(32 / 2) = 16, left round(117 / 2) = round(58.5) = 58 (Python rounds halves to even).
  Image img = noise_image(300, 400, 4);
  std::vector<float> got((size_t)3 * 224 * 224);
  augment_view(img, recipe_from_name("eval"), 1, 2, 3, 4, got.data());
  std::vector<uint8_t> full = ref_resize_pil(img, CropBox{0, 0, 300, 400}, 256, 341), crop;
  for (int y = 0; y < 224; ++y)
    for (int x = 0; x < 224; ++x)
      for (int c = 0; c < 3; ++c) crop.push_back(full[((size_t)(16 + y) * 341 + 58 + x) * 3 + c]);
  EXPECT_EQ(got, ref_normalize(crop, 224, 224)) << "eval 224";
  // Fashion-MNIST size at S = 32: the whole 28x28 picture resized to 32x32, no crop.
  Image fm = noise_image(28, 28, 6);
  std::vector<float> small((size_t)3 * 32 * 32);
  augment_view(fm, recipe_from_name("eval", 32), 0, 0, 0, 0, small.data());
  EXPECT_EQ(small, ref_normalize(ref_resize_pil(fm, CropBox{0, 0, 28, 28}, 32, 32), 32, 32)) << "eval 32";
}

TEST(AugmentView, SameKeySameBytesOtherViewDiffers) {
  Image img = noise_image(64, 48, 2);
  for (const char* name : {"v1", "v2", "small", "lincls_train"}) {
    AugmentRecipe rec = recipe_from_name(name, 32);
    const size_t n = (size_t)3 * 32 * 32;
    std::vector<float> a(n), b(n), c(n), d(n);
    augment_view(img, rec, 42, 3, 17, 0, a.data());
    augment_view(img, rec, 42, 3, 17, 0, b.data());
    augment_view(img, rec, 42, 3, 17, 1, c.data());
    augment_view(img, rec, 42, 4, 17, 0, d.data());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), n * sizeof(float)), 0) << name;
    EXPECT_NE(std::memcmp(a.data(), c.data(), n * sizeof(float)), 0) << name << ": view 1 equals view 0";
    EXPECT_NE(std::memcmp(a.data(), d.data(), n * sizeof(float)), 0) << name << ": epoch 4 equals epoch 3";
    // The view equals draw-then-apply on the documented stream.
    Rng r(42, view_stream(3, 17, 0));
    ViewParams p = draw_view_params(rec, img.h, img.w, r);
    apply_view(img, rec, p, c.data());
    EXPECT_EQ(std::memcmp(a.data(), c.data(), n * sizeof(float)), 0) << name;
    for (float v : a) ASSERT_TRUE(std::isfinite(v));
  }
}


// Against the authors' augmentation (tools/torchvision_view_fixtures.py): whole views of every recipe with
// their decisions given, made by torchvision's functional ops on a PIL image (Pillow 13), ToTensor and
// Normalize. The float32 values must be equal bit for bit: crop and resize (one case along y first), colour
// jitter in four orders, grayscale before and after it, PIL's blur, the flip, the evaluation's resize of the
// shorter side and centre crop, and the normalisation.
TEST(AugmentView, MatchesTorchvisionBitForBit) {
  Image pic;
  pic.h = 61, pic.w = 83;
  pic.pixels = read_fixture_bytes("torchvision_view", "picture.rgb", (size_t)pic.h * pic.w * 3);
  std::ifstream cases(std::string(MOCO_FIXTURE_DIR) + "/torchvision_view/cases.txt");
  std::string name, recipe;
  int size = 0, jitter = 0, gray = 0, blur = 0, flip = 0, n = 0;
  ViewParams p;
  ColorJitterParams& j = p.jitter_params;
  while (cases >> name >> recipe >> size >> p.crop.top >> p.crop.left >> p.crop.h >> p.crop.w >> jitter >>
         j.order[0] >> j.order[1] >> j.order[2] >> j.order[3] >> j.brightness >> j.contrast >> j.saturation >>
         j.hue >> gray >> blur >> p.sigma >> flip) {
    p.jitter = jitter, p.gray = gray, p.blur = blur, p.flip = flip;
    AugmentRecipe rec = recipe_from_name(recipe, size);
    rec.pillow = PillowResize::Pillow13;
    const size_t count = (size_t)3 * size * size;
    const std::vector<uint8_t> raw = read_fixture_bytes("torchvision_view", name + ".f32", count * sizeof(float));
    std::vector<float> want(count), got(count);  // (3, S, S)
    std::memcpy(want.data(), raw.data(), raw.size());
    apply_view(pic, rec, p, got.data());
    size_t differ = 0;
    for (size_t i = 0; i < count; ++i) differ += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
    EXPECT_EQ(differ, 0u) << name << ": values that differ from torchvision's, of " << count;
    ++n;
  }
  EXPECT_EQ(n, 9);
}

// The 8-bit form of a view is the float view before ToTensor + Normalize: for whole views of every recipe,
// the float view is exactly ref_normalize of the bytes (ToTensor and Normalize written out again), and the
// layout is (S, S, 3) where the float one is (3, S, S).
TEST(AugmentView, FloatViewIsTheEightBitViewNormalised) {
  Image img = noise_image(64, 48, 5);
  for (const char* name : {"v1", "v2", "small", "lincls_train", "eval"}) {
    const AugmentRecipe rec = recipe_from_name(name, 24);
    std::vector<float> f((size_t)3 * 24 * 24);    // (3, S, S)
    std::vector<uint8_t> u((size_t)24 * 24 * 3);  // (S, S, 3)
    augment_view(img, rec, 8, 1, 30, 1, f.data());
    augment_view_u8(img, rec, 8, 1, 30, 1, u.data());
    EXPECT_EQ(f, ref_normalize(u, 24, 24)) << name;
  }
}
