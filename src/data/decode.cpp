// Decoding one untrusted image file: JPEG with libjpeg-turbo (decode_jpeg.cpp: Pillow's pixels, and faster
// than stb_image, bench/decode.cpp), PNG and BMP with stb_image (Debian's libstb, 2.27, older than upstream's
// security fixes), WebP with libwebp (decode_webp.cpp), TIFF with libtiff (decode_tiff.cpp), binary PGM/PPM
// read here (decode_pnm.cpp): the extensions of torchvision's ImageFolder. Defences, in order:
//   - our own magic-number check admits only those formats (stb would otherwise try every format it
//     knows, TGA included, which has no magic and accepts random bytes);
//   - a structural walk of the file: truncation that stb silently pads with grey (JPEG, BMP); JPEG Huffman
//     tables that 2.27 would overrun or read uninitialised (jpeg_check.cpp); PNG chunks longer than the file,
//     because stb reserves an IDAT's declared length (up to 1 GiB, doubled on growth) before it looks for the
//     bytes, so a 200-byte file could make it allocate 2 GiB. The fuzzer (tests/fuzz) found the last two;
//   - a palette padded with black to 256 entries before stb sees an indexed PNG or a palette BMP, since stb
//     reads indices past the file's palette from uninitialised stack memory, and a PNG's empty IDAT chunks
//     left out, since stb copies their 0 bytes to a null buffer (stb_palettes.cpp; the fuzzer's UBSan
//     reported the latter);
//   - the header read by stbi_info_from_memory, its dimensions checked against the limits before stb
//     allocates any pixels.
// stb keeps its failure reason in a thread-local (checked: libstb.so reads it through __tls_get_addr), and we
// never touch its global flip flag, so concurrent calls are safe.
#include <stb/stb_image.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>

#include "image_decoders.h"
#include "jpeg_check.h"
#include "moco/data.h"

namespace moco {

namespace {

enum class Format { Jpeg, Png, Bmp, Webp, Pnm, Tiff, Unknown };

Format sniff(const uint8_t* d, size_t n) {
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return Format::Jpeg;
  if (n >= 8 && std::memcmp(d, png, 8) == 0) return Format::Png;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return Format::Bmp;
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) return Format::Webp;
  if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7') return Format::Pnm;
  if (n >= 4 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0 ||
                 std::memcmp(d, "II+\0", 4) == 0 || std::memcmp(d, "MM\0+", 4) == 0))
    return Format::Tiff;
  return Format::Unknown;
}

const char* format_name(Format f) {
  switch (f) {
    case Format::Jpeg: return "JPEG";
    case Format::Png: return "PNG";
    case Format::Bmp: return "BMP";
    case Format::Webp: return "WebP";
    case Format::Pnm: return "PNM";
    case Format::Tiff: return "TIFF";
    default: return "unknown";
  }
}

bool fail_with(std::string* why, const std::string& reason) {
  if (why) *why = reason;
  return false;
}

// Walks the PNG chunks (length, type, data, CRC) up to IEND; false with the reason when one overruns the file.
bool png_chunks_fit(const uint8_t* d, size_t n, std::string* why) {
  size_t pos = 8;  // after the signature
  while (pos + 8 <= n) {
    uint32_t len = detail::be32(d + pos);
    std::string type(reinterpret_cast<const char*>(d + pos + 4), 4);
    for (char& c : type)
      if (c < 0x20 || c > 0x7E) c = '?';
    if ((uint64_t)len + 12 > n - pos) {
      if (why)
        *why = "truncated or corrupt PNG: chunk '" + type + "' at byte " + std::to_string(pos) + " declares " +
               std::to_string(len) + " bytes of data (" + std::to_string((uint64_t)len + 12) +
               " with its header and CRC), but the file ends " + std::to_string(n - pos) + " bytes after its start";
      return false;
    }
    pos += 12 + (size_t)len;
    if (type == "IEND") return true;
  }
  // Ended between chunks without IEND: leave the verdict to the decoder, which needs only the IDAT data.
  if (pos != n && why) *why = "truncated PNG: " + std::to_string(n - pos) + " stray bytes after the last chunk";
  return pos == n;
}

// A PNG whose IHDR (the first chunk: its data at byte 16) says 16-bit grey (bit depth 16, colour type 0).
bool png_is_grey16(const uint8_t* d, size_t n) {
  return n >= 26 && std::memcmp(d + 12, "IHDR", 4) == 0 && d[24] == 16 && d[25] == 0;
}

struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

}  // namespace

