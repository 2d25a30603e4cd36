// Launcher for the augmentation stages after the crop, on the device (raw pointers and sizes only).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

constexpr int kMaxBlurRadius = 12;  // taps up to 25: sigma up to 4 (the recipes draw sigma <= 2, radius 6)

// Every decision of one view's stages, as the device reads them (filled on the host from ViewParams).
struct ViewStages {
  int jitter;              // 1: ColorJitter applies
  int order[4];            // op applied k-th: 0 brightness, 1 contrast, 2 saturation, 3 hue
  float factor[4];         // brightness, contrast, saturation factors and the hue shift, by op number
  int gray;                // 1: RandomGrayscale fired
  int radius;              // blur radius; 0: no blur
  float taps[2 * kMaxBlurRadius + 1];  // the normalised Gaussian, taps[j] weighs offset j - radius
  int flip;                // 1: horizontal flip
};

// views (N, S, S, 3) uint8 in place: each view's stages in the order gray (if gray_first), colour jitter, gray
// (if not gray_first), blur, flip, then rounded back to 8 bits; the same arithmetic as apply_view_stages_u8
// (src/data/augment_pipeline.cpp). stages (N) and means (N) are DEVICE memory; work_a and work_b
// (N, S, S, 3) floats are scratch.
void apply_view_stages(int64_t n, int s, bool gray_first, const ViewStages* stages, uint8_t* views,
                       float* work_a, float* work_b, float* means, cudaStream_t stream);

}  // namespace moco::kernels
