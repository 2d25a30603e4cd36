// Cost of one augmented view, for the two regimes that matter: Fashion-MNIST small views and ImageNet-size
// v2 views. Checks first that a view is a pure function of its key (the same bytes twice), then times.
// Noise is the worst case for the branches of the HSV conversion; the smooth picture is closer to a photo.
//   build/bench_augment
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "moco/augment.h"

using namespace moco;

static Image picture(int side, bool noise) {
  Image img;
  img.h = img.w = side;
  img.pixels.resize((size_t)side * side * 3);  // (H, W, 3)
  Rng rng(8, 9);
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x)
      for (int c = 0; c < 3; ++c)
        img.pixels[((size_t)y * side + x) * 3 + c] =
            noise ? (uint8_t)rng.below(256) : (uint8_t)(127.5 + 127.5 * std::sin(0.05 * x + 0.03 * y + 2.0 * c));
  return img;
}

int main() {
  struct Case { const char* recipe; int side, views; bool noise; };
  for (const Case& c : {Case{"small", 28, 20000, true}, Case{"v2", 256, 300, true}, Case{"v2", 256, 300, false}}) {
    const Image img = picture(c.side, c.noise);
    const AugmentRecipe rec = recipe_from_name(c.recipe);
    std::vector<float> out((size_t)3 * rec.size * rec.size), again(out.size());  // (3, S, S)
    augment_view(img, rec, 0, 0, 7, 1, out.data());
    augment_view(img, rec, 0, 0, 7, 1, again.data());
    if (out != again) {
      std::printf("augment_view is not deterministic for %s: refusing to time it\n", c.recipe);
      return 1;
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < c.views; ++i) augment_view(img, rec, 0, 0, (uint64_t)i, 0, out.data());
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / c.views;
    std::printf("augment_view %-5s on %dx%d %-6s -> %dx%d: %7.1f us/view (one thread)\n", c.recipe, c.side, c.side,
                c.noise ? "noise" : "smooth", rec.size, rec.size, us);
  }
  // The v2 blur alone, on the bytes as the stages hold them, at the ends and the middle of its sigma range
  // (PIL's box radius 0.002 to 1.375; six passes of running sums, so every sigma costs about the same).
  std::vector<uint8_t> bytes((size_t)224 * 224 * 3);  // (S, S, 3)
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = (uint8_t)((i * 7919) % 251);
  for (float sigma : {0.1f, 1.0f, 2.0f}) {
    const int reps = 300;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) gaussian_blur(bytes.data(), 224, 224, sigma);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("gaussian_blur 224x224 sigma %.1f: %7.1f us (one thread)\n", sigma, us);
  }
  // The crop's resize to 224 alone, for boxes of a 500x375 photo that RandomResizedCrop draws: the whole
  // photo (shrunk 2.2x by 1.7x, PIL's antialiasing taps 5 to 6 source pixels per axis), half its area
  // (shrunk 1.6x by 1.2x), a fifth of it (grown on both axes: two neighbours), and a tall box whose height
  // shrinks much more than its width (Pillow 13 resizes it along y first).
  std::vector<uint8_t> view((size_t)224 * 224 * 3);  // (S, S, 3)
  Image photo;
  photo.h = 375, photo.w = 500;
  photo.pixels.resize((size_t)375 * 500 * 3);  // (H, W, 3)
  for (size_t i = 0; i < photo.pixels.size(); ++i) photo.pixels[i] = (uint8_t)((i * 2654435761u) >> 24);
  for (const CropBox box : {CropBox{0, 0, 375, 500}, CropBox{50, 70, 265, 353}, CropBox{100, 150, 168, 224},
                            CropBox{0, 130, 375, 240}}) {
    const int reps = 300;
    const PillowResize pillow = PillowResize::Pillow13;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) resize_bilinear(photo, box, 224, 224, CropBox{0, 0, 224, 224}, pillow, view.data());
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("resize_bilinear %3dx%3d box -> 224x224 (along %s first): %7.1f us (one thread)\n", box.w, box.h,
                pil_resizes_y_first(box.h, box.w, 224, 224, pillow) ? "y" : "x", us);
  }
  return 0;
}
