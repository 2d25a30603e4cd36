// Image: one decoded picture in memory, 8-bit RGB, row-major HWC. Every dataset hands out images in this
// form (grayscale sources replicated to three channels), and every augmentation starts from it.
#pragma once
#include <cstdint>
#include <vector>

#include "moco/rng.h"

namespace moco {

struct Image {
  int h = 0, w = 0;              // rows, columns
  std::vector<uint8_t> pixels;   // (H, W, 3) RGB
  uint8_t at(int y, int x, int c) const { return pixels[((size_t)y * w + x) * 3 + c]; }
};

// The counter-based stream of one augmented view: every random draw of the view comes from
// Rng(seed, view_stream(epoch, sample, view)), so a view is reproducible in any thread and after a resume.
inline uint64_t view_stream(uint64_t epoch, uint64_t sample, uint64_t view) {
  return mix_stream(mix_stream(mix_stream(0xA06 /*augment*/, epoch), sample), view);
}

}  // namespace moco
