// Colour ops of the augmentations: RandomGrayscale, ColorJitter's four adjustments and their random draw.
//
// The authors' transforms run on PIL images, so these are PIL's arithmetic on 8-bit (n, 3) RGB, in place:
// - grey levels are convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16;
// - brightness, contrast and saturation are ImageEnhance's Image.blend(degenerate, image, factor): per byte
//   d + factor (v - d) in float, truncated, and clamped to [0, 255] when the factor lies outside [0, 1]. The
//   degenerate image is black, the mean grey level rounded to an integer, and each pixel's grey level;
// - hue is torchvision's PIL path: convert("HSV"), the hue byte plus int(255 shift) modulo 256, and back,
//   with PIL's own conversions in the float and double arithmetic it writes.
// Every operation here is rounded as PIL's C code rounds it (this file is built with -ffp-contract=off), so
// the views are Pillow's bytes (tools/pil_color_fixtures.py, AugmentColor.MatchesPillowExactly).
#include <algorithm>
#include <cmath>

#include "moco/augment.h"
#include "moco/error.h"

namespace moco {

namespace {

// Image.blend of one byte: from + alpha (to - from), in float. Inside [0, 1] the result lies between the two
// bytes and is truncated; outside it is clamped first.
inline uint8_t blend(int from, int to, float alpha) {
  const float t = (float)from + alpha * (float)(to - from);
  if (alpha >= 0.f && alpha <= 1.f) return (uint8_t)t;
  return t <= 0.f ? 0 : (t >= 255.f ? 255 : (uint8_t)t);
}

inline int clip8(int x) { return x <= 0 ? 0 : (x < 256 ? x : 255); }

// C's round() (halves away from zero) of x >= 0, without the library call: x minus its truncation is exact.
inline int round_positive(double x) {
  const int t = (int)x;
  return x - (double)t >= 0.5 ? t + 1 : t;
}

// PIL's RGB -> HSV of one pixel (hue and saturation scaled to bytes and truncated).
void rgb_to_hsv(const uint8_t* p, uint8_t* hsv) {
  const int r = p[0], g = p[1], b = p[2];
  const int maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
  hsv[2] = (uint8_t)maxc;
  if (maxc == minc) {
    hsv[0] = hsv[1] = 0;
    return;
  }
  const float range = (float)(maxc - minc);
  const float s = range / (float)maxc;
  const float rc = (float)(maxc - r) / range, gc = (float)(maxc - g) / range, bc = (float)(maxc - b) / range;
  float h;
  if (r == maxc)
    h = bc - gc;
  else if (g == maxc)
    h = (float)(2.0 + (double)rc - (double)bc);
  else
    h = (float)(4.0 + (double)gc - (double)rc);
  // fmod(h / 6 + 1, 1): h lies in [-1, 5], so the argument lies in [5/6, 11/6] and fmod takes 1 off it or
  // nothing; x - 1 is exact there
  const double turns = (double)h / 6.0 + 1.0;
  h = (float)(turns >= 1.0 ? turns - 1.0 : turns);
  hsv[0] = (uint8_t)clip8((int)((double)h * 255.0));
  hsv[1] = (uint8_t)clip8((int)((double)s * 255.0));
}

// PIL's HSV -> RGB of one pixel: the sextant i and the fraction f of the hue, then the three levels v (1 - s),
// v (1 - s f) and v (1 - s (1 - f)) rounded half away from zero.
void hsv_to_rgb(const uint8_t* hsv, uint8_t* p) {
  const int h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    p[0] = p[1] = p[2] = (uint8_t)v;
    return;
  }
  const double h6 = (double)(float)h * 6.0 / 255.0;
  const int i = (int)std::floor(h6);
  const float f = (float)(h6 - (double)(float)i);
  const float fs = (float)((double)(float)s / 255.0);
  const double vd = (double)(float)v;
  const uint8_t lo = (uint8_t)clip8(round_positive(vd * (1.0 - (double)fs)));
  const uint8_t fall = (uint8_t)clip8(round_positive(vd * (1.0 - (double)(fs * f))));
  const uint8_t rise = (uint8_t)clip8(round_positive(vd * (1.0 - (double)fs * (1.0 - (double)f))));
  const uint8_t hi = (uint8_t)v;
  switch (i % 6) {
    case 0: p[0] = hi, p[1] = rise, p[2] = lo; break;
    case 1: p[0] = fall, p[1] = hi, p[2] = lo; break;
    case 2: p[0] = lo, p[1] = hi, p[2] = rise; break;
    case 3: p[0] = lo, p[1] = fall, p[2] = hi; break;
    case 4: p[0] = rise, p[1] = lo, p[2] = hi; break;
    default: p[0] = hi, p[1] = lo, p[2] = fall; break;
  }
}

}  // namespace

uint8_t pil_luma(const uint8_t* p) {
  return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
}

uint8_t hue_turn(float shift) { return (uint8_t)(int32_t)((double)shift * 255.0); }

void to_grayscale(uint8_t* rgb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* p = rgb + i * 3;
    p[0] = p[1] = p[2] = pil_luma(p);
  }
}

void adjust_brightness(uint8_t* rgb, int64_t n, float factor) {
  for (int64_t i = 0; i < 3 * n; ++i) rgb[i] = blend(0, rgb[i], factor);
}

int mean_grey_level(const uint8_t* rgb, int64_t n) {
  if (n <= 0) return 0;
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += pil_luma(rgb + i * 3);
  return (int)((double)sum / (double)n + 0.5);  // ImageStat's mean, then int(mean + 0.5)
}

void adjust_contrast(uint8_t* rgb, int64_t n, float factor) {
  const int mean = mean_grey_level(rgb, n);
  for (int64_t i = 0; i < 3 * n; ++i) rgb[i] = blend(mean, rgb[i], factor);
}

void adjust_saturation(uint8_t* rgb, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* p = rgb + i * 3;
    const int grey = pil_luma(p);
    for (int c = 0; c < 3; ++c) p[c] = blend(grey, p[c], factor);
  }
}

void adjust_hue(uint8_t* rgb, int64_t n, float shift) {
  const uint8_t turn = hue_turn(shift);
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* p = rgb + i * 3;
    uint8_t hsv[3];
    rgb_to_hsv(p, hsv);
    hsv[0] = (uint8_t)(hsv[0] + turn);  // a byte: the hue wraps around
    hsv_to_rgb(hsv, p);
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

void apply_color_jitter(uint8_t* rgb, int64_t n, const ColorJitterParams& p) {
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
