// Batch normalisation over channels-last activations (N, HW, C): train forward with split groups and the
// fused residual-add + ReLU tail, its backward, and eval forward / backward. Declared in batchnorm_nhwc.cuh.
//
// What it computes (per group g of N/groups samples, per channel c, over the M = (N/groups) * HW values):
//   train forward:  mean, biased var -> save_mean, save_invstd = 1 / sqrt(var + eps);
//                   y = [relu]((x - mean) * invstd * gamma + beta [+ residual]);
//                   running = (1 - momentum) * running + momentum * avg_g(mean | unbiased var); ++nbt
//   train backward: g = relu ? dy * (y > 0) : dy; [d_residual = g];
//                   dx = gamma * invstd * (g - sum(g) / M - xhat * sum(g * xhat) / M);
//                   dgamma += sum_g sum(g * xhat), dbeta += sum_g sum(g)
//   eval:           the same affine with the running statistics; dx = gamma * invstd * dy
// CPU references: cpu::batchnorm_train_forward / _backward, cpu::batchnorm_eval_forward / _backward in
// src/cpu/batchnorm.cpp (NCHW), then cpu::add_forward and cpu::relu_forward for the fused tail.
//
// Shape of the work: a "row" is one (sample, position), C values with C innermost. Threads map to channels
// (V consecutive channels per thread, one 16-byte vector when C and the pointers allow), so a warp reads
// contiguous memory; blocks tile (channel tile, chunk of rows, group). Each pass over the data is one
// kernel of that shape:
//   forward:  stats (per-chunk Welford mean and M2) -> finalise -> apply (normalise, add, ReLU, store)
//   backward: stats (per-chunk sums of g and g * xhat) -> finalise -> dx (and d_residual)
// The finalise kernels are tiny: one thread per (channel, lane of chunks).
//
// Determinism and accuracy: no atomics. Inside a block, per-thread fp32 partials are combined by a fixed
// tree; per-chunk partials go to the workspace and are combined in double in a fixed order (lanes over
// chunks, then a fixed tree). The variance never comes from E[x^2] - E[x]^2 in fp32: each thread keeps a
// Welford (mean, M2), blocks merge them with Chan's formula, and the finaliser sums the chunk M2s plus
// n_k (mean_k - shift)^2 in double with the shift at chunk 0's mean (the parallel-axis theorem, exact in
// exact arithmetic, and cancelling little because the shift sits near the group mean).
// The chunking depends on the shape only; the thread block's shape also depends on whether the activation
// pointers allow 16-byte vectors. So results are bit-identical across runs for the same shapes and
// alignments (the step's activations always start 256-byte aligned, as cudaMalloc returns them).
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <type_traits>

#include "../src/cuda/check.h"
#include "batchnorm_nhwc.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;           // threads per block of the row kernels (tx over channels, ty over rows)
constexpr int64_t kMinChunkRows = 128;  // rows per block at least: the partials stay small next to the data
constexpr int64_t kMaxChunks = 1024;    // row blocks over all groups at most: about one full wave on an H100
constexpr int kFinX = 32, kFinY = 32;   // finalise block: channels x lanes over chunks
// Rows a thread loads before it uses any of them. With one row at a time each load waited out the memory
// latency before the next was issued, and the kernels reached 0.32 to 0.59 of copy bandwidth on an H200
// (bench/results/2026-11-26-h200-summary.md); the softmax-CE rows gained 1.64x from the same change. A thread
// still visits its rows in the same order, so every sum, and so every result, is bit for bit as before.
constexpr int kRowsInFlight = 4;

// How the rows of one group split into chunks (one block row each).
struct Geometry {
  int64_t rows;        // rows per group: (N / groups) * HW
  int64_t chunk_rows;  // rows per chunk (the last one of a group may be shorter)
  int64_t chunks;      // chunks per group
};

Geometry geometry(int64_t n, int64_t hw, int64_t groups) {
  const int64_t total = n * hw;
  Geometry g;
  g.chunk_rows = std::max(kMinChunkRows, (total + kMaxChunks - 1) / kMaxChunks);
  g.rows = total / groups;
  g.chunks = (g.rows + g.chunk_rows - 1) / g.chunk_rows;
  return g;
}

size_t align8(size_t b) { return (b + 7) / 8 * 8; }

// Workspace: partial (groups, chunks, C) float2, then coef (groups, C) float2.
size_t partial_bytes(const Geometry& geo, int64_t groups, int64_t c) {
  return align8((size_t)(groups * geo.chunks * c) * sizeof(float2));
}
size_t workspace_bytes_for(const Geometry& geo, int64_t groups, int64_t c) {
  return partial_bytes(geo, groups, c) + align8((size_t)(groups * c) * sizeof(float2));
}

// The normalising statistics of one (group, channel): the saved batch statistics in train mode, the running
// ones (invstd computed here, in double as the CPU does) in eval mode.
struct Stats {
  const float* mean;    // (groups, C), or (C) in eval mode
  const float* invstd;  // (groups, C); null in eval mode
  const float* var;     // (C) running variance, read when invstd is null
  float eps;
  __device__ __forceinline__ void at(int64_t i, float& m, float& is) const {
    m = mean[i];
    is = invstd ? invstd[i] : (float)(1.0 / sqrt((double)var[i] + (double)eps));
  }
};

