// Colour ops of the augmentations: grayscale, ColorJitter's four adjustments and their random draw.
// All work in place on (n, 3) RGB floats in [0, 1] and clamp to [0, 1] after each op, as torchvision's
// tensor path does.
#include <algorithm>
#include <cmath>

#include "moco/augment.h"
#include "moco/error.h"

namespace moco {

namespace {

// ITU-R 601-2 luma, the weights of PIL's convert("L") used by RandomGrayscale.
inline float luma(const float* p) { return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }
inline float clamp01(float x) { return std::min(1.f, std::max(0.f, x)); }

}  // namespace

void to_grayscale(float* rgb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float* p = rgb + i * 3;
    float g = clamp01(luma(p));
    p[0] = p[1] = p[2] = g;
  }
}

void adjust_brightness(float* rgb, int64_t n, float factor) {
  for (int64_t i = 0; i < 3 * n; ++i) rgb[i] = clamp01(factor * rgb[i]);
}

void adjust_contrast(float* rgb, int64_t n, float factor) {
  if (n <= 0) return;
  // The blend target is one scalar: the mean grey level of the whole image (accumulated in double so a
  // 224x224 sum does not lose the low bits).
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += luma(rgb + i * 3);
  const float mean = (float)(sum / (double)n);
  const float offset = (1.f - factor) * mean;
  for (int64_t i = 0; i < 3 * n; ++i) rgb[i] = clamp01(factor * rgb[i] + offset);
}

void adjust_saturation(float* rgb, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) {
    float* p = rgb + i * 3;
    const float offset = (1.f - factor) * luma(p);
    for (int c = 0; c < 3; ++c) p[c] = clamp01(factor * p[c] + offset);
  }
}

void adjust_hue(float* rgb, int64_t n, float shift) {
  // HSV rotation without a per-pixel sector switch: with hue h in sextants [0, 6), value v = max and chroma
  // d = max - min, channel k of the result is v - d * clamp(min(t, 4 - t), 0, 1), t = (m_k + h) mod 6,
  // m = (5, 3, 1) for (R, G, B). This is the same colour as the sector-by-sector HSV -> RGB conversion.
  // The loop has no branches (every choice is a select), so the compiler vectorises it; on a busy image the
  // branchy form mispredicted on every pixel (bench_augment). A grey pixel (d = 0) comes back unchanged:
  // its hue term is multiplied by d = 0, and v - 0 = v. Every float operation is unconditional and every
  // choice picks between computed values (x += c ? 6 : 0, not c ? x + 6 : x): GCC will not if-convert an
  // operation that may trap, and a loop with control flow is not vectorised.
  const float shift6 = 6.f * shift;
  constexpr int64_t kBlock = 64;  // pixels de-interleaved at a time
  float r[kBlock], g[kBlock], b[kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t m = std::min(kBlock, n - start);
    float* p = rgb + start * 3;  // (m, 3)
    for (int64_t i = 0; i < m; ++i) {
      r[i] = p[i * 3];
      g[i] = p[i * 3 + 1];
      b[i] = p[i * 3 + 2];
    }
    for (int64_t i = 0; i < m; ++i) {
      const float rr = r[i], gg = g[i], bb = b[i];
      const float v = std::max(rr, std::max(gg, bb));
      const float d = v - std::min(rr, std::min(gg, bb));
      // Grey (d = 0) divides by 1 instead: any finite value does, as d multiplies the hue term out. Written as
      // an addition because GCC turns "d > 0 ? d : 1" followed by a division into a branch.
      const float safe_d = d + (d > 0.f ? 0.f : 1.f);
      const float inv_d = 1.f / safe_d;
      const float h_r = (gg - bb) * inv_d, h_g = (bb - rr) * inv_d + 2.f, h_b = (rr - gg) * inv_d + 4.f;
      const float h_gb = v == gg ? h_g : h_b;
      float h6 = (v == rr ? h_r : h_gb) + shift6;
      h6 += h6 < 0.f ? 6.f : 0.f;  // h6 lies in [-4, 8): one turn either way wraps it into [0, 6)
      h6 -= h6 >= 6.f ? 6.f : 0.f;
      float t_r = h6 + 5.f, t_g = h6 + 3.f, t_b = h6 + 1.f;
      t_r -= t_r >= 6.f ? 6.f : 0.f;
      t_g -= t_g >= 6.f ? 6.f : 0.f;
      t_b -= t_b >= 6.f ? 6.f : 0.f;
      r[i] = clamp01(v - d * clamp01(std::min(t_r, 4.f - t_r)));
      g[i] = clamp01(v - d * clamp01(std::min(t_g, 4.f - t_g)));
      b[i] = clamp01(v - d * clamp01(std::min(t_b, 4.f - t_b)));
    }
    for (int64_t i = 0; i < m; ++i) {
      p[i * 3] = r[i];
      p[i * 3 + 1] = g[i];
      p[i * 3 + 2] = b[i];
    }
  }
}

ColorJitterParams draw_color_jitter(float brightness, float contrast, float saturation, float hue, Rng& rng) {
  MOCO_CHECK(brightness >= 0.f && contrast >= 0.f && saturation >= 0.f,
             "ColorJitter: brightness ", brightness, ", contrast ", contrast, ", saturation ", saturation,
             " expected >= 0");
  MOCO_CHECK(hue >= 0.f && hue <= 0.5f, "ColorJitter: hue ", hue, " expected in [0, 0.5]");
  ColorJitterParams p;
  // A uniform permutation of the four ops (Fisher-Yates from the back), drawn before the factors as
  // torchvision's get_params does.
  for (int i = 3; i >= 1; --i) std::swap(p.order[i], p.order[rng.below((uint64_t)i + 1)]);
  // Every factor is drawn even when its strength is 0 (then its range is the single point 1, or 0 for hue),
  // so the stream layout does not depend on the strengths.
  auto factor = [&](float x) { return (float)rng.uniform(std::max(0.0, 1.0 - x), 1.0 + x); };
  p.brightness = factor(brightness);
  p.contrast = factor(contrast);
  p.saturation = factor(saturation);
  p.hue = (float)rng.uniform(-(double)hue, (double)hue);
  return p;
}

void apply_color_jitter(float* rgb, int64_t n, const ColorJitterParams& p) {
  for (int k = 0; k < 4; ++k) {
    switch (p.order[k]) {
      case 0: adjust_brightness(rgb, n, p.brightness); break;
      case 1: adjust_contrast(rgb, n, p.contrast); break;
      case 2: adjust_saturation(rgb, n, p.saturation); break;
      default: adjust_hue(rgb, n, p.hue); break;
    }
  }
}

}  // namespace moco
