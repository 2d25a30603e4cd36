// bfloat16 on the host, without CUDA's headers: round to nearest even (as __float2bfloat16_rn does on the
// device), NaN kept quiet, and back. The GPU tests and benchmarks use it to build bf16 inputs and to know
// exactly which values a bf16 kernel saw.
#pragma once
#include <cstdint>
#include <cstring>

namespace moco {

inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

inline float bf16_value(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace moco
