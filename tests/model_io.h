// Test helpers: load an encoder's state from a fixture by torchvision name, and compare it back.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fixture.h"
#include "moco/resnet.h"
#include "tolerances.h"

namespace moco::test {

inline void load_state(Encoder& enc, const Fixture& f, const std::string& prefix) {
  for (const auto& e : enc.registry().entries()) {
    const Tensor& src = f.get(prefix + e.name);
    Tensor dst = enc.tensor(e.name);
    ASSERT_EQ(src.numel(), dst.numel()) << e.name;
    ASSERT_EQ(src.dtype(), dst.dtype()) << e.name;
    std::memcpy(dst.raw(), src.raw(), dst.nbytes());
  }
}

// Float32 `got` against a float64 reference `ref` (stored rounded to float32): the largest error may be at
// most tol::kTorchF32Factor times PyTorch float32's own largest error `torch_err` for the same tensor, plus
// tol::kNormRel of the largest reference entry (tolerances.h says why).
inline void expect_within_torch_f32(const std::string& what, const float* got, const Tensor& ref, double torch_err) {
  const float* want = ref.data<float>();
  double err = 0, ref_max = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double d = std::fabs((double)got[i] - (double)want[i]);
    err = std::isnan(d) ? INFINITY : std::max(err, d);
    ref_max = std::max(ref_max, std::fabs((double)want[i]));
  }
  const double bound = tol::kTorchF32Factor * torch_err + tol::kNormRel * ref_max + tol::kFloorAbs;
  EXPECT_LE(err, bound) << what << ": max |ours - float64| = " << err << ", PyTorch float32 " << torch_err
                        << ", largest entry " << ref_max;
}

// Every tensor of an encoder against "<prefix><name>" with its PyTorch error "<err_prefix><name>"; counters
// must be equal.
inline void expect_encoder_within_torch_f32(Encoder& enc, const Fixture& f, const std::string& what,
                                            const std::string& prefix, const std::string& err_prefix) {
  for (const auto& e : enc.registry().entries()) {
    Tensor got = enc.tensor(e.name);
    const Tensor& want = f.get(prefix + e.name);
    if (e.slot == Slot::Count)
      EXPECT_EQ(got.data<int64_t>()[0], want.data<int64_t>()[0]) << what << e.name;
    else
      expect_within_torch_f32(what + e.name, got.data<float>(), want, f.get(err_prefix + e.name).data<double>()[0]);
  }
}

}  // namespace moco::test
