// Transposing an image of 3-byte pixels, for the passes of the resize and the blur that run along x on the
// transposed image, where their sums run over whole contiguous lines.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace moco {

// (h, w) pixels of 3 bytes, rows `stride` bytes apart, to (w, h, 3): tiles of 16 x 16 pixels, so that the reads
// and the writes both stay within a few cache lines.
inline void transpose_pixels(const uint8_t* src, size_t stride, int h, int w, uint8_t* dst) {
  constexpr int kTile = 16;
  for (int y0 = 0; y0 < h; y0 += kTile)
    for (int x0 = 0; x0 < w; x0 += kTile)
      for (int y = y0; y < std::min(y0 + kTile, h); ++y) {
        const uint8_t* s = src + (size_t)y * stride;
        for (int x = x0; x < std::min(x0 + kTile, w); ++x) {
          uint8_t* d = dst + ((size_t)x * h + y) * 3;
          d[0] = s[x * 3], d[1] = s[x * 3 + 1], d[2] = s[x * 3 + 2];
        }
      }
}

}  // namespace moco
