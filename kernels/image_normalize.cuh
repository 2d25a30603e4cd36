// Launcher for turning augmented uint8 views into normalised network input (raw pointers and sizes only).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// The ImageNet normalisation torchvision applies after ToTensor: v = (u / 255 - mean_ch) / std_ch with
// mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), in fp32 divisions as torchvision computes it
// (the values of the CPU's normalize_to_chw, include/moco/augment.h).
// images (N, H, W, 3) uint8 -> out (N, H, W, 3) of T: float, or __nv_bfloat16 (rounded to nearest even).
template <class T>
void image_to_nhwc(int64_t n, int64_t h, int64_t w, const uint8_t* images, T* out, cudaStream_t stream);

}  // namespace moco::kernels
