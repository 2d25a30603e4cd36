// Host-side data for the GPU tests and benchmarks: the NCHW <-> NHWC permutation (what the channels-last
// kernels see of a CPU reference's tensor), seeded normal draws, and floats widened for a double reference.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "moco/rng.h"

namespace moco {

// (N, C, HW) -> (N, HW, C)
template <class V>
std::vector<V> to_nhwc(const std::vector<V>& x, int64_t n, int64_t c, int64_t hw) {
  std::vector<V> y(x.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) y[(i * hw + p) * c + ch] = x[(i * c + ch) * hw + p];
  return y;
}

// (N, HW, C) -> (N, C, HW)
template <class V>
std::vector<V> to_nchw(const std::vector<V>& x, int64_t n, int64_t c, int64_t hw) {
  std::vector<V> y(x.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) y[(i * c + ch) * hw + p] = x[(i * hw + p) * c + ch];
  return y;
}

// n draws of mean + stddev * N(0, 1) from the Philox stream (seed, stream).
inline std::vector<float> normal_floats(size_t n, uint64_t seed, uint64_t stream, double mean = 0.0,
                                        double stddev = 1.0) {
  Rng r(seed, stream);
  std::vector<float> v(n);
  for (auto& x : v) x = (float)(mean + stddev * r.normal());
  return v;
}

// The values as doubles, or their magnitudes (a reference run on |inputs| gives each output's sum of |terms|,
// the scale its rounding error is measured against).
inline std::vector<double> widened(const std::vector<float>& v, bool magnitude) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = magnitude ? std::fabs((double)v[i]) : (double)v[i];
  return d;
}

}  // namespace moco