// Row-kernel launch shape for V channels per thread: tx covers up to 32 vectors of channels (fewer when C
// is small, so no warp idles on a narrow tensor), ty covers rows; the grid is (channel tiles, chunks, groups).
struct Launch {
  dim3 grid, block;
};
Launch row_launch(const Geometry& geo, int64_t c, int64_t groups, int v) {
  const int64_t cv = c / v;
  int tx = 1;
  while (tx < cv && tx < 32) tx *= 2;
  Launch l;
  l.block = dim3((unsigned)tx, (unsigned)(kThreads / tx));
  l.grid = dim3((unsigned)((cv + tx - 1) / tx), (unsigned)geo.chunks, (unsigned)groups);
  return l;
}

// The thread's place in a row kernel: its first channel, its group and chunk, and the chunk's rows [r0, r1).
// Blocks start roughly in the order of their index, so a kernel walks the activation from start to end;
// `backwards` hands the blocks the (group, chunk) pairs in the reverse order, from end to start.
// Why: the statistics kernels run backwards over an activation that the op before them wrote forwards, and
// so start on its last-written part, still in L2; the kernel after them (apply, dx) runs forwards and starts
// on what the statistics read last. Which block takes which chunk changes nothing else: the partials are
// kept by chunk, and every result is bit for bit the same either way.
struct Place {
  int64_t col, g, chunk, r0, r1;
  bool active;
};
template <int V>
__device__ __forceinline__ Place place(int64_t rows, int64_t chunk_rows, int64_t c, bool backwards = false) {
  Place p;
  p.col = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
  p.active = p.col < c;
  p.g = backwards ? gridDim.z - 1 - blockIdx.z : blockIdx.z;
  p.chunk = backwards ? gridDim.y - 1 - blockIdx.y : blockIdx.y;
  p.r0 = p.chunk * chunk_rows;
  p.r1 = min(p.r0 + chunk_rows, rows);
  return p;
}

// ---- forward

// Per chunk and channel: (mean, M2) of the chunk's rows, into partial (groups, chunks, C).
template <class T, int V>
__global__ void __launch_bounds__(kThreads)
    forward_stats_kernel(int64_t rows, int64_t chunk_rows, int64_t c,
                         const T* __restrict__ x,           // (groups, rows, C)
                         float2* __restrict__ partial) {    // (groups, chunks, C)
  __shared__ float sh_mean[V][kThreads], sh_m2[V][kThreads];
  __shared__ int sh_n[kThreads];
  const Place p = place<V>(rows, chunk_rows, c, /*backwards=*/true);
  const int ty = threadIdx.y, t = threadIdx.y * blockDim.x + threadIdx.x;
  float mean[V], m2[V];
#pragma unroll
  for (int k = 0; k < V; ++k) mean[k] = m2[k] = 0.f;
  int cnt = 0;
  if (p.active) {
    const T* base = x + p.g * rows * c + p.col;
    const int64_t step = blockDim.y;
    for (int64_t r = p.r0 + ty; r < p.r1; r += kRowsInFlight * step) {
      typename vec::Packed<T, V>::type w[kRowsInFlight] = {};  // (rows in flight) packed x
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u)
        if (r + u * step < p.r1) w[u] = vec::load_packed<T, V>(base + (r + u * step) * c);
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) {
        if (r + u * step >= p.r1) break;
        float v[V];
        vec::unpack<T, V>(w[u], v);
        ++cnt;
        const float inv = 1.f / (float)cnt;
#pragma unroll
        for (int k = 0; k < V; ++k) {  // Welford: M2 += (v - old mean) * (v - new mean)
          const float d = v[k] - mean[k];
          mean[k] += d * inv;
          m2[k] += d * (v[k] - mean[k]);
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sh_mean[k][t] = mean[k];
    sh_m2[k][t] = m2[k];
  }
  sh_n[t] = cnt;
  // fixed tree over ty: lane ty merges lane ty + s (Chan et al.: M2 = M2a + M2b + d^2 na nb / n)
  for (int s = blockDim.y / 2; s > 0; s /= 2) {
    __syncthreads();
    if (ty < s) {
      const int o = t + s * blockDim.x;
      const int na = sh_n[t], nb = sh_n[o];
      if (nb > 0) {
        const float wb = (float)nb / (float)(na + nb), wab = (float)na * wb;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const float d = sh_mean[k][o] - sh_mean[k][t];
          sh_mean[k][t] += d * wb;
          sh_m2[k][t] += sh_m2[k][o] + d * d * wab;
        }
        sh_n[t] = na + nb;
      }
    }
  }
  if (ty == 0 && p.active) {  // lane 0 read back its own last writes: no barrier needed
    float2* out = partial + (p.g * gridDim.y + p.chunk) * c + p.col;
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = make_float2(sh_mean[k][t], sh_m2[k][t]);
  }
}

