// The decoders behind decode_image (decode.cpp), each called after the format was sniffed and the file's
// structure walked. Internal to src/data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moco/data.h"

namespace moco::detail {

// 32-bit integers as files store them: big-endian (PNG) and little-endian (BMP).
inline uint32_t be32(const uint8_t* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
inline uint32_t le32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Pillow's cmyk2rgb for one channel: (255 - k) - round(c * (255 - k) / 255), with its exact rounding; nk is
// 255 - k. JPEG and TIFF CMYK go through it.
inline uint8_t cmyk_channel(int c, int nk) {
  int t = c * nk + 128;
  return (uint8_t)(nk - (((t >> 8) + t) >> 8));
}

// libjpeg-turbo, Pillow's settings (decode_jpeg.cpp).
bool decode_jpeg(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits);

// stb_image for PNG, BMP and (for comparison only) JPEG; format_name goes into the reasons (decode.cpp).
// clip_grey16: a 16-bit grey PNG, converted as Pillow converts it (each value clipped to 255).
bool decode_with_stb(const uint8_t* data, size_t n, const char* format_name, Image& out, std::string* why,
                     const DecodeLimits& limits, bool clip_grey16 = false);

// Copies of an indexed PNG or a palette BMP whose palette is padded with black to 256 entries, and of a PNG
// without its empty IDAT chunks, for stb (stb_palettes.cpp); false, leaving `copy` alone, where the file
// needs none.
bool png_with_full_palette(const uint8_t* data, size_t n, std::vector<uint8_t>& copy);
bool bmp_with_full_palette(const uint8_t* data, size_t n, std::vector<uint8_t>& copy);

// Binary PGM / PPM with maxval 255, read here (decode_pnm.cpp).
bool decode_pnm(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits);

// libwebp, still images (decode_webp.cpp).
bool decode_webp(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits);

// libtiff, the first image, the layouts Pillow reads the same way (decode_tiff.cpp).
bool decode_tiff(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits);

}  // namespace moco::detail
