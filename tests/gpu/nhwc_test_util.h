// Shared by the channels-last kernel tests (test_batchnorm_nhwc.cpp, test_nhwc_kernels.cpp): device tensors
// of float or bf16 filled from host floats, host-side rounding to bf16 (so the CPU reference sees exactly the
// values the kernel reads), NCHW <-> NHWC permutations on the host, and random inputs.
#pragma once
#include "moco/bf16_host.h"
#include "moco/host_layout.h"
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "moco/rng.h"

namespace moco::nhwc_test {


template <class T>
constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;
template <class T>
const char* type_name() {
  return kIsBf16<T> ? "bf16" : "fp32";
}

// The value a T holds for v (v itself for float).
template <class T>
float round_to(float v) {
  if constexpr (kIsBf16<T>) return bf16_value(bf16_bits(v));
  return v;
}
template <class T>
std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = round_to<T>(x);
  return v;
}

// A device array of T (float or __nv_bfloat16) read and written as host floats. `skip` leading elements
// are allocated but not part of the tensor: get() then returns a pointer only sizeof(T)-aligned, which
// forces the kernels' scalar (unvectorised) path.
template <class T>
class DevTensor {
 public:
  using Storage = std::conditional_t<kIsBf16<T>, uint16_t, float>;
  DevTensor(size_t n, const std::string& what, size_t skip = 0) : n_(n), skip_(skip), buf_(n + skip, what) {}
  DevTensor(const std::vector<float>& host, const std::string& what, size_t skip = 0)
      : DevTensor(host.size(), what, skip) {
    upload(host);
  }
  T* get() const { return reinterpret_cast<T*>(buf_.get() + skip_); }
  size_t size() const { return n_; }
  void poison() { buf_.poison(); }
  void upload(const std::vector<float>& host) {
    std::vector<Storage> s(n_ + skip_, Storage(0));
    for (size_t i = 0; i < n_; ++i) s[skip_ + i] = store(host[i]);
    buf_.upload(s);
  }
  std::vector<float> download() const {
    const std::vector<Storage> s = buf_.download();
    std::vector<float> v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = load(s[skip_ + i]);
    return v;
  }

 private:
  static Storage store(float v) {
    if constexpr (kIsBf16<T>) return bf16_bits(v);
    else return v;
  }
  static float load(Storage s) {
    if constexpr (kIsBf16<T>) return bf16_value(s);
    else return s;
  }
  size_t n_, skip_;
  cuda::DeviceBuffer<Storage> buf_;
};

using moco::to_nchw;
using moco::to_nhwc;

inline std::vector<float> normal_floats(size_t n, uint64_t stream, double mean = 0.0, double stddev = 1.0) {
  return moco::normal_floats(n, 4321, stream, mean, stddev);
}

// Equal, or both NaN (a NaN output must stay NaN; the payload may differ).
inline bool same_value(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }

}  // namespace moco::nhwc_test
