// A MoCo model small enough for unit tests (ResNet-18, small stem, width 2, fc head), and smooth synthetic
// images for it. Shared by the cpu and dist tests.
#pragma once
#include <cmath>

#include "moco/moco.h"

namespace moco::test {

inline MocoConfig tiny_moco(int out_dim, int64_t queue_size) {
  MocoConfig c;
  c.encoder.depth = 18;
  c.encoder.width = 2;
  c.encoder.small_stem = true;
  c.encoder.head = Head::Linear;
  c.encoder.out_dim = out_dim;
  c.queue_size = queue_size;
  return c;
}

// (N, 3, 8, 8) images, pixel i = sin(freq * i + phase): deterministic, distinct per phase.
inline Tensor wave_images(int64_t n, float freq, float phase) {
  Tensor x = Tensor::empty({n, 3, 8, 8}, DType::F32);  // (N, 3, 8, 8)
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(freq * (float)i + phase);
  return x;
}

}  // namespace moco::test
