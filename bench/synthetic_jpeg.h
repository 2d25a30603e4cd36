// Synthetic ImageNet-like JPEGs for the data-path benchmarks (bench/decode.cpp, bench/loader.cpp), so they
// need no data set: a photograph-like picture, encoded by libjpeg with its default 4:2:0 chroma.
#pragma once
// jpeglib.h uses size_t and FILE without including their headers.
#include <cstddef>
#include <cstdio>

#include <jpeglib.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "moco/image.h"
#include "moco/rng.h"

namespace moco::bench {

// A photograph-like picture: two soft gradients, a disc with a hard edge, stripes, and per-pixel grain.
inline Image photo(int w, int h) {
  Image img;
  img.w = w;
  img.h = h;
  img.pixels.resize((size_t)w * h * 3);  // (H, W, 3)
  Rng rng(3, 4);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double dx = x - 0.6 * w, dy = y - 0.45 * h;
      const bool disc = dx * dx + dy * dy < 0.06 * w * h;
      const double stripes = (x / 7 + y / 11) % 2 ? 18.0 : -18.0;
      for (int c = 0; c < 3; ++c) {
        double v = 60 + 120.0 * x / w + 40.0 * std::sin(0.02 * y + c) + (disc ? 50.0 - 30 * c : 0.0);
        if (y > h * 2 / 3) v += stripes;
        v += (double)rng.below(17) - 8.0;
        img.pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)std::lround(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  return img;
}

inline std::vector<uint8_t> encode_jpeg(const Image& img, int quality, bool progressive) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);  // a failure here is a bug in this benchmark: libjpeg's default exits
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = (JDIMENSION)img.w;
  c.image_height = (JDIMENSION)img.h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);  // 4:2:0 chroma, as most camera and web JPEGs
  jpeg_set_quality(&c, quality, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.pixels.data()) + (size_t)c.next_scanline * img.w * 3;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> bytes(buf, buf + size);
  jpeg_destroy_compress(&c);
  std::free(buf);
  return bytes;
}

}  // namespace moco::bench