// Per channel (tx) over lanes of chunks (ty): the group statistics in double, the saved statistics, and the
// running update (averaged over groups, as the CPU reference does). One block covers kFinX channels.
__global__ void __launch_bounds__(kFinX* kFinY)
    forward_finalise_kernel(int64_t groups, int64_t chunks, int64_t rows, int64_t chunk_rows, int64_t c, float eps,
                            float momentum,
                            const float2* __restrict__ partial,  // (groups, chunks, C)
                            float* __restrict__ save_mean,       // (groups, C)
                            float* __restrict__ save_invstd,     // (groups, C)
                            float* __restrict__ running_mean,    // (C) or null
                            float* __restrict__ running_var,     // (C) or null
                            int64_t* __restrict__ num_batches_tracked) {
  __shared__ double sh_s1[kFinY][kFinX], sh_s2[kFinY][kFinX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t ch = (int64_t)blockIdx.x * kFinX + tx;
  const bool active = ch < c;
  const double count = (double)rows;
  double mean_sum = 0, var_sum = 0;  // over groups, for the running update (lane 0)
  for (int64_t g = 0; g < groups; ++g) {
    const float2* pg = partial + g * chunks * c + ch;  // chunk k at pg[k * c]
    const double shift = active ? (double)pg[0].x : 0.0;
    double s1 = 0, s2 = 0;  // sum n_k d_k and sum (M2_k + n_k d_k^2), d_k = mean_k - shift
    if (active)
      for (int64_t k = ty; k < chunks; k += kFinY) {
        const float2 m = pg[k * c];
        const double nk = (double)min(chunk_rows, rows - k * chunk_rows);
        const double d = (double)m.x - shift;
        s1 += nk * d;
        s2 += (double)m.y + nk * d * d;
      }
    sh_s1[ty][tx] = s1;
    sh_s2[ty][tx] = s2;
    for (int s = kFinY / 2; s > 0; s /= 2) {
      __syncthreads();
      if (ty < s) {
        sh_s1[ty][tx] += sh_s1[ty + s][tx];
        sh_s2[ty][tx] += sh_s2[ty + s][tx];
      }
    }
    if (ty == 0 && active) {
      s1 = sh_s1[0][tx];
      s2 = sh_s2[0][tx];
      const double mean = shift + s1 / count;
      const double m2 = fmax(s2 - s1 * s1 / count, 0.0);  // sum of squared deviations from the mean
      const double var = m2 / count;                       // biased: normalises the batch
      save_mean[g * c + ch] = (float)mean;
      save_invstd[g * c + ch] = (float)(1.0 / sqrt(var + (double)eps));
      mean_sum += mean;
      var_sum += count > 1 ? m2 / (count - 1) : var;  // unbiased: the running estimate (biased when M = 1)
    }
    __syncthreads();  // the shared sums are reused by the next group
  }
  if (ty == 0 && active && running_mean) {
    const double mom = (double)momentum;
    running_mean[ch] = (float)((1.0 - mom) * (double)running_mean[ch] + mom * (mean_sum / (double)groups));
    running_var[ch] = (float)((1.0 - mom) * (double)running_var[ch] + mom * (var_sum / (double)groups));
  }
  if (blockIdx.x == 0 && tx == 0 && ty == 0 && num_batches_tracked) ++*num_batches_tracked;
}

// The ReLU's mask as bits, for 8 bf16 channels as y stores them (w: 4 words of 2, the lower channel in the
// low half): bit k set when element k is > 0. A bf16 h (as an unsigned 16-bit pattern) is > 0 exactly when
// 0 < h <= 0x7f80 (+inf): patterns with the sign bit set are >= 0x8000, NaNs are 0x7f81..0x7fff. One byte per
// row and 8 channels, written by the thread that wrote those 8 values. The backward reads it instead of y
// where y > 0 cannot be rebuilt from x (a residual was added): 1 bit an element where y took 16, in each of
// the backward's two passes.
__device__ __forceinline__ uint8_t mask_bits(const uint4& w) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
  uint32_t bits = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = words[i] & 0xffffu, hi = words[i] >> 16;
    bits |= (uint32_t)(lo != 0 && lo <= 0x7f80u) << (2 * i);
    bits |= (uint32_t)(hi != 0 && hi <= 0x7f80u) << (2 * i + 1);
  }
  return (uint8_t)bits;
}

// y = [relu]((x - mean) * (gamma * invstd) + beta [+ residual]), rounded once to T. Train and eval mode.
// residual may alias y (each element is read and written by one thread); y may not alias x.
// kBits (bf16, V == 8 only): also write mask, bit k of a row's byte for channels col..col+7 being y > 0
// (mask_bits). A template parameter, so the plain kernel keeps its registers.
template <class T, int V, bool kBits = false>
__global__ void __launch_bounds__(kThreads)
    forward_apply_kernel(int64_t rows, int64_t chunk_rows, int64_t c, Stats st,
                         const T* x,                     // (groups, rows, C)
                         const float* __restrict__ gamma,  // (C)
                         const float* __restrict__ beta,   // (C)
                         const T* residual,              // (groups, rows, C) or null
                         bool relu, T* y,                // (groups, rows, C)
                         uint8_t* __restrict__ mask) {   // (groups, rows, C / 8), written when kBits
  const Place p = place<V>(rows, chunk_rows, c);
  if (!p.active) return;
  float mean[V], a[V], b[V];
#pragma unroll
  for (int k = 0; k < V; ++k) {
    float is;
    st.at(p.g * c + p.col + k, mean[k], is);
    a[k] = gamma[p.col + k] * is;
    b[k] = beta[p.col + k];
  }
  const int64_t base = p.g * rows * c + p.col, step = blockDim.y;
  using W = typename vec::Packed<T, V>::type;
  for (int64_t r = p.r0 + threadIdx.y; r < p.r1; r += kRowsInFlight * step) {
    // every load of these rows before any store: a residual that aliases y is still read before it is written
    W wx[kRowsInFlight] = {}, wres[kRowsInFlight] = {};  // (rows in flight) packed x and residual
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      if (r + u * step >= p.r1) break;
      const int64_t off = base + (r + u * step) * c;
      wx[u] = vec::load_packed<T, V>(x + off);
      if (residual) wres[u] = vec::load_packed<T, V>(residual + off);
    }
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      if (r + u * step >= p.r1) break;
      float v[V], res[V] = {};  // res: read only with a residual (zeros keep the host compiler from warning)
      vec::unpack<T, V>(wx[u], v);
      if (residual) vec::unpack<T, V>(wres[u], res);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        // (x - mean) first: x * a + (beta - mean * a) would cancel when |mean| >> std
        float o = fmaf(v[k] - mean[k], a[k], b[k]);
        if (residual) o += res[k];
        if (relu) o = o <= 0.f ? 0.f : o;  // as cpu::relu_forward: a NaN propagates
        v[k] = o;
      }
      const typename vec::Packed<T, V>::type out = vec::pack<T, V>(v);
      vec::store_packed<T, V>(y + base + (r + u * step) * c, out);
      if constexpr (kBits) {
        static_assert(V == 8 && std::is_same_v<T, __nv_bfloat16>, "mask bits are for 8 bf16 channels a thread");
        mask[(base + (r + u * step) * c) / 8] = mask_bits(out);
      }
    }
  }
}

