// Stand-in for CUDA's <cuda_bf16.h> in the emulated kernel tests: the bf16 storage type and the conversions
// the kernels use, with the device's semantics (round to nearest even; a NaN becomes the canonical NaN
// 0x7fff, as cvt.rn.bf16.f32 does).
//
// MOCO_EMU_BF16_STOCHASTIC=<seed> in the environment switches the rounding to stochastic (up or down with
// probability given by the distance; a fixed-seed generator per host thread). Two runs with different seeds are
// two equally precise bf16 computations, so their distance from each other is bf16's noise floor for that
// computation: a bf16 result as far from its fp32 reference as from another bf16 run is rounding, and one
// that sits far from fp32 but close to the other runs is a fault. No test sets it.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

struct alignas(2) __nv_bfloat16 {
  unsigned short __x;
};

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  __nv_bfloat16 b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.__x = 0x7fff;
  } else {
    static const char* seed = std::getenv("MOCO_EMU_BF16_STOCHASTIC");
    if (seed) {
      static thread_local uint64_t state = 0x9e3779b97f4a7c15ull * (uint64_t)(std::atoi(seed) + 1);
      state = state * 6364136223846793005ull + 1442695040888963407ull;  // Knuth's MMIX LCG
      u += (uint32_t)(state >> 48);  // + uniform [0, 2^16): rounds up with probability (low bits) / 2^16
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
    }
    b.__x = (unsigned short)(u >> 16);
  }
  return b;
}
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = (uint32_t)b.__x << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
