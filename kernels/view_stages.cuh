// Launcher for the augmentation stages after the crop, on the device (raw pointers and sizes only).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// Every decision of one view's stages, as the device reads them (filled on the host from ViewParams).
struct ViewStages {
  int jitter;              // 1: ColorJitter applies
  int order[4];            // op applied k-th: 0 brightness, 1 contrast, 2 saturation, 3 hue
  float factor[4];         // brightness, contrast and saturation factors (and the hue shift), by op number
  int hue_turn;            // the hue shift in bytes, hue_turn(factor[3]) (0 to 255)
  int gray;                // 1: RandomGrayscale fired
  int blur;                // 1: GaussianBlur applies, with PIL's box below (moco::BlurBox of the view's sigma)
  int radius;              // the box's whole pixels each side
  uint32_t inner, edge;    // its fixed-point weights (1 = 2^24): the 2 radius + 1 pixels, the one beyond each end
  int flip;                // 1: horizontal flip
};

// views (N, S, S, 3) uint8 in place: each view's stages in the order gray (if gray_first), colour jitter, gray
// (if not gray_first), blur, flip, in PIL's arithmetic on the bytes; the same as apply_view_stages_u8
// (src/data/augment_pipeline.cpp). stages (N), means (N) and scratch (N, S, S, 3) are DEVICE memory; means and
// scratch are work space.
void apply_view_stages(int64_t n, int s, bool gray_first, const ViewStages* stages, uint8_t* views, uint8_t* scratch,
                       int* means, cudaStream_t stream);

}  // namespace moco::kernels
