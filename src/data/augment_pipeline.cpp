// One augmented view: the recipe's stages in order, first drawn (draw_view_params), then applied
// (apply_view). The stage order of each recipe is SPEC section 3; the draw order inside a stage is
// torchvision's.
#include <algorithm>
#include <vector>

#include "moco/augment.h"
#include "moco/error.h"
#include "py_round.h"

namespace moco {

const float kImageMean[3] = {0.485f, 0.456f, 0.406f};
const float kImageStd[3] = {0.229f, 0.224f, 0.225f};

namespace {

enum class Stage { Gray, Jitter, Blur, Flip };

// The stages of each recipe after the crop, in order (eval has no random stage). A fixed-size list, so a
// view allocates nothing.
struct StageList {
  Stage s[4];
  int n;
  const Stage* begin() const { return s; }
  const Stage* end() const { return s + n; }
};
StageList stages_of(AugmentKind kind) {
  switch (kind) {
    case AugmentKind::V1: return {{Stage::Gray, Stage::Jitter, Stage::Flip}, 3};
    case AugmentKind::V2: return {{Stage::Jitter, Stage::Gray, Stage::Blur, Stage::Flip}, 4};
    case AugmentKind::Small: return {{Stage::Flip, Stage::Jitter, Stage::Gray}, 3};
    case AugmentKind::LinclsTrain: return {{Stage::Flip}, 1};
    case AugmentKind::Eval: return {{}, 0};
  }
  return {{}, 0};
}

// A Bernoulli(p) decision. p = 0 or 1 consumes no draw: torchvision has no coin for a stage that is always
// applied (v1's ColorJitter) and the stage would not exist at p = 0.
bool coin(double p, Rng& rng) {
  if (p <= 0.0) return false;
  if (p >= 1.0) return true;
  return rng.uniform() < p;
}

void check_recipe(const AugmentRecipe& r) {
  MOCO_CHECK(r.size > 0 && r.size <= 4096, "augmentation recipe '", recipe_name(r.kind), "': size ", r.size,
             " expected 1..4096");
}

void check_image(const Image& img) {
  MOCO_CHECK(img.h > 0 && img.w > 0 && img.pixels.size() == (size_t)img.h * img.w * 3, "augment: image ",
             img.h, "x", img.w, " holds ", img.pixels.size(), " bytes, expected h * w * 3 = ",
             (size_t)img.h * img.w * 3, " with h, w > 0");
}

// Eval geometry: the size the whole image is resized to and the window of that resized image kept.
void eval_geometry(const AugmentRecipe& r, int h, int w, int* dst_h, int* dst_w, CropBox* win) {
  const int s = r.size;
  if (!r.eval_center_crop) {
    *dst_h = *dst_w = s;
    *win = CropBox{0, 0, s, s};
    return;
  }
  // torchvision Resize(int): the shorter side becomes `side`, the longer one int(side * long / short).
  const int side = py_round((double)s * 256.0 / 224.0);
  if (h <= w) {
    *dst_h = side;
    *dst_w = (int)((double)side * w / h);
  } else {
    *dst_w = side;
    *dst_h = (int)((double)side * h / w);
  }
  // CenterCrop: offsets int(round((dim - s) / 2)).
  *win = CropBox{py_round((*dst_h - s) / 2.0), py_round((*dst_w - s) / 2.0), s, s};
}

}  // namespace

void hflip(uint8_t* hwc, int h, int w) {
  for (int y = 0; y < h; ++y) {
    uint8_t* row = hwc + (size_t)y * w * 3;  // (w, 3)
    for (int a = 0, b = w - 1; a < b; ++a, --b)
      for (int c = 0; c < 3; ++c) std::swap(row[a * 3 + c], row[b * 3 + c]);
  }
}

void normalize_to_chw(const uint8_t* hwc, int h, int w, float* chw) {
  // ToTensor's u / 255 and Normalize's (x - mean) / std, each a float32 operation as torchvision runs them
  // (divisions, not products with reciprocals, which differ in the last bit), tabulated once per channel.
  struct Table {
    float v[3][256];
    Table() {
      for (int c = 0; c < 3; ++c)
        for (int u = 0; u < 256; ++u) v[c][u] = ((float)u / 255.f - kImageMean[c]) / kImageStd[c];
    }
  };
  static const Table table;
  const size_t plane = (size_t)h * w;
  for (int c = 0; c < 3; ++c) {
    float* o = chw + c * plane;  // (h, w)
    const float* t = table.v[c];
    for (size_t i = 0; i < plane; ++i) o[i] = t[hwc[i * 3 + c]];
  }
}

ViewParams draw_view_params(const AugmentRecipe& r, int img_h, int img_w, Rng& rng) {
  check_recipe(r);
  ViewParams p;
  if (r.kind == AugmentKind::Eval) {
    p.crop = CropBox{0, 0, img_h, img_w};
    return p;
  }
  p.crop = random_resized_crop_box(img_h, img_w, r.scale_lo, r.scale_hi, rng);
  for (Stage st : stages_of(r.kind)) {
    switch (st) {
      case Stage::Gray: p.gray = coin(r.p_gray, rng); break;
      case Stage::Jitter:
        p.jitter = coin(r.p_jitter, rng);
        if (p.jitter) p.jitter_params = draw_color_jitter(r.brightness, r.contrast, r.saturation, r.hue, rng);
        break;
      case Stage::Blur:
        p.blur = coin(r.p_blur, rng);
        if (p.blur) p.sigma = (float)rng.uniform(r.sigma_lo, r.sigma_hi);
        break;
      case Stage::Flip: p.flip = coin(r.p_flip, rng); break;
    }
  }
  return p;
}

namespace {

// The view's geometry: the crop (eval: the resize and centre crop) resized to S x S, as (S, S, 3) bytes.
void render_geometry(const Image& img, const AugmentRecipe& r, const ViewParams& p, uint8_t* view) {
  check_recipe(r);
  check_image(img);
  const int s = r.size;
  if (r.kind == AugmentKind::Eval) {
    int dst_h = 0, dst_w = 0;
    CropBox win;
    eval_geometry(r, img.h, img.w, &dst_h, &dst_w, &win);
    resize_bilinear(img, CropBox{0, 0, img.h, img.w}, dst_h, dst_w, win, r.pillow, view);
  } else {
    resize_bilinear(img, p.crop, s, s, CropBox{0, 0, s, s}, r.pillow, view);
  }
}

}  // namespace

void apply_view_stages_u8(const AugmentRecipe& r, const ViewParams& p, const uint8_t* in, uint8_t* out) {
  check_recipe(r);
  const int s = r.size;
  const int64_t n = (int64_t)s * s;
  if (out != in) std::copy(in, in + n * 3, out);
  for (Stage st : stages_of(r.kind)) {
    switch (st) {
      case Stage::Gray: if (p.gray) to_grayscale(out, n); break;
      case Stage::Jitter: if (p.jitter) apply_color_jitter(out, n, p.jitter_params); break;
      case Stage::Blur: if (p.blur) gaussian_blur(out, s, s, p.sigma); break;
      case Stage::Flip: if (p.flip) hflip(out, s, s); break;
    }
  }
}

RecipeStages recipe_stages(AugmentKind kind) {
  RecipeStages r;
  for (Stage st : stages_of(kind)) {
    switch (st) {
      case Stage::Gray: r.gray = true, r.gray_first = !r.jitter; break;
      case Stage::Jitter: r.jitter = true; break;
      case Stage::Blur: r.blur = true; break;
      case Stage::Flip: r.flip = true; break;
    }
  }
  return r;
}

void apply_view_geometry_u8(const Image& img, const AugmentRecipe& r, const ViewParams& p, uint8_t* out) {
  MOCO_CHECK(out != nullptr, "apply_view_geometry_u8: output pointer is null, expected room for (", r.size, ", ",
             r.size, ", 3) bytes");
  render_geometry(img, r, p, out);
}

void apply_view_u8(const Image& img, const AugmentRecipe& r, const ViewParams& p, uint8_t* out) {
  MOCO_CHECK(out != nullptr, "apply_view_u8: output pointer is null, expected room for (", r.size, ", ", r.size,
             ", 3) bytes");
  render_geometry(img, r, p, out);
  apply_view_stages_u8(r, p, out, out);
}

void apply_view(const Image& img, const AugmentRecipe& r, const ViewParams& p, float* out) {
  MOCO_CHECK(out != nullptr, "apply_view: output pointer is null, expected room for (3, ", r.size, ", ",
             r.size, ") floats");
  // Loader workers each keep one buffer instead of allocating per view.
  thread_local std::vector<uint8_t> view;  // (S, S, 3): the view as PIL holds it
  view.resize((size_t)r.size * r.size * 3);
  apply_view_u8(img, r, p, view.data());
  normalize_to_chw(view.data(), r.size, r.size, out);
}

ViewParams draw_view_params(const Image& img, const AugmentRecipe& r, uint64_t seed, uint64_t epoch,
                            uint64_t sample, uint64_t view) {
  check_image(img);
  Rng rng(seed, view_stream(epoch, sample, view));
  return draw_view_params(r, img.h, img.w, rng);
}

void augment_view(const Image& img, const AugmentRecipe& r, uint64_t seed, uint64_t epoch, uint64_t sample,
                  uint64_t view, float* out) {
  apply_view(img, r, draw_view_params(img, r, seed, epoch, sample, view), out);
}

void augment_view_u8(const Image& img, const AugmentRecipe& r, uint64_t seed, uint64_t epoch, uint64_t sample,
                     uint64_t view, uint8_t* out) {
  apply_view_u8(img, r, draw_view_params(img, r, seed, epoch, sample, view), out);
}

}  // namespace moco
