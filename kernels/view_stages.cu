// The augmentation stages after the crop, on the device: RandomGrayscale, ColorJitter (brightness, contrast,
// saturation, hue in each view's drawn order), GaussianBlur and the horizontal flip, on a batch of 8-bit views
// that the host cropped and resized. One view's decisions are a ViewStages record.
//
// What it computes: views (N, S, S, 3) uint8 -> the same views after their stages, in PIL's arithmetic on the
// bytes, as the authors' transforms run on PIL images. CPU reference: apply_view_stages_u8
// (src/data/augment_pipeline.cpp) with the colour ops of src/data/augment_color.cpp and the blur of
// src/data/augment_blur.cpp, which match Pillow byte for byte. The per-pixel colour arithmetic is the CPU's
// own code, include/moco/pil_pixel.h, whose float and double operations go through __f*_rn / __d*_rn here so
// that the compiler fuses none of them. Grey levels, the contrast mean and the blur are integer arithmetic.
// The tests compare the bytes with the CPU's.
//
// What is fused and why: each stage is one pass over the batch, in place on the views (the contrast mean adds
// an integer reduction per jitter position, the blur six passes through one scratch buffer). The host keeps
// only the crop and resize, about a quarter of a v2 view's CPU time (bench_augment), so a loader core feeds
// the GPU several times more images.
#include "../src/cuda/check.h"
#include "moco/augment.h"
#include "moco/pil_pixel.h"
#include "view_stages.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return (int)(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

__global__ void gray_kernel(int64_t pixels, int64_t plane, const ViewStages* __restrict__ st,  // (N)
                            uint8_t* __restrict__ x) {                                      // (N, S, S, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    if (!st[i / plane].gray) continue;
    uint8_t* p = x + i * 3;
    p[0] = p[1] = p[2] = (uint8_t)pil::luma(p);
  }
}

// means[v] = view v's mean grey level rounded to an integer (pil::mean_level of the integer sum over the
// view, as mean_grey_level), for the views whose k-th jitter op is contrast. One block per view.
__global__ void contrast_mean_kernel(int64_t plane, int k, const ViewStages* __restrict__ st,  // (N)
                                     const uint8_t* __restrict__ x,                            // (N, S, S, 3)
                                     int* __restrict__ means) {                                // (N)
  const ViewStages& s = st[blockIdx.x];
  if (!s.jitter || s.order[k] != 1) return;  // the whole block leaves together
  __shared__ unsigned long long part[kThreads];
  unsigned long long sum = 0;
  const uint8_t* img = x + (int64_t)blockIdx.x * plane * 3;
  for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) sum += pil::luma(img + i * 3);
  part[threadIdx.x] = sum;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) means[blockIdx.x] = pil::mean_level(part[0], plane);
}

// The k-th ColorJitter op of every view that jitters.
__global__ void jitter_kernel(int64_t pixels, int64_t plane, int k, const ViewStages* __restrict__ st,  // (N)
                              const int* __restrict__ means,                                          // (N)
                              uint8_t* __restrict__ x) {                                              // (N, S, S, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    const int64_t view = i / plane;
    const ViewStages& s = st[view];
    if (!s.jitter) continue;
    const int op = s.order[k];
    const float f = s.factor[op];
    uint8_t* p = x + i * 3;
    if (op == 0) {
      for (int c = 0; c < 3; ++c) p[c] = pil::blend(0, p[c], f);
    } else if (op == 1) {
      const int mean = means[view];
      for (int c = 0; c < 3; ++c) p[c] = pil::blend(mean, p[c], f);
    } else if (op == 2) {
      const int grey = (int)pil::luma(p);
      for (int c = 0; c < 3; ++c) p[c] = pil::blend(grey, p[c], f);
    } else {
      pil::shift_hue(p, (uint8_t)s.hue_turn);
    }
  }
}

