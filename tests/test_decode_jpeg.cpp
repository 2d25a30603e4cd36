// JPEG decoding (src/data/decode_jpeg.cpp), against Pillow and against hostile files.
//
// Against Pillow: each fixture (tools/pil_decode_fixtures.py) is a JPEG saved by Pillow and the
// RGB bytes PIL.Image.open(f).convert("RGB") returned for it, which is what torchvision's ImageFolder feeds
// its transforms. decode_image must return those bytes exactly, in every chroma layout, progressive, grey and
// Adobe CMYK (with and without black ink).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moco/data.h"
#include "pillow_fixture.h"
#include "synthetic_jpeg.h"  // bench/

namespace moco {
namespace {

std::vector<uint8_t> fixture_bytes(const std::string& name) {
  return test::pillow_fixture("pil_decode", name, "tools/pil_decode_fixtures.py");
}

class DecodeVsPil : public ::testing::TestWithParam<const char*> {};

TEST_P(DecodeVsPil, SameBytesAsPillow) {
  const std::string name = GetParam();
  const std::vector<uint8_t> jpg = fixture_bytes(name + ".jpg");
  const std::vector<uint8_t> want = fixture_bytes(name + ".rgb");  // (H, W, 3) from Pillow
  Image img;
  std::string why;
  ASSERT_TRUE(decode_image(jpg.data(), jpg.size(), img, &why)) << why;
  test::expect_pillow_bytes(img, want);
}

INSTANTIATE_TEST_SUITE_P(PillowFixtures, DecodeVsPil,
                         ::testing::Values("rgb420_q90", "rgb422_q75", "rgb444_q95", "rgb420_progressive",
                                           "grey_q90", "cmyk_adobe_q90", "cmyk_black_adobe_q90"));

// stb_image is not Pillow: on the same file it rounds its IDCT and upsamples chroma differently. The fixture
// test above would catch a silent fallback to it; this shows it can tell them apart.
TEST(DecodeVsPil, StbDiffersFromPillowSoTheFixturesDiscriminate) {
  const std::vector<uint8_t> jpg = fixture_bytes("rgb420_q90.jpg");
  const std::vector<uint8_t> want = fixture_bytes("rgb420_q90.rgb");
  Image img;
  std::string why;
  ASSERT_TRUE(decode_image(jpg.data(), jpg.size(), img, &why, {}, JpegDecoder::Stb)) << why;
  ASSERT_EQ(img.pixels.size(), want.size());
  EXPECT_NE(img.pixels, want);
}

// A grey progressive JPEG written by libjpeg with a scan script of 1 + 63 * successive_scans scans: the DC
// scan, then each AC coefficient alone, first at bit `successive_scans - 1` and refined down to bit 0.
std::vector<uint8_t> progressive_jpeg(int successive_scans) {
  const int side = 16;
  std::vector<uint8_t> grey((size_t)side * side);  // (H, W)
  for (size_t k = 0; k < grey.size(); ++k) grey[k] = (uint8_t)(k * 37 % 251);
  std::vector<jpeg_scan_info> scans;
  scans.push_back({1, {0, 0, 0, 0}, 0, 0, 0, 0});
  for (int k = 1; k < 64; ++k)
    for (int bit = successive_scans - 1; bit >= 0; --bit)
      scans.push_back({1, {0, 0, 0, 0}, k, k, bit == successive_scans - 1 ? 0 : bit + 1, bit});
  return bench::encode_jpeg(grey.data(), side, side, 1, 75, true, scans);
}

// Each progressive scan makes the decoder pass over every coefficient again, so a small file with thousands of
// scans costs minutes of CPU. Up to 500 scans decode; past that the file is refused with the reason.
TEST(DecodeJpegLimits, ProgressiveScanCountIsCapped) {
  Image img;
  std::string why;
  const std::vector<uint8_t> fine = progressive_jpeg(7);  // 1 + 63 * 7 = 442 scans
  ASSERT_TRUE(decode_image(fine.data(), fine.size(), img, &why)) << why;
  EXPECT_EQ(img.w, 16);
  const std::vector<uint8_t> bomb = progressive_jpeg(10);  // 631 scans
  EXPECT_FALSE(decode_image(bomb.data(), bomb.size(), img, &why));
  EXPECT_NE(why.find("progressive JPEG with more than 500 scans"), std::string::npos) << why;
}

// The frame header is checked against the limits before libjpeg allocates anything for the pixels.
TEST(DecodeJpegLimits, FrameSizeIsCheckedBeforeDecoding) {
  std::vector<uint8_t> jpg = fixture_bytes("rgb420_q90.jpg");
  size_t sof = 0;
  for (size_t k = 2; k + 1 < jpg.size() && !sof; ++k)
    if (jpg[k] == 0xFF && jpg[k + 1] == 0xC0) sof = k;
  ASSERT_GT(sof, 0u);
  // FF C0, length (2), precision (1), then height and width, big-endian: claim 30000 x 20000.
  jpg[sof + 5] = 20000 >> 8;
  jpg[sof + 6] = 20000 & 255;
  jpg[sof + 7] = 30000 >> 8;
  jpg[sof + 8] = 30000 & 255;
  Image img;
  std::string why;
  EXPECT_FALSE(decode_image(jpg.data(), jpg.size(), img, &why));
  EXPECT_NE(why.find("JPEG of 30000 x 20000 pixels, expected each side in 1..16384"), std::string::npos) << why;
  DecodeLimits tight;
  tight.max_pixels = 41 * 29 - 1;
  jpg = fixture_bytes("rgb420_q90.jpg");
  EXPECT_FALSE(decode_image(jpg.data(), jpg.size(), img, &why, tight));
  EXPECT_NE(why.find("JPEG of 41 x 29 pixels"), std::string::npos) << why;
}

}  // namespace
}  // namespace moco
