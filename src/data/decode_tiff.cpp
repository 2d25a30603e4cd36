// TIFF through libtiff (Debian's libtiff-dev), the first image of the file, to the pixels Pillow gives:
// libtiff undoes the compression (none, LZW, Deflate, PackBits, CCITT, ...) and the fill order, strip by strip
// or tile by tile, and the samples are then unpacked here as Pillow's TiffImagePlugin unpacks them (its
// OPEN_INFO table), then converted to RGB as convert("RGB") does:
//   - grey, 8-bit or bilevel (MinIsBlack, or MinIsWhite inverted), replicated; an extra sample is dropped;
//   - RGB, 8-bit; a fourth sample is dropped, except associated (premultiplied) alpha, which Pillow's "RGBa"
//     unpacker divides out: c * 255 / a, truncated, and black where a = 0;
//   - palette, 8-bit: the colour map's 16-bit entries >> 8 (Pillow's b // 256);
//   - CMYK, 8-bit (inks not inverted, as TIFF stores them), through Pillow's cmyk2rgb;
//   - 16-bit grey, which Pillow opens as I;16 and clips to 255 (as for 16-bit grey PNG), and 16-bit RGB (a
//     fourth sample dropped), of which Pillow keeps the high byte.
// Then the Orientation tag is applied, as Pillow 13 applies it to TIFF alone (exif_transpose in its
// TiffImagePlugin: JPEG, PNG and WebP keep their stored orientation there, and here). Everything else (float or signed samples, separate
// planes, YCbCr, Lab, 2- and 4-bit grey, premultiplied 16-bit, ...) is refused, naming what was found. Errors and warnings
// go to a handler of this call only (libtiff 4.5's TIFFOpenOptions), so concurrent decodes do not share them,
// and libtiff's own allocations are capped.
#include <tiffio.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "image_decoders.h"

namespace moco::detail {

namespace {

struct MemoryFile {
  const uint8_t* data;
  toff_t size, pos;
};

tmsize_t read_proc(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemoryFile*>(h);
  if (n < 0 || f->pos >= f->size) return 0;
  const toff_t take = std::min<toff_t>((toff_t)n, f->size - f->pos);
  std::memcpy(buf, f->data + f->pos, (size_t)take);
  f->pos += take;
  return (tmsize_t)take;
}
tmsize_t write_proc(thandle_t, void*, tmsize_t) { return -1; }  // read only
toff_t seek_proc(thandle_t h, toff_t off, int whence) {
  auto* f = static_cast<MemoryFile*>(h);
  const toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? f->pos : f->size;
  if (off > (toff_t)INT64_MAX - base) return (toff_t)-1;
  f->pos = base + off;  // past the end is allowed; reads there return nothing
  return f->pos;
}
int close_proc(thandle_t) { return 0; }
toff_t size_proc(thandle_t h) { return static_cast<MemoryFile*>(h)->size; }

// The first error libtiff reports, kept for the reason.
int on_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* why = static_cast<std::string*>(user);
  if (why->empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    *why = std::string(module ? module : "libtiff") + ": " + buf;
  }
  return 1;  // handled: nothing goes to stderr
}
int on_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }  // unknown tags and the like

bool refuse(std::string* why, const std::string& reason) {
  if (why) *why = reason;
  return false;
}

struct TiffClose {
  void operator()(TIFF* t) const { TIFFClose(t); }
};
struct OptionsFree {
  void operator()(TIFFOpenOptions* o) const { TIFFOpenOptionsFree(o); }
};

