// Stand-in for CUDA's <cuda_bf16.h> in the emulated kernel tests: the bf16 storage type and the conversions
// the kernels use, with the device's semantics (round to nearest even; a NaN becomes the canonical NaN
// 0x7fff, as cvt.rn.bf16.f32 does).
#pragma once
#include <cstdint>
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
    u += 0x7fffu + ((u >> 16) & 1u);
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
