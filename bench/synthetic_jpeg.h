// Synthetic JPEGs for the data-path benchmarks (bench/decode.cpp, bench/loader.cpp) and the decoder's tests
// (tests/test_decode_jpeg.cpp), so none needs a data set: a photograph-like picture, and libjpeg's encoder.
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

// Encodes (h, w, components) bytes, RGB or grey, with libjpeg's defaults (4:2:0 chroma, as most camera and
// web JPEGs) at `quality`; progressive with libjpeg's simple script, or with `scans` when it is not empty.
inline std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int w, int h, int components, int quality,
                                        bool progressive, const std::vector<jpeg_scan_info>& scans = {}) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);  // a failure here is a bug in the caller: libjpeg's default exits
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = components;
  c.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  if (!scans.empty()) {
    c.scan_info = scans.data();
    c.num_scans = (int)scans.size();
  } else if (progressive) {
    jpeg_simple_progression(&c);
  }
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels) + (size_t)c.next_scanline * w * components;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> bytes(buf, buf + size);
  jpeg_destroy_compress(&c);
  std::free(buf);
  return bytes;
}

inline std::vector<uint8_t> encode_jpeg(const Image& img, int quality, bool progressive) {
  return encode_jpeg(img.pixels.data(), img.w, img.h, 3, quality, progressive);
}

}  // namespace moco::bench