// ---- backward

// The ReLU's mask without the forward's output: that output recomputed from x as forward_apply_kernel made it
// (the same fmaf on the same a = gamma * invstd and b = beta, rounded to T), so the test is bit for bit y > 0,
// NaN included (a NaN output fails it either way). Only for a forward without a residual.
template <class T>
__device__ __forceinline__ bool relu_passed(float x, float mean, float a, float b) {
  return vec::to_f(vec::from_f<T>(fmaf(x - mean, a, b))) > 0.f;
}

// Where a backward kernel takes the ReLU's mask from: the forward's output y, its bits (forward_apply_kernel's
// mask), or x (relu_passed); none without a ReLU. A template parameter, so that each kernel holds only the
// loads and registers of its own source: with all three chosen at run time the backward kernels took 138
// registers, one 256-thread block an SM where 128 had held two.
enum class MaskFrom { kNone, kY, kBits, kX };

// Per chunk and channel: (sum g, sum g * xhat) with g = relu ? dy * (y > 0) : dy, into partial.
template <class T, int V, MaskFrom kFrom>
__global__ void __launch_bounds__(kThreads)
    backward_stats_kernel(int64_t rows, int64_t chunk_rows, int64_t c, Stats st,
                          const T* __restrict__ x,         // (groups, rows, C)
                          const float* __restrict__ gamma,  // (C), read when relu without y
                          const float* __restrict__ beta,   // (C), read when relu without y
                          const T* __restrict__ y,         // (groups, rows, C), read when relu, or null
                          const uint8_t* __restrict__ bits,  // (groups, rows, C / 8): the mask (V == 8), or null
                          const T* __restrict__ dy,        // (groups, rows, C)
                          float2* __restrict__ partial) {  // (groups, chunks, C)
  __shared__ float sh_g[V][kThreads], sh_gx[V][kThreads];
  const Place p = place<V>(rows, chunk_rows, c, /*backwards=*/true);
  const int ty = threadIdx.y, t = threadIdx.y * blockDim.x + threadIdx.x;
  float sg[V], sgx[V];
#pragma unroll
  for (int k = 0; k < V; ++k) sg[k] = sgx[k] = 0.f;
  if (p.active) {
    float mean[V], invstd[V], a[V], b[V];  // a, b: the forward's affine, for a mask without y
    constexpr MaskFrom from = kFrom;
    constexpr bool mask_from_x = from == MaskFrom::kX;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      st.at(p.g * c + p.col + k, mean[k], invstd[k]);
      a[k] = mask_from_x ? gamma[p.col + k] * invstd[k] : 0.f;
      b[k] = mask_from_x ? beta[p.col + k] : 0.f;
    }
    const int64_t base = p.g * rows * c + p.col, step = blockDim.y;
    using W = typename vec::Packed<T, V>::type;
    for (int64_t r = p.r0 + ty; r < p.r1; r += kRowsInFlight * step) {
      W wx[kRowsInFlight] = {}, wg[kRowsInFlight] = {}, wy[kRowsInFlight] = {};  // (rows in flight) packed
      uint8_t wb[kRowsInFlight] = {};  // NOLINT                                      // (rows in flight) mask bits
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) {
        if (r + u * step >= p.r1) break;
        const int64_t off = base + (r + u * step) * c;
        wx[u] = vec::load_packed<T, V>(x + off);
        wg[u] = vec::load_packed<T, V>(dy + off);
        if constexpr (from == MaskFrom::kY) wy[u] = vec::load_packed<T, V>(y + off);
        if constexpr (from == MaskFrom::kBits) wb[u] = bits[off / 8];
      }
#pragma unroll
      for (int u = 0; u < kRowsInFlight; ++u) {
        if (r + u * step >= p.r1) break;
        float xv[V], gv[V], yv[V];
        vec::unpack<T, V>(wx[u], xv);
        vec::unpack<T, V>(wg[u], gv);
        if constexpr (from == MaskFrom::kY) vec::unpack<T, V>(wy[u], yv);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const bool pass = from == MaskFrom::kNone ? true
                            : from == MaskFrom::kX  ? relu_passed<T>(xv[k], mean[k], a[k], b[k])
                            : from == MaskFrom::kY  ? yv[k] > 0.f
                                                    : ((wb[u] >> k) & 1u) != 0;
          const float g = pass ? gv[k] : 0.f;
          sg[k] += g;
          sgx[k] += g * ((xv[k] - mean[k]) * invstd[k]);
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sh_g[k][t] = sg[k];
    sh_gx[k][t] = sgx[k];
  }
  for (int s = blockDim.y / 2; s > 0; s /= 2) {  // fixed tree over ty
    __syncthreads();
    if (ty < s) {
      const int o = t + s * blockDim.x;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        sh_g[k][t] += sh_g[k][o];
        sh_gx[k][t] += sh_gx[k][o];
      }
    }
  }
  if (ty == 0 && p.active) {
    float2* out = partial + (p.g * gridDim.y + p.chunk) * c + p.col;
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = make_float2(sh_g[k][t], sh_gx[k][t]);
  }
}

