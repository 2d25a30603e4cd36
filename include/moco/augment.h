// Augmentation pipelines of MoCo (SPEC section 3), with torchvision semantics: one augmented view of an 8-bit
// RGB image as a normalised float (3, S, S) tensor.
//
// A view is a pure function of (image, recipe, seed, epoch, sample, view): every random draw comes from
// Rng(seed, view_stream(epoch, sample, view)), in the order torchvision draws them. The pipeline is split in
// two steps so that the draws can be tested without pixels: draw_view_params() consumes the stream and
// returns every decision of the view; apply_view() does the pixel work.
//
// Pixel work follows torchvision's PIL path byte for byte: the crop is resized in PIL's fixed point and held as
// 8-bit RGB, the colour ops, grayscale and blur are PIL's arithmetic on those bytes, and the float view is
// ToTensor's u / 255 normalised as Normalize does it. The 8-bit form of a view (augment_view_u8, what GPU
// training copies) is those bytes before ToTensor.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "moco/image.h"
#include "moco/rng.h"

namespace moco {

// ---- recipes

enum class AugmentKind { V1, V2, Small, LinclsTrain, Eval };

// The Pillow whose resize a view reproduces byte for byte. PIL resizes in two passes, each rounded to a byte,
// so their order shows in the last bit of some pixels: every Pillow up to 12 resizes along x first; Pillow 13
// resizes along y first when the height shrinks by more than twice as many pixels as the width
// (pil_resizes_y_first).
enum class PillowResize { UpTo12, Pillow13 };
// MOCO_RESIZE_AS_PILLOW: "13" or unset (the default, the current Pillow) or "12"; anything else throws
// moco::Error naming the value.
PillowResize pillow_resize_from_env();

// Every parameter of a recipe. recipe_from_name() fills them from SPEC section 3; the fields are plain data so
// an experiment can change one (e.g. the crop scale) without a new kind.
struct AugmentRecipe {
  AugmentKind kind = AugmentKind::V2;
  int size = 224;                           // S: the view is (3, S, S)
  float scale_lo = 0.2f, scale_hi = 1.0f;   // RandomResizedCrop area fraction
  float p_jitter = 0.8f;                    // probability ColorJitter is applied (1 for v1)
  float brightness = 0.4f, contrast = 0.4f, saturation = 0.4f, hue = 0.1f;  // ColorJitter strengths
  float p_gray = 0.2f;                      // RandomGrayscale
  float p_blur = 0.5f;                      // GaussianBlur (v2 only)
  float sigma_lo = 0.1f, sigma_hi = 2.0f;   // blur sigma in output pixels, uniform
  float p_flip = 0.5f;                      // RandomHorizontalFlip
  // eval only: true = resize the shorter side to round(S * 256 / 224) and centre-crop S (ImageNet protocol);
  // false = resize the whole image to S x S. recipe_from_name() picks false for S <= 64, the small-image
  // regime (Fashion-MNIST 28x28 or CIFAR 32x32 at S = 32) where the authors' demo evaluates the whole picture.
  bool eval_center_crop = true;
  PillowResize pillow = PillowResize::Pillow13;  // recipe_from_name() takes pillow_resize_from_env()
};

// "v1", "v2", "small", "lincls_train" or "eval". size = 0 picks the recipe's default (32 for small, 224 for the
// others). Throws moco::Error naming the bad value and the accepted ones.
AugmentRecipe recipe_from_name(const std::string& name, int size = 0);
const char* recipe_name(AugmentKind kind);

// ---- the view

// One view: draws from Rng(seed, view_stream(epoch, sample, view)) and writes (3, S, S) floats, normalised
// by mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), to `out`. Thread-safe (scratch is per thread).
void augment_view(const Image& img, const AugmentRecipe& r, uint64_t seed, uint64_t epoch, uint64_t sample,
                  uint64_t view, float* out /* (3, S, S) */);
// The same view, before normalisation, as 8-bit RGB (S, S, 3): the image torchvision's ToTensor would see
// (PIL keeps 8 bits), a quarter of the fp32 bytes; the GPU step normalises it on the device
// (kernels/image_normalize.cu). Thread-safe like augment_view.
void augment_view_u8(const Image& img, const AugmentRecipe& r, uint64_t seed, uint64_t epoch, uint64_t sample,
                     uint64_t view, uint8_t* out /* (S, S, 3) */);

// ---- building blocks (public so that tests can check each against an independent reference)

// A box in image pixels: rows [top, top + h), columns [left, left + w).
struct CropBox {
  int top = 0, left = 0, h = 0, w = 0;
  bool operator==(const CropBox& o) const { return top == o.top && left == o.left && h == o.h && w == o.w; }
};

// torchvision RandomResizedCrop.get_params with ratio (3/4, 4/3): up to 10 tries of (area fraction uniform in
// [scale_lo, scale_hi], log aspect ratio uniform in [ln 3/4, ln 4/3]); on acceptance top = below(H - h + 1),
// then left = below(W - w + 1); after 10 rejections the centre crop of rrc_fallback_box(). Rounding is
// Python's round (half to even).
CropBox random_resized_crop_box(int h, int w, float scale_lo, float scale_hi, Rng& rng);
// The fallback: the whole image, narrowed to the nearest aspect ratio inside [3/4, 4/3], centred.
CropBox rrc_fallback_box(int h, int w);

// PIL's bilinear resize of `box` of `img` to (dst_h, dst_w) (antialiased when it shrinks; two passes, each in
// PIL's fixed point rounded to a byte, in the order `pillow` runs them), reading only inside the box (as if it
// had been cropped first), and writing the window rows [win.top, win.top + win.h) x columns [win.left,
// win.left + win.w) of the result.
void resize_bilinear(const Image& img, const CropBox& box, int dst_h, int dst_w, const CropBox& win,
                     PillowResize pillow, uint8_t* out /* (win.h, win.w, 3) */);
// Whether that Pillow resizes (in_h, in_w) to (out_h, out_w) along y first: Pillow 13 does when out_h < in_h
// and in_h - out_h > 2 (in_w - out_w) (found against Pillow 13.0.0 on 1,490 random shapes and along the
// boundary; tools/pil_resize_fixtures.py writes cases on both sides of it).
bool pil_resizes_y_first(int in_h, int in_w, int out_h, int out_w, PillowResize pillow);

// Colour ops on n pixels of a (n, 3) 8-bit RGB buffer, in place, in PIL's arithmetic (augment_color.cpp).
void to_grayscale(uint8_t* rgb /* (n, 3) */, int64_t n);                    // convert("L"), back to RGB
void adjust_brightness(uint8_t* rgb /* (n, 3) */, int64_t n, float factor);  // blend with black
void adjust_contrast(uint8_t* rgb /* (n, 3) */, int64_t n, float factor);    // blend with the mean grey level
void adjust_saturation(uint8_t* rgb /* (n, 3) */, int64_t n, float factor);  // blend with the pixel's grey
void adjust_hue(uint8_t* rgb /* (n, 3) */, int64_t n, float shift);          // HSV hue + hue_turn(shift)
// The mean grey level of n pixels rounded to an integer, as ImageEnhance.Contrast takes it.
int mean_grey_level(const uint8_t* rgb /* (n, 3) */, int64_t n);
// torchvision's hue step in bytes: int(255 shift) (truncated), modulo 256.
uint8_t hue_turn(float shift);

// ColorJitter's draws (torchvision get_params order): a random permutation of the four ops, then the
// brightness, contrast, saturation and hue factors. order[k] is the op applied k-th: 0 brightness,
// 1 contrast, 2 saturation, 3 hue.
struct ColorJitterParams {
  int order[4] = {0, 1, 2, 3};
  float brightness = 1.f, contrast = 1.f, saturation = 1.f, hue = 0.f;
  bool operator==(const ColorJitterParams& o) const {
    return std::equal(order, order + 4, o.order) && brightness == o.brightness && contrast == o.contrast &&
           saturation == o.saturation && hue == o.hue;
  }
};
ColorJitterParams draw_color_jitter(float brightness, float contrast, float saturation, float hue, Rng& rng);
void apply_color_jitter(uint8_t* rgb /* (n, 3) */, int64_t n, const ColorJitterParams& p);

// PIL's GaussianBlur(radius=sigma) of a (h, w, 3) 8-bit buffer, in place: kBlurPasses box passes along x,
// then as many along y, each PIL's fixed-point box of pil_blur_box rounded to 8 bits, the edge pixel repeated
// outside the image.
constexpr int kBlurPasses = 3;
void gaussian_blur(uint8_t* hwc /* (h, w, 3) */, int h, int w, float sigma);
// The real radius of PIL's boxes for sigma, rounded as PIL rounds it: three such boxes have variance sigma^2
// (sigma in (0, 100]).
float pil_box_radius(float sigma);
// One pass of PIL's box in its fixed point (1 = 2^24): out = (inner * (the 2 radius + 1 pixels around it) +
// edge * (the pixel beyond either end) + 2^23) >> 24. inner = 2^24 / (2 r + 1) truncated, radius = floor(r),
// edge = (2^24 - (2 radius + 1) inner) / 2, for r = pil_box_radius(sigma).
struct BlurBox {
  int radius = 0;
  uint32_t inner = 0, edge = 0;
};
BlurBox pil_blur_box(float sigma);

void hflip(uint8_t* hwc /* (h, w, 3) */, int h, int w);

// ToTensor + Normalize of an 8-bit view: (u / 255 - mean) / std per channel in float32, HWC -> CHW.
extern const float kImageMean[3];
extern const float kImageStd[3];
void normalize_to_chw(const uint8_t* hwc /* (h, w, 3) */, int h, int w, float* chw /* (3, h, w) */);

// Every decision of one view, in the order the recipe draws them.
struct ViewParams {
  CropBox crop;                 // box in the source image (eval: the whole image)
  bool jitter = false;          // ColorJitter applied
  ColorJitterParams jitter_params;
  bool gray = false;            // RandomGrayscale fired
  bool blur = false;            // GaussianBlur applied
  float sigma = 0.f;            // its sigma
  bool flip = false;            // horizontal flip
  bool operator==(const ViewParams& o) const {
    return crop == o.crop && jitter == o.jitter && jitter_params == o.jitter_params && gray == o.gray &&
           blur == o.blur && sigma == o.sigma && flip == o.flip;
  }
};
ViewParams draw_view_params(const AugmentRecipe& r, int img_h, int img_w, Rng& rng);
// The decisions augment_view makes: drawn from Rng(seed, view_stream(epoch, sample, view)).
ViewParams draw_view_params(const Image& img, const AugmentRecipe& r, uint64_t seed, uint64_t epoch,
                            uint64_t sample, uint64_t view);
void apply_view(const Image& img, const AugmentRecipe& r, const ViewParams& p, float* out /* (3, S, S) */);
void apply_view_u8(const Image& img, const AugmentRecipe& r, const ViewParams& p, uint8_t* out /* (S, S, 3) */);

// A view in two halves, for GPU training, where the stages after the crop run on the device
// (kernels/view_stages.cu): the geometry on the host, 8-bit as PIL holds the crop, then the recipe's random
// stages (grayscale, colour jitter, blur, flip) on those bytes: (S, S, 3) in, (S, S, 3) out (in place when
// in == out). The stages are the CPU twin of the device's.
void apply_view_geometry_u8(const Image& img, const AugmentRecipe& r, const ViewParams& p,
                            uint8_t* out /* (S, S, 3) */);
void apply_view_stages_u8(const AugmentRecipe& r, const ViewParams& p, const uint8_t* in /* (S, S, 3) */,
                          uint8_t* out /* (S, S, 3) */);
// Which stages a recipe has after its crop, and whether it converts to grey before its colour jitter (v1)
// or after it (v2, small). The flip commutes with the per-pixel stages, and the one recipe that blurs (v2)
// blurs after both and flips last: so the device runs gray (if first), jitter, gray (if after), blur, flip.
struct RecipeStages {
  bool gray = false, jitter = false, blur = false, flip = false;
  bool gray_first = false;
};
RecipeStages recipe_stages(AugmentKind kind);

}  // namespace moco
