// PIL's per-pixel colour arithmetic on 8-bit RGB, written once for the host (src/data/augment_color.cpp) and
// the device (kernels/view_stages.cu), so that both give Pillow's bytes by construction.
//
// PIL's C code rounds every float and double operation on its own. The host builds its callers with
// -ffp-contract=off; the device compiler would fuse a multiply and an add into one rounding, so on the device
// every operation goes through its correctly rounded intrinsic (__fmul_rn, __dadd_rn and their kin).
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MOCO_PIXEL __host__ __device__ inline
#else
#define MOCO_PIXEL inline
#endif

namespace moco::pil {

// One float or double operation, rounded once: fmul, fadd, fsub, fdiv on floats, dmul, dadd, dsub, ddiv on
// doubles.
#ifdef __CUDA_ARCH__
#define MOCO_ROUNDED_OP(name, type, op, intrinsic) \
  MOCO_PIXEL type name(type a, type b) { return intrinsic(a, b); }
#else
#define MOCO_ROUNDED_OP(name, type, op, intrinsic) \
  MOCO_PIXEL type name(type a, type b) { return a op b; }
#endif
MOCO_ROUNDED_OP(fmul, float, *, __fmul_rn)
MOCO_ROUNDED_OP(fadd, float, +, __fadd_rn)
MOCO_ROUNDED_OP(fsub, float, -, __fsub_rn)
MOCO_ROUNDED_OP(fdiv, float, /, __fdiv_rn)
MOCO_ROUNDED_OP(dmul, double, *, __dmul_rn)
MOCO_ROUNDED_OP(dadd, double, +, __dadd_rn)
MOCO_ROUNDED_OP(dsub, double, -, __dsub_rn)
MOCO_ROUNDED_OP(ddiv, double, /, __ddiv_rn)
#undef MOCO_ROUNDED_OP

MOCO_PIXEL int clip8(int x) { return x <= 0 ? 0 : (x < 256 ? x : 255); }

// C's round() (halves away from zero) of x >= 0: x minus its truncation is exact, so the comparison is too.
MOCO_PIXEL int round_positive(double x) {
  const int t = (int)x;
  return dsub(x, (double)t) >= 0.5 ? t + 1 : t;
}

// convert("L") of one pixel: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
MOCO_PIXEL uint32_t luma(const uint8_t* p) {
  return ((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16;
}

// ImageEnhance.Contrast's grey level: the mean of n grey levels summing to `sum` (ImageStat's mean, a double
// division), rounded by int(mean + 0.5).
MOCO_PIXEL int mean_level(uint64_t sum, int64_t n) { return (int)dadd(ddiv((double)sum, (double)n), 0.5); }

// Image.blend of one byte: from + alpha (to - from) in float. Inside [0, 1] the result lies between the two
// bytes and is truncated; outside it is clamped first.
MOCO_PIXEL uint8_t blend(int from, int to, float alpha) {
  const float t = fadd((float)from, fmul(alpha, (float)(to - from)));
  if (alpha >= 0.f && alpha <= 1.f) return (uint8_t)t;
  return t <= 0.f ? 0 : (t >= 255.f ? 255 : (uint8_t)t);
}

// torchvision's adjust_hue on one pixel, in place: PIL's convert("HSV") (hue and saturation scaled to bytes
// and truncated), the hue byte plus `turn` modulo 256, and PIL's HSV -> RGB (the sextant i and fraction f of
// the hue, then v (1 - s), v (1 - s f) and v (1 - s (1 - f)) rounded half away from zero). Each operation
// has the type PIL's C code gives it, float or double.
MOCO_PIXEL void shift_hue(uint8_t* p, uint8_t turn) {
  const int r = p[0], g = p[1], b = p[2];
  const int maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
  const int minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
  if (maxc == minc) return;  // grey: saturation 0, which HSV -> RGB turns back into (v, v, v)
  const float range = (float)(maxc - minc);
  const float s = fdiv(range, (float)maxc);
  const float rc = fdiv((float)(maxc - r), range), gc = fdiv((float)(maxc - g), range),
              bc = fdiv((float)(maxc - b), range);
  float h;
  if (r == maxc)
    h = fsub(bc, gc);
  else if (g == maxc)
    h = (float)dsub(dadd(2.0, (double)rc), (double)bc);
  else
    h = (float)dsub(dadd(4.0, (double)gc), (double)rc);
  // fmod(h / 6 + 1, 1): h lies in [-1, 5], so the argument lies in [5/6, 11/6] and fmod takes 1 off it or
  // nothing, exactly
  const double turns = dadd(ddiv((double)h, 6.0), 1.0);
  h = (float)(turns >= 1.0 ? dsub(turns, 1.0) : turns);
  const int hue = (uint8_t)(clip8((int)dmul((double)h, 255.0)) + turn);
  const int sat = clip8((int)dmul((double)s, 255.0));
  if (sat == 0) {  // a saturation below 1/255 truncates to 0: grey again
    p[0] = p[1] = p[2] = (uint8_t)maxc;
    return;
  }
  const double h6 = ddiv(dmul((double)(float)hue, 6.0), 255.0);
  const int i = (int)floor(h6);
  const float f = (float)dsub(h6, (double)(float)i);
  const float fs = (float)ddiv((double)(float)sat, 255.0);
  const double vd = (double)(float)maxc;
  const uint8_t lo = (uint8_t)clip8(round_positive(dmul(vd, dsub(1.0, (double)fs))));
  const uint8_t fall = (uint8_t)clip8(round_positive(dmul(vd, dsub(1.0, (double)fmul(fs, f)))));
  const uint8_t rise = (uint8_t)clip8(round_positive(dmul(vd, dsub(1.0, dmul((double)fs, dsub(1.0, (double)f))))));
  const uint8_t hi = (uint8_t)maxc;
  switch (i % 6) {
    case 0: p[0] = hi, p[1] = rise, p[2] = lo; break;
    case 1: p[0] = fall, p[1] = hi, p[2] = lo; break;
    case 2: p[0] = lo, p[1] = hi, p[2] = rise; break;
    case 3: p[0] = lo, p[1] = fall, p[2] = hi; break;
    case 4: p[0] = rise, p[1] = lo, p[2] = hi; break;
    default: p[0] = hi, p[1] = lo, p[2] = fall; break;
  }
}

}  // namespace moco::pil