// Per channel over lanes of chunks: the group sums in double; coef = (sum g / M, sum g xhat / M) for the dx
// kernel (train mode; null in eval mode); dgamma += sum over groups of sum g xhat, dbeta += of sum g (the
// double total rounded once and added, as the CPU does).
__global__ void __launch_bounds__(kFinX* kFinY)
    backward_finalise_kernel(int64_t groups, int64_t chunks, int64_t rows, int64_t c,
                             const float2* __restrict__ partial,  // (groups, chunks, C)
                             float2* __restrict__ coef,           // (groups, C) or null
                             float* __restrict__ dgamma,          // (C), accumulated; nullable
                             float* __restrict__ dbeta) {         // (C), accumulated; nullable
  __shared__ double sh_g[kFinY][kFinX], sh_gx[kFinY][kFinX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t ch = (int64_t)blockIdx.x * kFinX + tx;
  const bool active = ch < c;
  const double count = (double)rows;
  double dg = 0, db = 0;  // over groups (lane 0)
  for (int64_t g = 0; g < groups; ++g) {
    const float2* pg = partial + g * chunks * c + ch;
    double sg = 0, sgx = 0;
    if (active)
      for (int64_t k = ty; k < chunks; k += kFinY) {
        const float2 v = pg[k * c];
        sg += (double)v.x;
        sgx += (double)v.y;
      }
    sh_g[ty][tx] = sg;
    sh_gx[ty][tx] = sgx;
    for (int s = kFinY / 2; s > 0; s /= 2) {
      __syncthreads();
      if (ty < s) {
        sh_g[ty][tx] += sh_g[ty + s][tx];
        sh_gx[ty][tx] += sh_gx[ty + s][tx];
      }
    }
    if (ty == 0 && active) {
      sg = sh_g[0][tx];
      sgx = sh_gx[0][tx];
      if (coef) coef[g * c + ch] = make_float2((float)(sg / count), (float)(sgx / count));
      dg += sgx;
      db += sg;
    }
    __syncthreads();
  }
  if (ty == 0 && active) {
    if (dgamma) dgamma[ch] += (float)dg;
    if (dbeta) dbeta[ch] += (float)db;
  }
}

// dx = gamma * invstd * (g - k1 - xhat * k2) with (k1, k2) = coef (train), or gamma * invstd * g (eval, coef
// null); d_residual = g when non-null. d_residual may alias dy: each element is read, then written, by one
// thread, and the stats kernel has finished reading dy before this kernel starts (same stream).
// Two blocks an SM (at most 128 registers): the bf16 kernels fit that anyway, and the bound keeps ptxas from
// spilling the fp32 scalar one, which it did unbounded at 48 registers.
template <class T, int V, MaskFrom kFrom>
__global__ void __launch_bounds__(kThreads, 2)
    backward_dx_kernel(int64_t rows, int64_t chunk_rows, int64_t c, Stats st,
                       const T* x,                       // (groups, rows, C), read in train mode
                       const float* __restrict__ gamma,  // (C)
                       const float* __restrict__ beta,   // (C), read when relu without y
                       const float2* __restrict__ coef,  // (groups, C) or null
                       const T* y,                       // (groups, rows, C), read when relu, or null
                       const uint8_t* __restrict__ bits,  // (groups, rows, C / 8): the mask (V == 8), or null
                       const T* dy,                      // (groups, rows, C)
                       T* d_residual,                    // (groups, rows, C) or null
                       T* dx) {                          // (groups, rows, C)
  const Place p = place<V>(rows, chunk_rows, c);
  if (!p.active) return;
  float mean[V], invstd[V], a[V], b[V], k1[V], k2[V];
  constexpr MaskFrom from = kFrom;
  constexpr bool mask_from_x = from == MaskFrom::kX;  // then x is read for the mask (train mode reads it anyway)
#pragma unroll
  for (int k = 0; k < V; ++k) {
    st.at(p.g * c + p.col + k, mean[k], invstd[k]);
    a[k] = gamma[p.col + k] * invstd[k];
    b[k] = mask_from_x ? beta[p.col + k] : 0.f;
    const float2 q = coef ? coef[p.g * c + p.col + k] : make_float2(0.f, 0.f);
    k1[k] = q.x;
    k2[k] = q.y;
  }
  const int64_t base = p.g * rows * c + p.col, step = blockDim.y;
  using W = typename vec::Packed<T, V>::type;
  for (int64_t r = p.r0 + threadIdx.y; r < p.r1; r += kRowsInFlight * step) {
    // every load of these rows before any store: outputs that alias inputs (d_residual and dy) are still
    // read before they are written
    W wg[kRowsInFlight] = {}, wy[kRowsInFlight] = {}, wx[kRowsInFlight] = {};  // (rows in flight) packed
    uint8_t wb[kRowsInFlight] = {};  // NOLINT                                      // (rows in flight) mask bits
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      if (r + u * step >= p.r1) break;
      const int64_t off = base + (r + u * step) * c;
      wg[u] = vec::load_packed<T, V>(dy + off);
      if constexpr (from == MaskFrom::kY) wy[u] = vec::load_packed<T, V>(y + off);
      if constexpr (from == MaskFrom::kBits) wb[u] = bits[off / 8];
      if (coef || mask_from_x) wx[u] = vec::load_packed<T, V>(x + off);
    }
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      if (r + u * step >= p.r1) break;
      const int64_t off = base + (r + u * step) * c;
      float gv[V], yv[V] = {}, xv[V] = {};  // yv, xv: read only where their rows were loaded
      vec::unpack<T, V>(wg[u], gv);
      if (coef || mask_from_x) vec::unpack<T, V>(wx[u], xv);
      if constexpr (mask_from_x) {
#pragma unroll
        for (int k = 0; k < V; ++k) gv[k] = relu_passed<T>(xv[k], mean[k], a[k], b[k]) ? gv[k] : 0.f;
      } else if constexpr (from == MaskFrom::kBits) {
#pragma unroll
        for (int k = 0; k < V; ++k) gv[k] = ((wb[u] >> k) & 1u) != 0 ? gv[k] : 0.f;
      } else if constexpr (from == MaskFrom::kY) {
        vec::unpack<T, V>(wy[u], yv);
#pragma unroll
        for (int k = 0; k < V; ++k) gv[k] = yv[k] > 0.f ? gv[k] : 0.f;
      }
      if (d_residual) vec::store<T, V>(d_residual + off, gv);
      if (coef) {
#pragma unroll
        for (int k = 0; k < V; ++k) gv[k] = a[k] * (gv[k] - k1[k] - ((xv[k] - mean[k]) * invstd[k]) * k2[k]);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) gv[k] = a[k] * gv[k];
      }
      vec::store<T, V>(dx + off, gv);
    }
  }
}

