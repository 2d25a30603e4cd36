// JPEG decode cost, libjpeg-turbo against stb_image, on ImageNet-like files: 500 x 375 (ImageNet's most
// common size), 4:2:0 chroma, quality 75 and 95, baseline and progressive, written here by libjpeg's encoder
// from a synthetic photograph (smooth shading, edges and grain), so the benchmark needs no data set.
// Checks first that both decoders return the picture (PSNR against the encoder's input above 30 dB) and
// agree with each other (mean absolute difference under 2 levels: they differ only in IDCT rounding and
// chroma upsampling), then times each over the same bytes on one thread.
//   build/bench_decode
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "moco/data.h"
#include "synthetic_jpeg.h"

using namespace moco;

namespace {

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
  const Image src = bench::photo(500, 375);
  std::printf("%-26s %8s %12s %12s %8s\n", "file (500x375, 4:2:0)", "bytes", "stb us", "libjpeg us", "speedup");
  for (int quality : {75, 95})
    for (bool progressive : {false, true}) {
      const std::vector<uint8_t> bytes = bench::encode_jpeg(src, quality, progressive);
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