// The stored (h, w, 3) image turned as Orientation says (1 to 8; anything else leaves it), as Pillow's
// exif_transpose turns it: 2 mirrors left-right, 3 turns 180, 4 mirrors top-bottom, 5 transposes, 6 turns 270
// (clockwise 90), 7 transverses, 8 turns 90. 5 to 8 swap width and height.
void apply_orientation(Image& img, int orientation) {
  if (orientation < 2 || orientation > 8) return;
  const size_t w = (size_t)img.w, h = (size_t)img.h;
  const bool swap = orientation >= 5;
  const size_t ow = swap ? h : w, oh = swap ? w : h;
  std::vector<uint8_t> turned(img.pixels.size());  // (oh, ow, 3)
  for (size_t y = 0; y < oh; ++y)
    for (size_t x = 0; x < ow; ++x) {
      size_t sy = y, sx = x;  // the stored pixel that lands at (y, x)
      switch (orientation) {
        case 2: sx = w - 1 - x; break;
        case 3: sy = h - 1 - y, sx = w - 1 - x; break;
        case 4: sy = h - 1 - y; break;
        case 5: sy = x, sx = y; break;
        case 6: sy = h - 1 - x, sx = y; break;
        case 7: sy = h - 1 - x, sx = w - 1 - y; break;
        case 8: sy = x, sx = w - 1 - y; break;
      }
      std::memcpy(&turned[(y * ow + x) * 3], &img.pixels[(sy * w + sx) * 3], 3);
    }
  img.pixels.swap(turned);
  img.w = (int)ow;
  img.h = (int)oh;
}

// How one pixel's samples become RGB.
enum class Layout { Grey, GreyInverted, Bilevel, BilevelInverted, Rgb, RgbPremultiplied, Palette, Cmyk, Grey16, Rgb16 };

}  // namespace