// ---- host side

void check_shape(const char* who, int64_t n, int64_t hw, int64_t c, int64_t groups) {
  MOCO_CHECK(n >= 1 && hw >= 1 && c >= 1, who, ": need N, HW, C >= 1, got N=", n, " HW=", hw, " C=", c);
  MOCO_CHECK(groups >= 1 && n % groups == 0, who, ": batch N=", n, " does not split into ", groups, " groups");
  MOCO_CHECK(groups <= 65535, who, ": groups=", groups, " exceeds the grid's z extent (65535)");
}

void check_workspace(const char* who, const void* workspace) {
  MOCO_CHECK(workspace != nullptr, who, ": workspace is null; allocate batchnorm_workspace_bytes() bytes");
  MOCO_CHECK(vec::aligned(workspace, 8), who, ": workspace ", workspace, " is not 8-byte aligned");
}

// V for this call: a 16-byte vector of channels when C is a multiple of it and every activation pointer is
// 16-byte aligned (all offsets are then multiples of 16 bytes), otherwise one channel per thread.
template <class T>
int vec_width(int64_t c, std::initializer_list<const void*> activations) {
  if (c % vec::kVec16<T> != 0) return 1;
  for (const void* p : activations)
    if (!vec::aligned(p, 16)) return 1;
  return vec::kVec16<T>;
}

unsigned finalise_blocks(int64_t c) { return (unsigned)((c + kFinX - 1) / kFinX); }

// The apply pass on its own (no residual, no mask bits): eval mode, and the train forward's output rebuilt.
template <class T>
void apply_alone(const Geometry& geo, int64_t c, int64_t groups, Stats st, const T* x, const float* gamma,
                 const float* beta, bool relu, T* y, cudaStream_t stream) {
  if (vec_width<T>(c, {x, y}) == vec::kVec16<T>) {
    constexpr int V = vec::kVec16<T>;
    const Launch l = row_launch(geo, c, groups, V);
    forward_apply_kernel<T, V><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, st, x, gamma, beta,
                                                                nullptr, relu, y, nullptr);
  } else {
    const Launch l = row_launch(geo, c, groups, 1);
    forward_apply_kernel<T, 1><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, st, x, gamma, beta,
                                                                nullptr, relu, y, nullptr);
  }
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T, int V>
void train_forward_impl(const Geometry& geo, int64_t c, int64_t groups, const T* x, const float* gamma,
                        const float* beta, float eps, float momentum, const T* residual, bool relu, T* y,
                        float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                        int64_t* num_batches_tracked, uint8_t* relu_mask, void* workspace, cudaStream_t stream) {
  float2* partial = static_cast<float2*>(workspace);  // (groups, chunks, C)
  const Launch l = row_launch(geo, c, groups, V);
  forward_stats_kernel<T, V><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, x, partial);
  MOCO_CUDA_CHECK_LAUNCH();
  forward_finalise_kernel<<<finalise_blocks(c), dim3(kFinX, kFinY), 0, stream>>>(
      groups, geo.chunks, geo.rows, geo.chunk_rows, c, eps, momentum, partial, save_mean, save_invstd,
      running_mean, running_var, num_batches_tracked);
  MOCO_CUDA_CHECK_LAUNCH();
  const Stats st{save_mean, save_invstd, nullptr, eps};
  if constexpr (V == 8 && std::is_same_v<T, __nv_bfloat16>) {
    if (relu_mask) {
      forward_apply_kernel<T, V, true><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, st, x, gamma,
                                                                        beta, residual, relu, y, relu_mask);
      MOCO_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  forward_apply_kernel<T, V><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, st, x, gamma, beta,
                                                              residual, relu, y, nullptr);
  MOCO_CUDA_CHECK_LAUNCH();
}

