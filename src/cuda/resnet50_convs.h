// The convolutions of torchvision's ResNet-50 (v1.5: the stride sits on the 3x3 conv of a bottleneck) with
// the ImageNet stem, as distinct shapes with the number of times each occurs in the network. Derived from the
// topology, not listed by hand: stem 7x7/2 on 3 channels, max-pool /2, then four stages of 3, 4, 6, 3
// bottlenecks of 64, 128, 256, 512 planes (expansion 4), the first block of each stage carrying the stride
// (1, 2, 2, 2) and a 1x1 downsample. Used by the convolution tests and benchmark.
#pragma once
#include <cstdint>
#include <vector>

#include "moco/cpu_ops.h"

namespace moco::cuda {

struct CountedConv {
  cpu::ConvShape shape;
  int count;       // occurrences in one forward pass of the network
  int adding = 0;  // of those, bottleneck conv1s: their data gradient is added into the shortcut's
};

inline std::vector<CountedConv> resnet50_convs(int64_t batch, int64_t image = 224) {
  std::vector<CountedConv> out;
  auto add = [&](int64_t ci, int64_t hw, int64_t co, int64_t k, int64_t stride, int64_t pad, bool adding = false) {
    const cpu::ConvShape s{batch, ci, hw, hw, co, k, k, stride, pad};
    for (auto& c : out)
      if (c.shape.ci == ci && c.shape.h == hw && c.shape.co == co && c.shape.kh == k && c.shape.stride == stride &&
          c.shape.pad == pad) {
        ++c.count;
        c.adding += adding;
        return;
      }
    out.push_back({s, 1, adding ? 1 : 0});
  };
  const int64_t width = 64, expansion = 4;
  add(3, image, width, 7, 2, 3);  // stem
  int64_t hw = (image + 2 * 3 - 7) / 2 + 1;
  hw = (hw + 2 * 1 - 3) / 2 + 1;  // max-pool 3x3/2, pad 1
  int64_t inplanes = width;
  const int64_t planes[4] = {64, 128, 256, 512}, blocks[4] = {3, 4, 6, 3}, strides[4] = {1, 2, 2, 2};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t p = planes[stage];
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      const int64_t s = b == 0 ? strides[stage] : 1;
      const int64_t hw_out = (hw + 2 * 1 - 3) / s + 1;
      add(inplanes, hw, p, 1, 1, 0, true);        // conv1: 1x1 reduce
      add(p, hw, p, 3, s, 1);                     // conv2: 3x3, carries the stride
      add(p, hw_out, p * expansion, 1, 1, 0);     // conv3: 1x1 expand
      if (s != 1 || inplanes != p * expansion)    // downsample: 1x1 with the block's stride
        add(inplanes, hw, p * expansion, 1, s, 0);
      inplanes = p * expansion;
      hw = hw_out;
    }
  }
  return out;
}

}  // namespace moco::cuda
