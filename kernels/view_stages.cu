// The augmentation stages after the crop, on the device: RandomGrayscale, ColorJitter (brightness, contrast,
// saturation, hue in each view's drawn order), GaussianBlur and the horizontal flip, on a batch of 8-bit views
// that the host cropped and resized. One view's decisions are a ViewStages record.
//
// What it computes: views (N, S, S, 3) uint8 -> the same views after their stages; the colour ops in float,
// rounded to 8 bits before the blur, which runs PIL's fixed-point box passes on the bytes.
// CPU reference: apply_view_stages_u8 (src/data/augment_pipeline.cpp) with the colour ops of
// src/data/augment_color.cpp and the blur of src/data/augment_blur.cpp. Every float operation is the CPU's,
// in the CPU's order: products and sums are written with __fmul_rn / __fadd_rn so that the compiler does not
// contract them into fused multiply-adds (which round once where the CPU rounds twice; the host builds the
// CPU side with -ffp-contract=off for the same reason). The contrast mean is summed in double as on the CPU,
// though in another order: the two sums agree to about 1e-16 of their value, so the float means differ only
// if one lies that close to a rounding boundary (on the order of one view in 10^8). The tests compare the
// bytes with the CPU's.
//
// What is fused and why: each stage is one pass over the batch (the contrast mean adds a reduction per jitter
// position), in fp32 scratch; then one pass rounds, six blur the bytes, one flips. The host keeps only the
// crop and resize, about a quarter of a v2 view's CPU time (bench_augment), so a loader core feeds the GPU
// several times more images.
#include "../src/cuda/check.h"
#include "moco/augment.h"
#include "view_stages.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return (int)(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

__device__ __forceinline__ float clamp01(float x) { return fminf(1.f, fmaxf(0.f, x)); }

// ITU-R 601-2 luma, (0.299 r + 0.587 g) + 0.114 b as the CPU rounds it.
__device__ __forceinline__ float luma(const float* p) {
  return __fadd_rn(__fadd_rn(__fmul_rn(0.299f, p[0]), __fmul_rn(0.587f, p[1])), __fmul_rn(0.114f, p[2]));
}

// f * x + offset, rounded after the product and after the sum.
__device__ __forceinline__ float blend(float f, float x, float offset) { return __fadd_rn(__fmul_rn(f, x), offset); }

// The CPU's branch-free HSV rotation (adjust_hue in augment_color.cpp), on one pixel.
__device__ void rotate_hue(float* p, float shift) {
  const float rr = p[0], gg = p[1], bb = p[2];
  const float v = fmaxf(rr, fmaxf(gg, bb));
  const float d = __fsub_rn(v, fminf(rr, fminf(gg, bb)));
  const float inv_d = 1.f / (d > 0.f ? d : 1.f);
  const float h_r = __fmul_rn(__fsub_rn(gg, bb), inv_d);
  const float h_g = __fadd_rn(__fmul_rn(__fsub_rn(bb, rr), inv_d), 2.f);
  const float h_b = __fadd_rn(__fmul_rn(__fsub_rn(rr, gg), inv_d), 4.f);
  float h6 = __fadd_rn(v == rr ? h_r : (v == gg ? h_g : h_b), __fmul_rn(6.f, shift));
  h6 = h6 < 0.f ? __fadd_rn(h6, 6.f) : h6;
  h6 = h6 >= 6.f ? __fsub_rn(h6, 6.f) : h6;
  const float m[3] = {5.f, 3.f, 1.f};
  for (int c = 0; c < 3; ++c) {
    float t = __fadd_rn(h6, m[c]);
    t = t >= 6.f ? __fsub_rn(t, 6.f) : t;
    p[c] = clamp01(__fsub_rn(v, __fmul_rn(d, clamp01(fminf(t, __fsub_rn(4.f, t))))));
  }
}

__global__ void to_float_kernel(int64_t values, const uint8_t* __restrict__ in,  // (N, S, S, 3)
                                float* __restrict__ out) {                      // (N, S, S, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < values; i += stride)
    out[i] = __fmul_rn((float)in[i], 1.f / 255.f);
}

__global__ void gray_kernel(int64_t pixels, int64_t plane, const ViewStages* __restrict__ st,  // (N)
                            float* __restrict__ x) {                                        // (N, S, S, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    if (!st[i / plane].gray) continue;
    float* p = x + i * 3;
    const float g = clamp01(luma(p));
    p[0] = p[1] = p[2] = g;
  }
}

// means[v] = the mean luma of view v, summed in double (as the CPU does), for the views whose k-th jitter op
// is contrast. One block per view.
__global__ void contrast_mean_kernel(int64_t plane, int k, const ViewStages* __restrict__ st,  // (N)
                                     const float* __restrict__ x,                              // (N, S, S, 3)
                                     float* __restrict__ means) {                              // (N)
  const ViewStages& s = st[blockIdx.x];
  if (!s.jitter || s.order[k] != 1) return;  // the whole block leaves together
  __shared__ double part[kThreads];
  double sum = 0.0;
  const float* img = x + (int64_t)blockIdx.x * plane * 3;
  for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) sum += (double)luma(img + i * 3);
  part[threadIdx.x] = sum;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) means[blockIdx.x] = (float)(part[0] / (double)plane);
}

