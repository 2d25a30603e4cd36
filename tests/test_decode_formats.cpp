// WebP, TIFF and binary PGM/PPM decoding (src/data/decode_webp.cpp, decode_tiff.cpp, decode_pnm.cpp), against
// Pillow and against hostile files.
//
// Against Pillow: each fixture (tools/pil_format_fixtures.py) is a file saved by Pillow 13 beside the RGB bytes
// PIL.Image.open(f).convert("RGB") returned for it, what torchvision's ImageFolder feeds its transforms.
// decode_image must return those bytes exactly: lossy WebP (its chroma upsampling included), lossless, with
// alpha (dropped, not blended), grey; TIFF uncompressed, LZW, Deflate, PackBits, JPEG and CCITT group 4, grey,
// grey with alpha, MinIsWhite, palette, RGBA, premultiplied RGBA, CMYK, bilevel, 16-bit grey (clipped) and
// RGB (the high byte); PGM/PPM; and PNG's 16-bit
// grey (clipped, not scaled), palette, bilevel and alpha variants; BMP's 24-bit, grey, palette, bilevel and
// 32-bit.
#include <gtest/gtest.h>
#include <tiffio.h>
#include <webp/encode.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include <string>
#include <vector>

#include "moco/data.h"
#include "pillow_fixture.h"
#include "temp_dir.h"

#define EXPECT_REASON(why, text) EXPECT_NE((why).find(text), std::string::npos) << "reason: " << (why)

namespace moco {
namespace {

std::vector<uint8_t> fixture_bytes(const std::string& name) {
  return test::pillow_fixture("pil_formats", name, "tools/pil_format_fixtures.py");
}

class FormatsVsPil : public ::testing::TestWithParam<const char*> {};

TEST_P(FormatsVsPil, SameBytesAsPillow) {
  const std::string file = GetParam();
  const std::vector<uint8_t> bytes = fixture_bytes(file);
  const std::vector<uint8_t> want = fixture_bytes(file.substr(0, file.rfind('.')) + ".rgb");  // (H, W, 3)
  Image img;
  std::string why;
  ASSERT_TRUE(decode_image(bytes.data(), bytes.size(), img, &why)) << why;
  // every fixture is the 37 x 23 picture; TIFF's orientations 5 to 8 turn it on its side
  const bool on_side = file.rfind("tiff_orientation", 0) == 0 && file[16] >= '5';
  EXPECT_EQ(img.w, on_side ? 23 : 37);
  EXPECT_EQ(img.h, on_side ? 37 : 23);
  test::expect_pillow_bytes(img, want);
}

INSTANTIATE_TEST_SUITE_P(PillowFixtures, FormatsVsPil,
                         ::testing::Values("ppm_p6.ppm", "pgm_p5.pgm", "webp_lossy_q80.webp",
                                           "webp_lossy_alpha_q70.webp", "webp_lossless.webp",
                                           "webp_lossless_alpha.webp", "webp_lossy_grey_q90.webp", "tiff_rgb_raw.tif",
                                           "tiff_rgb_lzw.tif", "tiff_rgb_deflate.tif", "tiff_rgb_packbits.tif",
                                           "tiff_grey_lzw.tif", "tiff_grey_alpha.tif", "tiff_palette.tif",
                                           "tiff_rgba.tif", "tiff_cmyk.tif", "tiff_bilevel_raw.tif",
                                           "tiff_bilevel_group4.tif", "tiff_rgba_premultiplied.tif",
                                           "tiff_grey_min_is_white.tif", "tiff_jpeg.tif", "png_grey16.png",
                                           "png_palette.png", "png_bilevel.png", "png_grey_alpha.png",
                                           "png_rgba.png", "bmp_rgb.bmp", "bmp_grey.bmp", "bmp_palette.bmp",
                                           "bmp_bilevel.bmp", "bmp_rgba.bmp", "tiff_grey16.tif",
                                           "tiff_rgb16.tif", "tiff_orientation2.tif", "tiff_orientation3.tif",
                                           "tiff_orientation4.tif", "tiff_orientation5.tif", "tiff_orientation6.tif",
                                           "tiff_orientation7.tif", "tiff_orientation8.tif", "png_short_palette.png",
                                           "bmp_short_palette.bmp", "bmp_os2_short_palette.bmp"));

// Empty IDAT chunks are legal PNG; stb would copy their 0 bytes to a null buffer (undefined behaviour that
// UBSan reports), so they are left out before it decodes. The image is Pillow's still, 16-bit grey included.
TEST(DecodePng, EmptyIdatChunksChangeNothing) {
  for (const char* name : {"png_rgba", "png_grey16", "png_short_palette"}) {
    const std::vector<uint8_t> png = fixture_bytes(std::string(name) + ".png");
    const std::vector<uint8_t> want = fixture_bytes(std::string(name) + ".rgb");
    // find the first IDAT and put two empty ones before it (length 0, type, no data, any CRC)
    size_t pos = 8;
    while (pos + 8 <= png.size() && std::memcmp(png.data() + pos + 4, "IDAT", 4) != 0)
      pos += 12 + ((size_t)png[pos] << 24 | (size_t)png[pos + 1] << 16 | (size_t)png[pos + 2] << 8 | png[pos + 3]);
    ASSERT_LT(pos + 8, png.size()) << name;
    std::vector<uint8_t> with_empty(png.begin(), png.begin() + (long)pos);
    for (int k = 0; k < 2; ++k) with_empty.insert(with_empty.end(), {0, 0, 0, 0, 'I', 'D', 'A', 'T', 1, 2, 3, 4});
    with_empty.insert(with_empty.end(), png.begin() + (long)pos, png.end());
    Image img;
    std::string why;
    ASSERT_TRUE(decode_image(with_empty.data(), with_empty.size(), img, &why)) << name << ": " << why;
    test::expect_pillow_bytes(img, want);
  }
}

std::vector<uint8_t> pattern(int w, int h) {  // (H, W, 3)
  std::vector<uint8_t> p((size_t)w * h * 3);
  for (size_t k = 0; k < p.size(); ++k) p[k] = (uint8_t)(k * 29 + k / 7);
  return p;
}

std::vector<uint8_t> lossless_webp(const std::vector<uint8_t>& rgb, int w, int h) {
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGB(rgb.data(), w, h, w * 3, &out);
  std::vector<uint8_t> bytes(out, out + n);
  WebPFree(out);
  return bytes;
}

// Lossless WebP gives back exactly what was encoded: an oracle of its own, independent of Pillow.
TEST(DecodeWebp, LosslessRoundTripIsExact) {
  const int w = 13, h = 7;
  const std::vector<uint8_t> rgb = pattern(w, h);
  const std::vector<uint8_t> webp = lossless_webp(rgb, w, h);
  ASSERT_FALSE(webp.empty());
  Image img;
  std::string why;
  ASSERT_TRUE(decode_image(webp.data(), webp.size(), img, &why)) << why;
  EXPECT_EQ(img.w, w);
  EXPECT_EQ(img.h, h);
  EXPECT_EQ(img.pixels, rgb);
}

TEST(DecodeWebp, HostileFilesAreRefusedWithTheReason) {
  const int w = 40, h = 30;
  const std::vector<uint8_t> webp = lossless_webp(pattern(w, h), w, h);
  Image img;
  std::string why;
  // cut at several places: the header, the middle of the bitstream, its last byte
  for (size_t keep : {(size_t)12, (size_t)20, webp.size() / 2, webp.size() - 1}) {
    why.clear();
    EXPECT_FALSE(decode_image(webp.data(), keep, img, &why)) << keep << " bytes";
    EXPECT_TRUE(why.find("corrupt or truncated WebP") != std::string::npos ||
                why.find("cannot decode WebP") != std::string::npos) << keep << " bytes: " << why;
  }
  // the dimensions are checked before anything is decoded
  DecodeLimits small;
  small.max_side = 32;
  why.clear();
  EXPECT_FALSE(decode_image(webp.data(), webp.size(), img, &why, small));
  EXPECT_REASON(why, "WebP of 40 x 30 pixels, expected each side in 1..32");
  small = {};
  small.max_pixels = 1000;
  why.clear();
  EXPECT_FALSE(decode_image(webp.data(), webp.size(), img, &why, small));
  EXPECT_REASON(why, "at most 1000 pixels");
  // flipped bits in the entropy-coded data: refused, or decoded within bounds, never a crash
  std::vector<uint8_t> flipped = webp;
  for (size_t k = 30; k < flipped.size(); k += 7) flipped[k] ^= 0x5A;
  why.clear();
  if (!decode_image(flipped.data(), flipped.size(), img, &why)) {
    EXPECT_FALSE(why.empty());
  } else {
    EXPECT_EQ(img.pixels.size(), (size_t)img.w * img.h * 3);
  }
}

TEST(DecodeWebp, AnimationIsRefused) {
  const std::vector<uint8_t> anim = fixture_bytes("webp_animated.webp");
  Image img;
  std::string why;
  EXPECT_FALSE(decode_image(anim.data(), anim.size(), img, &why));
  EXPECT_REASON(why, "animated WebP is not supported");
}

std::vector<uint8_t> bytes_of(const std::string& header, std::vector<uint8_t> raster) {
  std::vector<uint8_t> b(header.begin(), header.end());
  b.insert(b.end(), raster.begin(), raster.end());
  return b;
}

TEST(DecodePnm, HeaderCommentsAndWhitespaceAsPillowReadsThem) {
  // comments end at the line's end; any whitespace separates the fields; one byte of it ends the header,
  // so a raster that starts with a whitespace value (10, '\n') is read as a pixel
  const std::vector<uint8_t> px = {10, 32, 35, 1, 2, 3};  // (1, 2, 3)
  Image img;
  std::string why;
  const std::vector<uint8_t> ppm = bytes_of("P6 # a comment\n#another\r\n 2\t1\n# maxval next\n255\n", px);
  ASSERT_TRUE(decode_image(ppm.data(), ppm.size(), img, &why)) << why;
  EXPECT_EQ(img.w, 2);
  EXPECT_EQ(img.h, 1);
  EXPECT_EQ(img.pixels, px);
  // bytes after the raster are ignored, as Pillow ignores them
  std::vector<uint8_t> longer = ppm;
  longer.push_back(7);
  ASSERT_TRUE(decode_image(longer.data(), longer.size(), img, &why)) << why;
  EXPECT_EQ(img.pixels, px);
  // Pillow's token reader drops a comment inside a token and joins its two halves: "1#c\n2" is 12 wide
  const std::vector<uint8_t> twelve(12 * 3, 9);
  const std::vector<uint8_t> joined = bytes_of("P6\n1#c\n2 1\n255\n", twelve);
  ASSERT_TRUE(decode_image(joined.data(), joined.size(), img, &why)) << why;
  EXPECT_EQ(img.w, 12);
  EXPECT_EQ(img.pixels, twelve);
}

TEST(DecodePnm, HostileAndUnsupportedFilesAreRefusedWithTheReason) {
  struct Case {
    std::vector<uint8_t> bytes;
    const char* reason;
  };
  const std::vector<uint8_t> six = {1, 2, 3, 4, 5, 6};
  DecodeLimits limits;
  limits.max_side = 100;
  for (const Case& c : {
           Case{bytes_of("P6\n2 1\n255\n", {1, 2, 3, 4, 5}), "truncated PPM: 5 bytes of pixels, expected 6"},
           Case{bytes_of("P5\n2 2\n255\n", {1, 2, 3}), "truncated PGM: 3 bytes of pixels, expected 4"},
           Case{bytes_of("P6\n2 1\n15\n", six), "PPM with maxval 15: expected 255"},
           Case{bytes_of("P5\n2 1\n65535\n", six), "PGM with maxval 65535: expected 255"},
           Case{bytes_of("P3\n1 1\n255\n1 2 3\n", {}), "'P3': plain-text (ASCII) PNM, not supported"},
           Case{bytes_of("P4\n8 1\n", {0xFF}), "'P4': PBM bitmap, not supported"},
           Case{bytes_of("P7\nWIDTH 1\n", {}), "'P7': PAM, not supported"},
           // Pillow's magic ends at whitespace: "P6#" and "P637" are no PNM there either
           Case{bytes_of("P6# c\n2 1\n255\n", six), "'P6#': not a PNM magic number"},
           Case{bytes_of("P62 1\n255\n", six), "'P62': not a PNM magic number"},
           Case{bytes_of("P6\n2 1\n12345678901\n", six), "corrupt or truncated PPM header"},
           Case{bytes_of("P6\n2 x\n255\n", six), "corrupt or truncated PPM header"},
           Case{bytes_of("P6\n2 1\n", {}), "corrupt or truncated PPM header"},
           Case{bytes_of("P6\n2 1 255\n", {}), "truncated PPM: 0 bytes of pixels, expected 6"},
           Case{bytes_of("P6\n0 1\n255\n", six), "PPM of 0 x 1 pixels"},
           Case{bytes_of("P6\n101 1\n255\n", six), "PPM of 101 x 1 pixels, expected each side in 1..100"},
           Case{bytes_of("P6\n99999999999999999999 1\n255\n", six), "corrupt or truncated PPM header"},
       }) {
    Image img;
    std::string why;
    EXPECT_FALSE(decode_image(c.bytes.data(), c.bytes.size(), img, &why, limits))
        << std::string(c.bytes.begin(), c.bytes.end());
    EXPECT_REASON(why, c.reason);
  }
}

// A TIFF written here with libtiff, 8-bit samples (H, W, spp) in one layout; `tile` > 0 writes square tiles of
// that side, else strips of `rows_per_strip` rows. Returns the file's bytes.
std::vector<uint8_t> libtiff_file(const std::string& path, const std::vector<uint8_t>& samples, uint32_t w,
                                  uint32_t h, uint16_t spp, uint16_t photometric, uint32_t tile,
                                  uint32_t rows_per_strip = 0, uint16_t bits = 8) {
  TIFF* t = TIFFOpen(path.c_str(), "w");
  EXPECT_NE(t, nullptr) << path;
  if (!t) return {};
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, photometric);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
  const size_t row = (size_t)w * spp * bits / 8;
  if (tile > 0) {
    TIFFSetField(t, TIFFTAG_TILEWIDTH, tile);
    TIFFSetField(t, TIFFTAG_TILELENGTH, tile);
    std::vector<uint8_t> buf((size_t)tile * tile * spp * bits / 8);  // (tile, tile, spp)
    for (uint32_t y0 = 0; y0 < h; y0 += tile)
      for (uint32_t x0 = 0; x0 < w; x0 += tile) {
        std::fill(buf.begin(), buf.end(), 0);
        for (uint32_t y = y0; y < std::min(h, y0 + tile); ++y)
          for (uint32_t x = x0; x < std::min(w, x0 + tile); ++x)
            for (uint16_t c = 0; c < spp; ++c)
              buf[((size_t)(y - y0) * tile + (x - x0)) * spp + c] = samples[((size_t)y * w + x) * spp + c];
        TIFFWriteTile(t, buf.data(), x0, y0, 0, 0);
      }
  } else {
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, rows_per_strip ? rows_per_strip : h);
    for (uint32_t y = 0; y < h; ++y) TIFFWriteScanline(t, const_cast<uint8_t*>(samples.data() + y * row), y, 0);
  }
  TIFFClose(t);
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Tiles (edge tiles partly outside the image) and strips of several rows give back what was written: LZW is
// lossless, so the pixels themselves are the oracle.
TEST(DecodeTiff, TilesAndStripsRoundTripExactly) {
  test::TempDir dir;
  const uint32_t w = 45, h = 37;
  const std::vector<uint8_t> rgb = pattern((int)w, (int)h);  // (H, W, 3)
  for (uint32_t tile : {16u, 32u}) {
    const std::vector<uint8_t> bytes = libtiff_file(dir.file("tiled.tif"), rgb, w, h, 3, PHOTOMETRIC_RGB, tile);
    Image img;
    std::string why;
    ASSERT_TRUE(decode_image(bytes.data(), bytes.size(), img, &why)) << why;
    EXPECT_EQ(img.w, (int)w);
    EXPECT_EQ(img.h, (int)h);
    EXPECT_EQ(img.pixels, rgb) << "tiles of " << tile;
  }
  const std::vector<uint8_t> strips = libtiff_file(dir.file("strips.tif"), rgb, w, h, 3, PHOTOMETRIC_RGB, 0, 5);
  Image img;
  std::string why;
  ASSERT_TRUE(decode_image(strips.data(), strips.size(), img, &why)) << why;
  EXPECT_EQ(img.pixels, rgb) << "strips of 5 rows";
}

TEST(DecodeTiff, HostileAndUnsupportedFilesAreRefusedWithTheReason) {
  test::TempDir dir;
  Image img;
  std::string why;
  const std::vector<uint8_t> good = fixture_bytes("tiff_rgb_lzw.tif");
  for (size_t keep : {(size_t)8, (size_t)20, good.size() / 2, good.size() - 40}) {
    why.clear();
    EXPECT_FALSE(decode_image(good.data(), keep, img, &why)) << keep << " bytes";
    EXPECT_REASON(why, "TIFF");
  }
  DecodeLimits small;
  small.max_side = 30;
  why.clear();
  EXPECT_FALSE(decode_image(good.data(), good.size(), img, &why, small));
  EXPECT_REASON(why, "TIFF of 37 x 23 pixels, expected each side in 1..30");

  // 32-bit samples and YCbCr: named, with what to do
  const std::vector<uint8_t> wide((size_t)9 * 7 * 3 * 4, 100);
  std::vector<uint8_t> bytes = libtiff_file(dir.file("32.tif"), wide, 9, 7, 3, PHOTOMETRIC_RGB, 0, 0, 32);
  why.clear();
  EXPECT_FALSE(decode_image(bytes.data(), bytes.size(), img, &why));
  EXPECT_REASON(why, "unsupported TIFF (photometric 2, 3 samples of 32 bits");
  EXPECT_REASON(why, "convert it to PNG");
  bytes = libtiff_file(dir.file("ycbcr.tif"), std::vector<uint8_t>((size_t)8 * 8 * 3, 90), 8, 8, 3,
                       PHOTOMETRIC_YCBCR, 0);
  why.clear();
  EXPECT_FALSE(decode_image(bytes.data(), bytes.size(), img, &why));
  EXPECT_REASON(why, "unsupported TIFF (photometric 6");

  // a small image that declares enormous tiles: refused before the tile buffer is allocated
  bytes = libtiff_file(dir.file("tiles.tif"), pattern(16, 16), 16, 16, 3, PHOTOMETRIC_RGB, 16);
  // TileWidth (tag 322) and TileLength (323), next to each other in the directory: each made a LONG of 65536
  const uint8_t tile_width_tag[2] = {0x42, 0x01};
  auto at = std::search(bytes.begin(), bytes.end(), tile_width_tag, tile_width_tag + 2);
  ASSERT_NE(at, bytes.end());
  for (int k = 0; k < 2; ++k) {
    uint8_t* entry = &*(at + 12 * k);  // tag (2), type (2), count (4), value (4)
    ASSERT_EQ(entry[0] + 256 * entry[1], 322 + k);
    entry[2] = 4, entry[3] = 0;                                // LONG
    entry[8] = 0, entry[9] = 0, entry[10] = 1, entry[11] = 0;  // 65536
  }
  why.clear();
  small = {};
  small.max_pixels = 1 << 20;
  EXPECT_FALSE(decode_image(bytes.data(), bytes.size(), img, &why, small));
  EXPECT_REASON(why, "TIFF tiles of 65536 x 65536 pixels, larger than the limits allow");
}

}  // namespace
}  // namespace moco
