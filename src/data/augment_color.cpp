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
  // m = (5, 3, 1) for (R, G, B). This is the same colour as the sector-by-sector HSV -> RGB conversion,
  // with fewer hard-to-predict branches on a busy image. A grey pixel (d = 0) has no hue and is skipped.
  const float shift6 = 6.f * shift;
  const float offset[3] = {5.f, 3.f, 1.f};
  for (int64_t i = 0; i < n; ++i) {
    float* p = rgb + i * 3;
    const float r = p[0], g = p[1], b = p[2];
    const float v = std::max(r, std::max(g, b));
    const float d = v - std::min(r, std::min(g, b));
    if (d <= 0.f) continue;
    const float inv_d = 1.f / d;
    float h6 = (v == r ? (g - b) * inv_d : (v == g ? (b - r) * inv_d + 2.f : (r - g) * inv_d + 4.f)) + shift6;
    h6 = h6 < 0.f ? h6 + 6.f : h6;  // h6 lies in [-4, 8): one turn either way wraps it into [0, 6)
    h6 = h6 >= 6.f ? h6 - 6.f : h6;
    for (int c = 0; c < 3; ++c) {
      float t = h6 + offset[c];
      t = t >= 6.f ? t - 6.f : t;
      p[c] = clamp01(v - d * clamp01(std::min(t, 4.f - t)));
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