// The k-th ColorJitter op of every view that jitters.
__global__ void jitter_kernel(int64_t pixels, int64_t plane, int k, const ViewStages* __restrict__ st,  // (N)
                              const float* __restrict__ means,                                        // (N)
                              float* __restrict__ x) {                                                // (N, S, S, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    const int64_t view = i / plane;
    const ViewStages& s = st[view];
    if (!s.jitter) continue;
    const int op = s.order[k];
    const float f = s.factor[op];
    float* p = x + i * 3;
    if (op == 0) {
      for (int c = 0; c < 3; ++c) p[c] = clamp01(__fmul_rn(f, p[c]));
    } else if (op == 1) {
      const float offset = __fmul_rn(1.f - f, means[view]);
      for (int c = 0; c < 3; ++c) p[c] = clamp01(blend(f, p[c], offset));
    } else if (op == 2) {
      const float offset = __fmul_rn(1.f - f, luma(p));
      for (int c = 0; c < 3; ++c) p[c] = clamp01(blend(f, p[c], offset));
    } else {
      rotate_hue(p, f);
    }
  }
}

// Rounds to 8 bits as quantize_to_u8 does: 255 x + 0.5, clamped, truncated.
__global__ void quantize_kernel(int64_t values, const float* __restrict__ x,  // (N, S, S, 3)
                                uint8_t* __restrict__ out) {                // (N, S, S, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < values; i += stride) {
    float v = __fadd_rn(__fmul_rn(x[i], 255.f), 0.5f);
    v = v > 0.f ? v : 0.f;
    v = v > 255.f ? 255.f : v;
    out[i] = (uint8_t)(int)v;
  }
}

// One of PIL's box passes along x (along_x) or y, on bytes: out = (inner * (the 2 radius + 1 pixels around)
// + edge * (the pixel beyond either end) + 2^23) >> 24, indices clamped into the view (the edge repeats); the
// box_passes_down of augment_blur.cpp, which keeps running sums where each thread here adds its own window
// (integers: the same bytes in any order). Views without a blur are copied.
__global__ void box_pass_kernel(int64_t pixels, int s, bool along_x, const ViewStages* __restrict__ st,  // (N)
                                const uint8_t* __restrict__ in,                                      // (N, S, S, 3)
                                uint8_t* __restrict__ out) {                                         // (N, S, S, 3)
  const int64_t plane = (int64_t)s * s;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    const int64_t view = i / plane;
    const int y = (int)((i % plane) / s), x = (int)(i % s);
    const ViewStages& v = st[view];
    const uint8_t* img = in + view * plane * 3;
    if (!v.blur) {
      for (int c = 0; c < 3; ++c) out[i * 3 + c] = img[((int64_t)y * s + x) * 3 + c];
      continue;
    }
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

// Flip (where drawn), bytes to bytes.
__global__ void flip_kernel(int64_t pixels, int s, const ViewStages* __restrict__ st,  // (N)
                            const uint8_t* __restrict__ in,                             // (N, S, S, 3)
                            uint8_t* __restrict__ out) {                                // (N, S, S, 3)
  const int64_t plane = (int64_t)s * s;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    const int64_t view = i / plane;
    const int64_t y = (i % plane) / s, col = i % s;
    const int64_t from = view * plane + y * s + (st[view].flip ? s - 1 - col : col);
    for (int c = 0; c < 3; ++c) out[i * 3 + c] = in[from * 3 + c];
  }
}

}  // namespace

void apply_view_stages(int64_t n, int s, bool gray_first, const ViewStages* stages, uint8_t* views, float* work_a,
                       float* work_b, float* means, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && s >= 1, "apply_view_stages: need N >= 0 and S >= 1, got N=", n, " S=", s);
  MOCO_CHECK(n <= 65535 * 4 * kThreads, "apply_view_stages: ", n, " views in one call is too many");
  if (n == 0) return;
  MOCO_CHECK(stages && views && work_a && work_b && means, "apply_view_stages: a buffer is null");
  const int64_t plane = (int64_t)s * s, pixels = n * plane;
  const int grid = grid_for(pixels);
  to_float_kernel<<<grid_for(pixels * 3), kThreads, 0, stream>>>(pixels * 3, views, work_a);
  MOCO_CUDA_CHECK_LAUNCH();
  if (gray_first) {
    gray_kernel<<<grid, kThreads, 0, stream>>>(pixels, plane, stages, work_a);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  for (int k = 0; k < 4; ++k) {  // each position's op needs the previous positions' result (contrast's mean)
    contrast_mean_kernel<<<(unsigned)n, kThreads, 0, stream>>>(plane, k, stages, work_a, means);
    MOCO_CUDA_CHECK_LAUNCH();
    jitter_kernel<<<grid, kThreads, 0, stream>>>(pixels, plane, k, stages, means, work_a);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  if (!gray_first) {
    gray_kernel<<<grid, kThreads, 0, stream>>>(pixels, plane, stages, work_a);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  // the bytes PIL would blur, in work_b's memory; the float scratch work_a is free from here and takes the
  // bytes between passes (an even number of passes ends in `bytes` again)
  uint8_t* bytes = reinterpret_cast<uint8_t*>(work_b);  // (N, S, S, 3)
  uint8_t* between = reinterpret_cast<uint8_t*>(work_a);  // (N, S, S, 3)
  quantize_kernel<<<grid_for(pixels * 3), kThreads, 0, stream>>>(pixels * 3, work_a, bytes);
  MOCO_CUDA_CHECK_LAUNCH();
  for (int pass = 0; pass < 2 * kBlurPasses; ++pass) {  // x three times, then y three times, as PIL
    const bool even = pass % 2 == 0;
    box_pass_kernel<<<grid, kThreads, 0, stream>>>(pixels, s, pass < kBlurPasses, stages, even ? bytes : between,
                                                   even ? between : bytes);
    MOCO_CUDA_CHECK_LAUNCH();
  }
  flip_kernel<<<grid, kThreads, 0, stream>>>(pixels, s, stages, bytes, views);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels
