// bfloat16 on the host, without CUDA's headers: round to nearest even (as __float2bfloat16_rn does on the
// device), NaN kept quiet, and back. The GPU tests and benchmarks use it to build bf16 inputs and to know
// exactly which values a bf16 kernel saw.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

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

inline std::vector<uint16_t> bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = bf16_bits(v[i]);
  return b;
}

inline std::vector<float> bf16_values(const std::vector<uint16_t>& b) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = bf16_value(b[i]);
  return v;
}

}  // namespace moco