// One of PIL's box passes along x (along_x) or y, on bytes: out = (inner * (the 2 radius + 1 pixels around)
// + edge * (the pixel beyond either end) + 2^23) >> 24, indices clamped into the view (the edge repeats); the
// box_passes_down of augment_blur.cpp, which keeps running sums where each thread here adds its own window
// (integers: the same bytes in any order). Views without a blur are left alone: no pass writes them, so they
// stay in the views, where the sixth pass leaves the blurred ones (a copy through the six passes would cost
// 12 reads and writes of every such view, 0.9 GB a step at batch 256 for v1, which has no blur).
__global__ void box_pass_kernel(int64_t pixels, int s, bool along_x, const ViewStages* __restrict__ st,  // (N)
                                const uint8_t* __restrict__ in,                                      // (N, S, S, 3)
                                uint8_t* __restrict__ out) {                                         // (N, S, S, 3)
  const int64_t plane = (int64_t)s * s;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    const int64_t view = i / plane;
    const ViewStages& v = st[view];
    if (!v.blur) continue;
    const int y = (int)((i % plane) / s), x = (int)(i % s);
    const uint8_t* img = in + view * plane * 3;
    auto at = [&](int offset) {  // the pixel `offset` away along the pass, clamped into the view
      int p = (along_x ? x : y) + offset;
      p = p < 0 ? 0 : (p >= s ? s - 1 : p);
      return img + (along_x ? (int64_t)y * s + p : (int64_t)p * s + x) * 3;
    };
    uint32_t window[3] = {0, 0, 0};
    for (int j = -v.radius; j <= v.radius; ++j) {
      const uint8_t* q = at(j);
      for (int c = 0; c < 3; ++c) window[c] += q[c];
    }
    const uint8_t* before = at(-v.radius - 1);
    const uint8_t* after = at(v.radius + 1);
    for (int c = 0; c < 3; ++c)
      out[i * 3 + c] = (uint8_t)((window[c] * v.inner + (uint32_t)(before[c] + after[c]) * v.edge + (1u << 23)) >> 24);
  }
}

// The horizontal flip (where drawn), in place: each thread swaps one pixel of a row's left half with its mirror.
__global__ void flip_kernel(int64_t half_pixels, int s, const ViewStages* __restrict__ st,  // (N)
                            uint8_t* __restrict__ x) {                                   // (N, S, S, 3)
  const int half = s / 2;
  const int64_t per_view = (int64_t)s * half;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < half_pixels; i += stride) {
    const int64_t view = i / per_view;
    if (!st[view].flip) continue;
    const int64_t y = (i % per_view) / half, col = (i % per_view) % half;
    uint8_t* row = x + (view * s + y) * s * 3;
    for (int c = 0; c < 3; ++c) {
      const uint8_t a = row[col * 3 + c];
      row[col * 3 + c] = row[(s - 1 - col) * 3 + c];
      row[(s - 1 - col) * 3 + c] = a;
    }
  }
}

}  // namespace

void apply_view_stages(int64_t n, int s, bool gray_first, const ViewStages* stages, uint8_t* views, uint8_t* scratch,
                       int* means, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && s >= 1, "apply_view_stages: need N >= 0 and S >= 1, got N=", n, " S=", s);
  MOCO_CHECK(n <= 65535 * 4 * kThreads, "apply_view_stages: ", n, " views in one call is too many");
  if (n == 0) return;
  MOCO_CHECK(stages && views && scratch && means, "apply_view_stages: a buffer is null");
  const int64_t plane = (int64_t)s * s, pixels = n * plane;
  const int grid = grid_for(pixels);
  if (gray_first) {
    gray_kernel<<<grid, kThreads, 0, stream>>>(pixels, plane, stages, views);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  for (int k = 0; k < 4; ++k) {  // each position's op needs the previous positions' result (contrast's mean)
    contrast_mean_kernel<<<(unsigned)n, kThreads, 0, stream>>>(plane, k, stages, views, means);
    MOCO_CUDA_CHECK_LAUNCH();
    jitter_kernel<<<grid, kThreads, 0, stream>>>(pixels, plane, k, stages, means, views);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  if (!gray_first) {
    gray_kernel<<<grid, kThreads, 0, stream>>>(pixels, plane, stages, views);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  for (int pass = 0; pass < 2 * kBlurPasses; ++pass) {  // x three times, then y three times, as PIL
    const bool even = pass % 2 == 0;  // an even number of passes ends in the views again
    box_pass_kernel<<<grid, kThreads, 0, stream>>>(pixels, s, pass < kBlurPasses, stages, even ? views : scratch,
                                                   even ? scratch : views);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  const int64_t half_pixels = n * s * (s / 2);
  if (half_pixels > 0) {
    flip_kernel<<<grid_for(half_pixels), kThreads, 0, stream>>>(half_pixels, s, stages, views);
    MOCO_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace moco::kernels