bool decode_image(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits,
                  JpegDecoder jpeg) {
  if (n == 0 || data == nullptr) return fail_with(why, "empty file (0 bytes)");
  if (n > limits.max_bytes || n > (size_t)INT_MAX)  // stb takes the length as an int
    return fail_with(why, "file of " + std::to_string(n) + " bytes, expected at most " +
                              std::to_string(limits.max_bytes));
  Format fmt = sniff(data, n);
  if (fmt == Format::Unknown) {
    char head[64];
    std::snprintf(head, sizeof head, "%02X %02X %02X %02X", data[0], n > 1 ? data[1] : 0, n > 2 ? data[2] : 0,
                  n > 3 ? data[3] : 0);
    return fail_with(why, std::string("unknown format (first bytes ") + head +
                              "), expected JPEG, PNG, BMP, WebP, TIFF, PGM or PPM");
  }
  if (fmt == Format::Tiff) return detail::decode_tiff(data, n, out, why, limits);
  if (fmt == Format::Webp) return detail::decode_webp(data, n, out, why, limits);
  if (fmt == Format::Pnm) return detail::decode_pnm(data, n, out, why, limits);
  const char* fname = format_name(fmt);

  // Structure first: even stbi_info_from_memory builds the JPEG Huffman tables that precede the frame header.
  if (fmt == Format::Jpeg && !jpeg_structure_ok(data, n, why)) return false;
  if (fmt == Format::Png && !png_chunks_fit(data, n, why)) return false;
  if (fmt == Format::Bmp && n >= 6 && detail::le32(data + 2) > n)  // the header's file size; 0 means "not given"
    return fail_with(why, "truncated BMP: " + std::to_string(n) + " bytes, header says " +
                              std::to_string(detail::le32(data + 2)));

  if (fmt == Format::Jpeg && jpeg == JpegDecoder::LibjpegTurbo) return detail::decode_jpeg(data, n, out, why, limits);
  const bool grey16 = fmt == Format::Png && png_is_grey16(data, n);
  // stb looks palette indices up without a bound: hand it a palette of 256 entries (stb_palettes.cpp)
  std::vector<uint8_t> padded;
  if ((fmt == Format::Png && detail::png_with_full_palette(data, n, padded)) ||
      (fmt == Format::Bmp && detail::bmp_with_full_palette(data, n, padded))) {
    if (padded.size() > (size_t)INT_MAX) return fail_with(why, "file too large once its palette is padded");
    return detail::decode_with_stb(padded.data(), padded.size(), fname, out, why, limits, grey16);
  }
  return detail::decode_with_stb(data, n, fname, out, why, limits, grey16);
}

namespace detail {

bool decode_with_stb(const uint8_t* data, size_t n, const char* fname, Image& out, std::string* why,
                     const DecodeLimits& limits, bool clip_grey16) {
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, (int)n, &w, &h, &comp))
    return fail_with(why, std::string("corrupt or unsupported ") + fname + " header: " + stbi_failure_reason());
  if (w < 1 || h < 1 || w > limits.max_side || h > limits.max_side || (int64_t)w * h > limits.max_pixels)
    return fail_with(why, std::string(fname) + " of " + std::to_string(w) + " x " + std::to_string(h) +
                              " pixels, expected each side in 1.." + std::to_string(limits.max_side) +
                              " and at most " + std::to_string(limits.max_pixels) + " pixels");

  int dw = 0, dh = 0, dcomp = 0;
  if (clip_grey16) {
    // Pillow opens 16-bit grey PNG as mode I;16, and its convert("RGB") clips each value to 255 (it does not
    // scale), so torchvision's loader sees every value of 255 or more as white. Reproduced here; stb alone
    // would scale by 1/256.
    std::unique_ptr<stbi_us, StbFree> px16(stbi_load_16_from_memory(data, (int)n, &dw, &dh, &dcomp, 1));
    if (!px16) return fail_with(why, std::string("cannot decode 16-bit grey PNG: ") + stbi_failure_reason());
    if (dw != w || dh != h)
      return fail_with(why, "PNG decoded as " + std::to_string(dw) + " x " + std::to_string(dh) +
                                " but its header says " + std::to_string(w) + " x " + std::to_string(h));
    out.w = w;
    out.h = h;
    out.pixels.resize((size_t)w * h * 3);  // (H, W, 3)
    for (size_t i = 0; i < (size_t)w * h; ++i)
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = (uint8_t)std::min<int>(px16.get()[i], 255);
    return true;
  }
  std::unique_ptr<stbi_uc, StbFree> px(stbi_load_from_memory(data, (int)n, &dw, &dh, &dcomp, 3));
  if (!px) return fail_with(why, std::string("cannot decode ") + fname + ": " + stbi_failure_reason());
  // The decode parses the header again; it must agree with what was checked against the limits.
  if (dw != w || dh != h)
    return fail_with(why, std::string(fname) + " decoded as " + std::to_string(dw) + " x " + std::to_string(dh) +
                              " but its header says " + std::to_string(w) + " x " + std::to_string(h));
  out.w = w;
  out.h = h;
  out.pixels.assign(px.get(), px.get() + (size_t)w * h * 3);  // (H, W, 3)
  return true;
}

}  // namespace detail

}  // namespace moco
