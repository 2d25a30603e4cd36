// JPEG decode cost, libjpeg-turbo against stb_image, on ImageNet-like files: 500 x 375 (ImageNet's most
// common size), 4:2:0 chroma, quality 75 and 95, baseline and progressive, written here by libjpeg's encoder
// from a synthetic photograph (smooth shading, edges and grain), so the benchmark needs no data set.
// Checks first that both decoders return the picture (PSNR against the encoder's input above 30 dB) and
// agree with each other (mean absolute difference under 2 levels: they differ only in IDCT rounding and
// chroma upsampling), then times each over the same bytes on one thread.
//   build/bench_decode
// jpeglib.h uses size_t and FILE without including their headers.
#include <cstddef>
#include <cstdio>

#include <jpeglib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "moco/data.h"
#include "moco/rng.h"

using namespace moco;

namespace {

// A photograph-like picture: two soft gradients, a disc with a hard edge, stripes, and per-pixel grain.
Image photo(int w, int h) {
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

std::vector<uint8_t> encode(const Image& img, int quality, bool progressive) {
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

double psnr(const Image& a, const Image& b) {
  double se = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) se += std::pow((double)a.pixels[i] - b.pixels[i], 2);
  return 10 * std::log10(255.0 * 255.0 / (se / (double)a.pixels.size()));
}

double mean_abs_diff(const Image& a, const Image& b) {
  double s = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) s += std::fabs((double)a.pixels[i] - b.pixels[i]);
  return s / (double)a.pixels.size();
}

// Microseconds per decode, the best of 5 rounds of `reps` decodes.
double time_decode(const std::vector<uint8_t>& bytes, JpegDecoder dec, int reps) {
  Image img;
  std::string why;
  double best = 1e30;
  for (int round = 0; round < 5; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) decode_image(bytes.data(), bytes.size(), img, &why, {}, dec);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, us / reps);
  }
  return best;
}

}  // namespace

int main() {
  const Image src = photo(500, 375);
  std::printf("%-26s %8s %12s %12s %8s\n", "file (500x375, 4:2:0)", "bytes", "stb us", "libjpeg us", "speedup");
  for (int quality : {75, 95})
    for (bool progressive : {false, true}) {
      const std::vector<uint8_t> bytes = encode(src, quality, progressive);
      Image a, b;
      std::string why;
      if (!decode_image(bytes.data(), bytes.size(), a, &why, {}, JpegDecoder::Stb) ||
          !decode_image(bytes.data(), bytes.size(), b, &why, {}, JpegDecoder::LibjpegTurbo)) {
        std::printf("decode failed: %s\n", why.c_str());
        return 1;
      }
      const double pa = psnr(src, a), pb = psnr(src, b), mad = mean_abs_diff(a, b);
      if (a.w != src.w || b.h != src.h || pa < 30 || pb < 30 || mad > 2) {
        std::printf("decoders disagree (PSNR stb %.1f dB, libjpeg %.1f dB, mean |diff| %.2f): refusing to time\n",
                    pa, pb, mad);
        return 1;
      }
      const double t_stb = time_decode(bytes, JpegDecoder::Stb, 40);
      const double t_lj = time_decode(bytes, JpegDecoder::LibjpegTurbo, 40);
      char name[64];
      std::snprintf(name, sizeof name, "q%d %s", quality, progressive ? "progressive" : "baseline");
      std::printf("%-26s %8zu %12.0f %12.0f %7.2fx   (PSNR %.1f / %.1f dB, mean |stb-libjpeg| %.2f)\n", name,
                  bytes.size(), t_stb, t_lj, t_stb / t_lj, pa, pb, mad);
    }
  return 0;
}
