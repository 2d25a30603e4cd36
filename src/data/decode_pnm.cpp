// Binary PGM (P5) and PPM (P6) with maxval 255: the header is text, read token by token as Pillow reads it;
// the raster is the pixels' bytes as they are, so they are read here rather than through stb_image. That is
// what Pillow's raw PPM decoder does for these files: convert("RGB") replicates a PGM's grey and copies a
// PPM's bytes. Other maxvals (which Pillow rescales), the plain-text variants P1-P3, bitmaps (P4) and PAM (P7)
// are refused, naming what was found.
#include <cstring>
#include <string>

#include "image_decoders.h"

namespace moco::detail {

namespace {

bool refuse(std::string* why, const std::string& reason) {
  if (why) *why = reason;
  return false;
}

// Pillow's whitespace: space, \t, \n, \v, \f, \r.
bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// The next header token as Pillow's PpmImagePlugin._read_token reads it: leading whitespace skipped; a '#'
// drops the rest of its line through the CR or LF, wherever it stands, even inside a token; the token ends at
// the next whitespace byte, which it consumes. More than 10 characters, or none before the end, is an error.
bool read_token(const uint8_t* d, size_t n, size_t& pos, std::string& token) {
  token.clear();
  while (pos < n && token.size() <= 10) {
    const uint8_t c = d[pos++];
    if (is_space(c)) {
      if (token.empty()) continue;
      break;
    }
    if (c == '#') {
      while (pos < n && d[pos] != '\r' && d[pos] != '\n') ++pos;
      if (pos < n) ++pos;  // the CR or LF itself
      continue;
    }
    token += (char)c;
  }
  return !token.empty() && token.size() <= 10;
}

// A token of decimal digits (at most 10, so it fits), or -1.
int64_t decimal(const std::string& token) {
  int64_t v = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return token.empty() ? -1 : v;
}

}  // namespace

bool decode_pnm(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits) {
  // the magic: up to 6 bytes before whitespace, as Pillow's _read_magic reads it
  size_t pos = 0;
  std::string magic;
  while (pos < n && magic.size() < 6) {
    const uint8_t c = data[pos++];
    if (is_space(c)) break;
    magic += (char)c;
  }
  if (magic != "P5" && magic != "P6") {
    const bool known = magic.size() == 2 && magic[1] >= '1' && magic[1] <= '7';
    const std::string name = !known                            ? "not a PNM magic number"
                             : magic[1] >= '1' && magic[1] <= '3' ? "plain-text (ASCII) PNM, not supported"
                             : magic[1] == '4'                    ? "PBM bitmap, not supported"
                                                                  : "PAM, not supported";
    std::string shown;
    for (char c : magic) shown += c >= 0x20 && c < 0x7F ? c : '?';
    return refuse(why, "'" + shown + "': " + name + "; expected binary PGM (P5) or PPM (P6) with maxval 255");
  }
  const bool colour = magic == "P6";
  const char* kind = colour ? "PPM" : "PGM";
  std::string token;
  int64_t field[3];  // width, height, maxval
  for (int64_t& f : field) {
    if (!read_token(data, n, pos, token) || (f = decimal(token)) < 0)
      return refuse(why, std::string("corrupt or truncated ") + kind + " header: expected width, height and maxval "
                         "as decimal numbers of at most 10 digits");
  }
  const int64_t w = field[0], h = field[1], maxval = field[2];
  if (w < 1 || h < 1 || w > limits.max_side || h > limits.max_side || w * h > limits.max_pixels)
    return refuse(why, std::string(kind) + " of " + std::to_string(w) + " x " + std::to_string(h) +
                       " pixels, expected each side in 1.." + std::to_string(limits.max_side) + " and at most " +
                       std::to_string(limits.max_pixels) + " pixels");
  if (maxval != 255)
    return refuse(why, std::string(kind) + " with maxval " + std::to_string(maxval) + ": expected 255 (8-bit samples)");
  // the raster starts right after the whitespace byte that ended maxval
  const int channels = colour ? 3 : 1;
  const size_t raster = (size_t)(w * h * channels);
  if (n - pos < raster)
    return refuse(why, std::string("truncated ") + kind + ": " + std::to_string(n - pos) + " bytes of pixels, expected " +
                       std::to_string(raster));
  out.w = (int)w;
  out.h = (int)h;
  out.pixels.resize((size_t)(w * h * 3));  // (H, W, 3)
  const uint8_t* px = data + pos;
  if (colour) {
    std::memcpy(out.pixels.data(), px, raster);
  } else {
    for (size_t i = 0; i < (size_t)(w * h); ++i)
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = px[i];
  }
  return true;
}

}  // namespace moco::detail