bool decode_tiff(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits) {
  std::string lib_error;
  std::unique_ptr<TIFFOpenOptions, OptionsFree> opts(TIFFOpenOptionsAlloc());
  TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), on_error, &lib_error);
  TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), on_warning, nullptr);
  // libtiff's largest single allocation: a strip or tile (checked below as well), a directory's arrays
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), (tmsize_t)std::max<int64_t>(limits.max_pixels * 4, 1 << 20));
  MemoryFile file{data, (toff_t)n, 0};
  // "rm": read, and never memory-map (there is no file)
  std::unique_ptr<TIFF, TiffClose> tif(TIFFClientOpenExt("image", "rm", &file, read_proc, write_proc, seek_proc,
                                                         close_proc, size_proc, nullptr, nullptr, opts.get()));
  const auto failed = [&](const std::string& what) {
    return refuse(why, what + (lib_error.empty() ? "" : " (" + lib_error + ")"));
  };
  if (!tif) return failed("corrupt or truncated TIFF header");

  uint32_t w = 0, h = 0;
  uint16_t bits = 1, spp = 1, photometric = 0, planar = PLANARCONFIG_CONTIG, format = SAMPLEFORMAT_UINT;
  if (!TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &h))
    return failed("TIFF without its width or length");
  if (!TIFFGetField(tif.get(), TIFFTAG_PHOTOMETRIC, &photometric)) return failed("TIFF without a photometric tag");
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PLANARCONFIG, &planar);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLEFORMAT, &format);
  uint16_t extra_count = 0, fill_order = FILLORDER_MSB2LSB, orientation = ORIENTATION_TOPLEFT;
  uint16_t* extra = nullptr;
  const bool has_extra = TIFFGetField(tif.get(), TIFFTAG_EXTRASAMPLES, &extra_count, &extra) == 1;
  const int extra0 = has_extra && extra_count > 0 && extra ? extra[0] : -1;  // the first extra sample's meaning
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_FILLORDER, &fill_order);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_ORIENTATION, &orientation);

  if (w < 1 || h < 1 || w > (uint32_t)limits.max_side || h > (uint32_t)limits.max_side ||
      (int64_t)w * h > limits.max_pixels)
    return refuse(why, "TIFF of " + std::to_string(w) + " x " + std::to_string(h) + " pixels, expected each side in 1.." +
                       std::to_string(limits.max_side) + " and at most " + std::to_string(limits.max_pixels) + " pixels");

  const auto found = [&] {  // the layout, for the reason of a refusal
    return "photometric " + std::to_string(photometric) + ", " + std::to_string(spp) + " samples of " +
           std::to_string(bits) + " bits, sample format " + std::to_string(format) + ", planar configuration " +
           std::to_string(planar) + ", fill order " + std::to_string(fill_order) + ", extra samples " +
           (has_extra ? std::to_string(extra0) : std::string("none"));
  };
  const auto unsupported = [&] {
    return refuse(why, "unsupported TIFF (" + found() + "); expected 8-bit grey, RGB, palette or CMYK, 16-bit grey "
                       "or RGB, or bilevel, with contiguous samples: convert it to PNG");
  };
  if (format != SAMPLEFORMAT_UINT || planar != PLANARCONFIG_CONTIG) return unsupported();
  // Pillow knows a pixel layout only from its table; what it refuses is refused here too: 2-sample grey
  // without its ExtraSamples (or with one it does not know), and the reversed fill order beyond the layouts
  // its table lists it for (bilevel, 8-bit grey and palette, 3-sample RGB, little-endian 16-bit grey)
  if (photometric == PHOTOMETRIC_MINISBLACK && spp == 2 && (extra0 < 0 || extra0 > 2)) return unsupported();
  if (fill_order == FILLORDER_LSB2MSB && !(bits == 1 || (bits == 8 && spp == 1) || (bits == 8 && spp == 3 &&
                                                                                     photometric == PHOTOMETRIC_RGB) ||
                                           (bits == 16 && spp == 1 && photometric == PHOTOMETRIC_MINISBLACK &&
                                            !TIFFIsBigEndian(tif.get()))))
    return unsupported();
  Layout layout;
  if ((photometric == PHOTOMETRIC_MINISBLACK || photometric == PHOTOMETRIC_MINISWHITE) && bits == 1 && spp == 1)
    layout = photometric == PHOTOMETRIC_MINISBLACK ? Layout::Bilevel : Layout::BilevelInverted;
  else if ((photometric == PHOTOMETRIC_MINISBLACK && bits == 8 && (spp == 1 || (spp == 2 && extra0 != 1))) ||
           (photometric == PHOTOMETRIC_MINISWHITE && bits == 8 && spp == 1))
    layout = photometric == PHOTOMETRIC_MINISBLACK ? Layout::Grey : Layout::GreyInverted;
  else if (photometric == PHOTOMETRIC_RGB && bits == 8 && (spp == 3 || spp == 4))
    layout = spp == 4 && extra0 == EXTRASAMPLE_ASSOCALPHA ? Layout::RgbPremultiplied : Layout::Rgb;
  else if (photometric == PHOTOMETRIC_PALETTE && bits == 8 && spp == 1)
    layout = Layout::Palette;
  else if (photometric == PHOTOMETRIC_SEPARATED && bits == 8 && spp == 4)
    layout = Layout::Cmyk;
  else if (photometric == PHOTOMETRIC_MINISBLACK && bits == 16 && spp == 1)
    layout = Layout::Grey16;
  else if (photometric == PHOTOMETRIC_RGB && bits == 16 && (spp == 3 || (spp == 4 && extra0 != EXTRASAMPLE_ASSOCALPHA)))
    layout = Layout::Rgb16;
  else
    return unsupported();

  uint16_t *red = nullptr, *green = nullptr, *blue = nullptr;  // (256) each, 16-bit
  if (layout == Layout::Palette && !TIFFGetField(tif.get(), TIFFTAG_COLORMAP, &red, &green, &blue))
    return failed("palette TIFF without a colour map");

  // Strips or tiles, each decoded whole into `block` (rows of blk_w pixels, row_bytes each), then copied.
  const bool tiled = TIFFIsTiled(tif.get());
  uint32_t blk_w = w, blk_h = 0;
  if (tiled) {
    TIFFGetField(tif.get(), TIFFTAG_TILEWIDTH, &blk_w);
    TIFFGetField(tif.get(), TIFFTAG_TILELENGTH, &blk_h);
  } else {
    TIFFGetFieldDefaulted(tif.get(), TIFFTAG_ROWSPERSTRIP, &blk_h);
    blk_h = std::min(blk_h, h);
  }
  if (blk_w < 1 || blk_h < 1) return failed("TIFF with empty strips or tiles");
  const uint64_t row_bytes = ((uint64_t)blk_w * spp * bits + 7) / 8;
  const uint64_t block_bytes = row_bytes * blk_h;
  // a tile may be larger than the image, but not without bound
  if (block_bytes > (uint64_t)limits.max_pixels * 8 + (1 << 20))  // 8: 16-bit RGBA, the widest pixel taken
    return refuse(why, "TIFF " + std::string(tiled ? "tiles" : "strips") + " of " + std::to_string(blk_w) + " x " +
                       std::to_string(blk_h) + " pixels, larger than the limits allow");
  std::vector<uint8_t> block((size_t)block_bytes);  // (blk_h, row_bytes)

  out.w = (int)w;
  out.h = (int)h;
  out.pixels.assign((size_t)w * h * 3, 0);  // (H, W, 3)
  const uint32_t across = tiled ? (uint32_t)(((uint64_t)w + blk_w - 1) / blk_w) : 1;
  for (uint32_t y0 = 0; y0 < h; y0 += blk_h) {
    for (uint32_t t = 0; t < across; ++t) {
      const uint32_t x0 = t * blk_w;
      // a strip that a decoder ends early (CCITT does, without an error) leaves zeros, not the last strip
      std::fill(block.begin(), block.end(), 0);
      const tmsize_t got = tiled ? TIFFReadEncodedTile(tif.get(), TIFFComputeTile(tif.get(), x0, y0, 0, 0),
                                                       block.data(), (tmsize_t)block.size())
                                 : TIFFReadEncodedStrip(tif.get(), TIFFComputeStrip(tif.get(), y0, 0), block.data(),
                                                        (tmsize_t)block.size());
      if (got < 0) return failed("cannot decode TIFF " + std::string(tiled ? "tile" : "strip") + " at row " +
                                 std::to_string(y0));
      const uint32_t rows = std::min(blk_h, h - y0), cols = std::min(blk_w, w - x0);
      for (uint32_t r = 0; r < rows; ++r) {
        const uint8_t* src = block.data() + r * row_bytes;  // (blk_w, spp) samples of `bits`
        uint8_t* dst = out.pixels.data() + ((size_t)(y0 + r) * w + x0) * 3;
        for (uint32_t c = 0; c < cols; ++c, dst += 3) {
          switch (layout) {
            case Layout::Bilevel:
            case Layout::BilevelInverted: {
              const bool set = (src[c / 8] >> (7 - c % 8)) & 1;
              dst[0] = dst[1] = dst[2] = set == (layout == Layout::Bilevel) ? 255 : 0;
              break;
            }
            case Layout::Grey: dst[0] = dst[1] = dst[2] = src[c * spp]; break;
            case Layout::GreyInverted: dst[0] = dst[1] = dst[2] = (uint8_t)(255 - src[c]); break;
            case Layout::Rgb: std::memcpy(dst, src + c * spp, 3); break;
            case Layout::RgbPremultiplied: {
              const uint8_t* p = src + c * 4;
              const int a = p[3];
              for (int k = 0; k < 3; ++k) dst[k] = a == 0 ? 0 : (uint8_t)std::min(255, p[k] * 255 / a);
              break;
            }
            case Layout::Grey16: {  // samples in the machine's byte order: libtiff swaps them on reading
              uint16_t v;
              std::memcpy(&v, src + 2 * c, 2);
              dst[0] = dst[1] = dst[2] = (uint8_t)std::min<int>(v, 255);
              break;
            }
            case Layout::Rgb16: {
              for (int k = 0; k < 3; ++k) {
                uint16_t v;
                std::memcpy(&v, src + 2 * ((size_t)c * spp + k), 2);
                dst[k] = (uint8_t)(v >> 8);
              }
              break;
            }
            case Layout::Cmyk: {
              const uint8_t* p = src + c * 4;
              for (int k = 0; k < 3; ++k) dst[k] = cmyk_channel(p[k], 255 - p[3]);
              break;
            }
            case Layout::Palette: {
              const uint8_t i = src[c];
              dst[0] = (uint8_t)(red[i] >> 8), dst[1] = (uint8_t)(green[i] >> 8), dst[2] = (uint8_t)(blue[i] >> 8);
              break;
            }
          }
        }
      }
    }
  }
  apply_orientation(out, orientation);
  return true;
}

}  // namespace moco::detail