// Train and eval backward: stats -> finalise -> dx. Eval mode passes groups = 1, running statistics in
// `st`, no ReLU, and no coef (dx = gamma * invstd * dy).
template <class T, int V>
void backward_impl(const Geometry& geo, int64_t c, int64_t groups, bool train, Stats st, const T* x,
                   const float* gamma, const float* beta, const T* y, const uint8_t* relu_mask, bool relu,
                   const T* dy, T* d_residual, T* dx, float* dgamma, float* dbeta, void* workspace,
                   cudaStream_t stream) {
  float2* partial = static_cast<float2*>(workspace);  // (groups, chunks, C)
  float2* coef = train ? reinterpret_cast<float2*>(static_cast<char*>(workspace) + partial_bytes(geo, groups, c))
                       : nullptr;                     // (groups, C)
  const Launch l = row_launch(geo, c, groups, V);
  auto run = [&](auto from) {  // from: std::integral_constant<MaskFrom, ...>
    constexpr MaskFrom kFrom = decltype(from)::value;
    backward_stats_kernel<T, V, kFrom><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, st, x, gamma,
                                                                        beta, y, relu_mask, dy, partial);
    MOCO_CUDA_CHECK_LAUNCH();
    backward_finalise_kernel<<<finalise_blocks(c), dim3(kFinX, kFinY), 0, stream>>>(groups, geo.chunks, geo.rows, c,
                                                                                    partial, coef, dgamma, dbeta);
    MOCO_CUDA_CHECK_LAUNCH();
    backward_dx_kernel<T, V, kFrom><<<l.grid, l.block, 0, stream>>>(geo.rows, geo.chunk_rows, c, st, x, gamma, beta,
                                                                     coef, y, relu_mask, dy, d_residual, dx);
    MOCO_CUDA_CHECK_LAUNCH();
  };
  using F = MaskFrom;
  if (!relu) {
    run(std::integral_constant<F, F::kNone>{});
  } else if (relu_mask) {
    if constexpr (V == 8) run(std::integral_constant<F, F::kBits>{});  // the launchers pass bits only then
  } else if (y) {
    run(std::integral_constant<F, F::kY>{});
  } else {
    run(std::integral_constant<F, F::kX>{});
  }
}

}  // namespace

template <class T>
bool batchnorm_relu_mask_fits(int64_t c) {
  return vec::kVec16<T> == 8 && c % 8 == 0;
}
template bool batchnorm_relu_mask_fits<float>(int64_t);
template bool batchnorm_relu_mask_fits<__nv_bfloat16>(int64_t);

size_t batchnorm_workspace_bytes(int64_t n, int64_t hw, int64_t c, int64_t groups) {
  check_shape("batchnorm_workspace_bytes", n, hw, c, groups);
  // the larger of the train layout (groups) and the eval layout (one group)
  return std::max(workspace_bytes_for(geometry(n, hw, groups), groups, c),
                  workspace_bytes_for(geometry(n, hw, 1), 1, c));
}

template <class T>
void batchnorm_train_forward(int64_t n, int64_t hw, int64_t c, int64_t groups, const T* x, const float* gamma,
                             const float* beta, float eps, float momentum, const T* residual, bool relu, T* y,
                             float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                             int64_t* num_batches_tracked, void* workspace, cudaStream_t stream,
                             uint8_t* relu_mask) {
  const char* who = "batchnorm_train_forward";
  check_shape(who, n, hw, c, groups);
  MOCO_CHECK(x && gamma && beta && y && save_mean && save_invstd, who,
             ": x, gamma, beta, y, save_mean and save_invstd must be non-null");
  MOCO_CHECK(static_cast<const void*>(y) != static_cast<const void*>(x), who, ": y may not alias x (", x, ")");
  MOCO_CHECK((running_mean == nullptr) == (running_var == nullptr) &&
                 (running_mean == nullptr) == (num_batches_tracked == nullptr),
             who, ": running_mean, running_var and num_batches_tracked must be all null or all non-null, got ",
             running_mean, ", ", running_var, ", ", num_batches_tracked);
  check_workspace(who, workspace);
  const Geometry geo = geometry(n, hw, groups);
  const bool vectorised = vec_width<T>(c, {x, residual, y}) == vec::kVec16<T>;
  if (relu_mask)
    MOCO_CHECK(relu && vectorised && vec::kVec16<T> == 8, who, ": a ReLU mask needs relu, bf16, C a multiple of 8 "
               "(C=", c, ") and 16-byte aligned activations; check batchnorm_relu_mask_fits first");
  if (vectorised)
    train_forward_impl<T, vec::kVec16<T>>(geo, c, groups, x, gamma, beta, eps, momentum, residual, relu, y, save_mean,
                                          save_invstd, running_mean, running_var, num_batches_tracked, relu_mask,
                                          workspace, stream);
  else
    train_forward_impl<T, 1>(geo, c, groups, x, gamma, beta, eps, momentum, residual, relu, y, save_mean, save_invstd,
                             running_mean, running_var, num_batches_tracked, nullptr, workspace, stream);
}

template <class T>
void batchnorm_train_apply(int64_t n, int64_t hw, int64_t c, int64_t groups, const T* x, const float* gamma,
                           const float* beta, const float* save_mean, const float* save_invstd, bool relu, T* y,
                           cudaStream_t stream) {
  const char* who = "batchnorm_train_apply";
  check_shape(who, n, hw, c, groups);
  MOCO_CHECK(x && gamma && beta && save_mean && save_invstd && y, who,
             ": x, gamma, beta, save_mean, save_invstd and y must be non-null");
  MOCO_CHECK(static_cast<const void*>(y) != static_cast<const void*>(x), who, ": y may not alias x (", x, ")");
  // the forward's statistics; the vector width changes only which thread computes an element, not its value
  apply_alone<T>(geometry(n, hw, groups), c, groups, Stats{save_mean, save_invstd, nullptr, 0.f}, x, gamma, beta, relu,
                 y, stream);
}

