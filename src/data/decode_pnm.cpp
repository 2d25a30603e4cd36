// Binary PGM (P5) and PPM (P6) with maxval 255: the header is text, the raster is the pixels' bytes as they
// are, so they are read here rather than through stb_image. That is what Pillow's raw PPM decoder does for
// these files: convert("RGB") replicates a PGM's grey and copies a PPM's bytes. Other maxvals (which Pillow
// rescales), the plain-text variants P1-P3, bitmaps (P4) and PAM (P7) are refused, naming what was found.
#include <cstring>
#include <string>

#include "image_decoders.h"

namespace moco::detail {

namespace {

bool refuse(std::string* why, const std::string& reason) {
  if (why) *why = reason;
  return false;
}

bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// The next decimal header field after whitespace and '#' comments (to the end of their line), as Pillow's
// _read_token reads them; `pos` ends on the byte after its digits. -1 when there is none or it overflows.
int64_t header_number(const uint8_t* d, size_t n, size_t& pos) {
  for (;;) {
    while (pos < n && is_space(d[pos])) ++pos;
    if (pos < n && d[pos] == '#') {
      while (pos < n && d[pos] != '\n' && d[pos] != '\r') ++pos;
      continue;
    }
    break;
  }
  int64_t v = 0;
  size_t digits = 0;
  for (; pos < n && d[pos] >= '0' && d[pos] <= '9'; ++pos, ++digits) {
    v = v * 10 + (d[pos] - '0');
    if (v > (int64_t)1 << 40) return -1;
  }
  return digits ? v : -1;
}

}  // namespace

bool decode_pnm(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits) {
  const char kind = n >= 2 ? (char)data[1] : '?';
  if (kind != '5' && kind != '6') {
    const std::string name = kind >= '1' && kind <= '3' ? "plain-text (ASCII) PNM"
                             : kind == '4'            ? "PBM bitmap"
                             : kind == '7'            ? "PAM"
                                                      : "unknown PNM variant";
    return refuse(why, std::string("P") + kind + ": " + name + " is not supported; expected binary PGM (P5) or "
                       "PPM (P6) with maxval 255");
  }
  const int channels = kind == '6' ? 3 : 1;
  size_t pos = 2;
  const int64_t w = header_number(data, n, pos), h = header_number(data, n, pos),
                maxval = header_number(data, n, pos);
  if (w < 0 || h < 0 || maxval < 0 || pos >= n || !is_space(data[pos]))
    return refuse(why, std::string("corrupt or truncated P") + kind + " header: expected width, height and maxval "
                       "as decimal numbers, each after whitespace, then one whitespace byte");
  ++pos;  // the single whitespace byte before the raster
  if (w < 1 || h < 1 || w > limits.max_side || h > limits.max_side || w * h > limits.max_pixels)
    return refuse(why, std::string(kind == '6' ? "PPM" : "PGM") + " of " + std::to_string(w) + " x " +
                       std::to_string(h) + " pixels, expected each side in 1.." + std::to_string(limits.max_side) +
                       " and at most " + std::to_string(limits.max_pixels) + " pixels");
  if (maxval != 255)
    return refuse(why, std::string(kind == '6' ? "PPM" : "PGM") + " with maxval " + std::to_string(maxval) +
                       ": expected 255 (8-bit samples)");
  const size_t raster = (size_t)(w * h * channels);
  if (n - pos < raster)
    return refuse(why, std::string("truncated ") + (kind == '6' ? "PPM" : "PGM") + ": " + std::to_string(n - pos) +
                       " bytes of pixels, expected " + std::to_string(raster));
  out.w = (int)w;
  out.h = (int)h;
  out.pixels.resize((size_t)(w * h * 3));  // (H, W, 3)
  const uint8_t* px = data + pos;
  if (channels == 3) {
    std::memcpy(out.pixels.data(), px, raster);
  } else {
    for (size_t i = 0; i < (size_t)(w * h); ++i)
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = px[i];
  }
  return true;
}

}  // namespace moco::detail
