// WebP (lossy and lossless, with or without alpha) through libwebp, Debian's libwebp-dev. Pillow decodes a
// still WebP into non-premultiplied RGBA with the same library and convert("RGB") drops the alpha, which is
// libwebp's RGB output here; both use its default "fancy" chroma upsampling for lossy files. Animated files are
// refused (Pillow would give the first frame; a data set of animations is not what ImageFolder is for).
#include <webp/decode.h>

#include <string>
#include <vector>

#include "image_decoders.h"

namespace moco::detail {

namespace {

const char* status_text(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data (truncated)";
    default: return "ok";
  }
}

bool refuse(std::string* why, const std::string& reason) {
  if (why) *why = reason;
  return false;
}

}  // namespace

bool decode_webp(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits) {
  WebPBitstreamFeatures f;
  const VP8StatusCode header = WebPGetFeatures(data, n, &f);
  if (header != VP8_STATUS_OK) return refuse(why, std::string("corrupt or truncated WebP header: ") + status_text(header));
  if (f.has_animation)
    return refuse(why, "animated WebP is not supported; expected a still image");
  if (f.width < 1 || f.height < 1 || f.width > limits.max_side || f.height > limits.max_side ||
      (int64_t)f.width * f.height > limits.max_pixels)
    return refuse(why, "WebP of " + std::to_string(f.width) + " x " + std::to_string(f.height) +
                       " pixels, expected each side in 1.." + std::to_string(limits.max_side) + " and at most " +
                       std::to_string(limits.max_pixels) + " pixels");
  std::vector<uint8_t> px((size_t)f.width * f.height * 3);  // (H, W, 3)
  // Into our buffer, whose size the limits bound. libwebp's own memory is bounded by them too, but is not small:
  // a lossless image decodes through a whole ARGB plane (4 bytes a pixel), a lossy one with alpha through a
  // whole alpha plane.
  if (!WebPDecodeRGBInto(data, n, px.data(), px.size(), f.width * 3))
    return refuse(why, "cannot decode WebP (" + std::string(f.format == 2 ? "lossless" : "lossy") + ", " +
                       std::to_string(f.width) + " x " + std::to_string(f.height) + "): corrupt or truncated data");
  out.w = f.width;
  out.h = f.height;
  out.pixels = std::move(px);
  return true;
}

}  // namespace moco::detail