template <class T>
void batchnorm_train_backward(int64_t n, int64_t hw, int64_t c, int64_t groups, const T* x, const float* gamma,
                              const float* beta, const float* save_mean, const float* save_invstd, const T* y,
                              bool relu, const T* dy, T* d_residual, T* dx, float* dgamma, float* dbeta,
                              void* workspace, cudaStream_t stream, const uint8_t* relu_mask) {
  const char* who = "batchnorm_train_backward";
  check_shape(who, n, hw, c, groups);
  MOCO_CHECK(x && gamma && save_mean && save_invstd && dy && dx, who,
             ": x, gamma, save_mean, save_invstd, dy and dx must be non-null");
  MOCO_CHECK(!relu || y || beta, who, ": relu needs the forward output y, or beta to recompute it from x; both are "
             "null");
  MOCO_CHECK(!relu || y || relu_mask || !d_residual, who, ": with a residual the ReLU's mask needs the forward "
             "output y or its mask bits (x alone does not give it), but both are null");
  MOCO_CHECK(!d_residual || d_residual != dx, who, ": d_residual and dx must be different buffers");
  check_workspace(who, workspace);
  const Geometry geo = geometry(n, hw, groups);
  const Stats st{save_mean, save_invstd, nullptr, 0.f};
  const bool vectorised = vec_width<T>(c, {x, relu ? y : nullptr, dy, d_residual, dx}) == vec::kVec16<T>;
  if (relu_mask)
    MOCO_CHECK(relu && vectorised && vec::kVec16<T> == 8, who, ": a ReLU mask needs relu, bf16, C a multiple of 8 "
               "(C=", c, ") and 16-byte aligned activations, as the forward that wrote it");
  if (vectorised)
    backward_impl<T, vec::kVec16<T>>(geo, c, groups, true, st, x, gamma, beta, y, relu_mask, relu, dy, d_residual, dx,
                                     dgamma, dbeta, workspace, stream);
  else
    backward_impl<T, 1>(geo, c, groups, true, st, x, gamma, beta, y, nullptr, relu, dy, d_residual, dx, dgamma, dbeta,
                        workspace, stream);
}

template <class T>
void batchnorm_eval_forward(int64_t n, int64_t hw, int64_t c, const T* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, T* y, cudaStream_t stream) {
  const char* who = "batchnorm_eval_forward";
  check_shape(who, n, hw, c, 1);
  MOCO_CHECK(x && gamma && beta && running_mean && running_var && y, who,
             ": x, gamma, beta, running_mean, running_var and y must be non-null");
  apply_alone<T>(geometry(n, hw, 1), c, 1, Stats{running_mean, nullptr, running_var, eps}, x, gamma, beta, false, y,
                 stream);
}

template <class T>
void batchnorm_eval_backward(int64_t n, int64_t hw, int64_t c, const T* x, const float* gamma,
                             const float* running_mean, const float* running_var, float eps, const T* dy, T* dx,
                             float* dgamma, float* dbeta, void* workspace, cudaStream_t stream) {
  const char* who = "batchnorm_eval_backward";
  check_shape(who, n, hw, c, 1);
  MOCO_CHECK(x && gamma && running_mean && running_var && dy && dx, who,
             ": x, gamma, running_mean, running_var, dy and dx must be non-null");
  check_workspace(who, workspace);
  const Geometry geo = geometry(n, hw, 1);
  const Stats st{running_mean, nullptr, running_var, eps};
  if (vec_width<T>(c, {x, dy, dx}) == vec::kVec16<T>)
    backward_impl<T, vec::kVec16<T>>(geo, c, 1, false, st, x, gamma, nullptr, nullptr, nullptr, false, dy, nullptr, dx,
                                     dgamma, dbeta, workspace, stream);
  else
    backward_impl<T, 1>(geo, c, 1, false, st, x, gamma, nullptr, nullptr, nullptr, false, dy, nullptr, dx, dgamma,
                        dbeta, workspace, stream);
}

#define MOCO_INSTANTIATE_BN_NHWC(T)                                                                                 \
  template void batchnorm_train_forward<T>(int64_t, int64_t, int64_t, int64_t, const T*, const float*, const float*, \
                                           float, float, const T*, bool, T*, float*, float*, float*, float*,         \
                                           int64_t*, void*, cudaStream_t, uint8_t*);                                  \
  template void batchnorm_train_backward<T>(int64_t, int64_t, int64_t, int64_t, const T*, const float*, const float*, \
                                            const float*, const float*, const T*, bool, const T*, T*, T*, float*,     \
                                            float*, void*, cudaStream_t, const uint8_t*);                             \
  template void batchnorm_train_apply<T>(int64_t, int64_t, int64_t, int64_t, const T*, const float*, const float*,  \
                                         const float*, const float*, bool, T*, cudaStream_t);                         \
  template void batchnorm_eval_forward<T>(int64_t, int64_t, int64_t, const T*, const float*, const float*,          \
                                          const float*, const float*, float, T*, cudaStream_t);                       \
  template void batchnorm_eval_backward<T>(int64_t, int64_t, int64_t, const T*, const float*, const float*,         \
                                           const float*, float, const T*, T*, float*, float*, void*, cudaStream_t);
MOCO_INSTANTIATE_BN_NHWC(float)
MOCO_INSTANTIATE_BN_NHWC(__nv_bfloat16)

}  // namespace moco::kernels
