// The named augmentation recipes of SPEC section 3, as plain parameter sets.
#include <cstdlib>
#include <cstring>

#include "moco/augment.h"
#include "moco/error.h"

namespace moco {

const char* recipe_name(AugmentKind kind) {
  switch (kind) {
    case AugmentKind::V1: return "v1";
    case AugmentKind::V2: return "v2";
    case AugmentKind::Small: return "small";
    case AugmentKind::LinclsTrain: return "lincls_train";
    case AugmentKind::Eval: return "eval";
  }
  return "?";
}

PillowResize pillow_resize_from_env() {
  const char* v = std::getenv("MOCO_RESIZE_AS_PILLOW");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "13") == 0) return PillowResize::Pillow13;
  if (std::strcmp(v, "12") == 0) return PillowResize::UpTo12;
  fail("MOCO_RESIZE_AS_PILLOW=", v, ": expected 13 (Pillow 13, the default) or 12 (every Pillow up to 12)");
}

AugmentRecipe recipe_from_name(const std::string& name, int size) {
  // Larger views are not a MoCo recipe, and the cap keeps a typo from asking for gigabytes per view.
  constexpr int kMaxSize = 4096;
  MOCO_CHECK(size >= 0 && size <= kMaxSize, "augmentation size ", size, " for recipe '", name,
             "': expected 1..", kMaxSize, " (or 0 for the recipe's default)");
  AugmentRecipe r;  // defaults: the v2 parameters
  if (name == "v1") {
    r.kind = AugmentKind::V1;
    r.p_jitter = 1.f;  // v1 applies ColorJitter to every view
    r.hue = 0.4f;
    r.p_blur = 0.f;
  } else if (name == "v2") {
    r.kind = AugmentKind::V2;
  } else if (name == "small") {
    r.kind = AugmentKind::Small;
    r.scale_lo = 0.08f;
    r.p_blur = 0.f;
  } else if (name == "lincls_train") {
    r.kind = AugmentKind::LinclsTrain;
    r.scale_lo = 0.08f;
    r.p_jitter = 0.f;
    r.p_gray = 0.f;
    r.p_blur = 0.f;
  } else if (name == "eval") {
    r.kind = AugmentKind::Eval;
    r.p_jitter = r.p_gray = r.p_blur = r.p_flip = 0.f;
  } else {
    fail("unknown augmentation recipe '", name, "': expected one of v1, v2, small, lincls_train, eval");
  }
  r.size = size > 0 ? size : (r.kind == AugmentKind::Small ? 32 : 224);
  // The ImageNet eval protocol (shorter side to S * 256 / 224, centre crop) assumes photos much larger than
  // the view; small images (28x28 Fashion-MNIST, 32x32 CIFAR at S = 32) are evaluated whole, resized to S.
  r.eval_center_crop = r.size > 64;
  r.pillow = pillow_resize_from_env();
  return r;
}

}  // namespace moco
