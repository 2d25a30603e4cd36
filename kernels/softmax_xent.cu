// Softmax cross-entropy over rows of logits: loss, dlogits and top-1/top-5 hits in one pass over each row.
// The MoCo logits (N, 1+K) with label 0 for every row (labels == nullptr), and the linear probe's class
// scores (N, classes) with a label per row.
//
// What it computes, per row i of z (N, M) with label y = y_i (0 without labels):
//   mx = max_j z_ij, s = sum_j exp(z_ij - mx), loss_i = mx + log(s) - z_iy
//   dlogits_ij = (exp(z_ij - mx) / s - [j == y]) / N
//   above_i = #{ j != y : z_ij > z_iy, or z_ij == z_iy and j < y }; top-1 hit when above_i < 1, top-5 hit
//   when above_i < 5
// then loss = mean_i loss_i and the two hit counts.
// CPU references: cpu::softmax_xent (loss, dlogits; cpu::softmax_xent_label0 without labels) and
// cpu::count_label0_in_topk (hits), in src/cpu/contrastive.cpp. The tie rule is theirs for label 0 (a tie does
// not beat the positive) and, for other labels, the argmax's (std::max_element: the first of equal maxima wins),
// which is what the linear probe's accuracy counts on the CPU.
//
// What is fused and why: the row is memory-bound (65537 floats, a few flops each), so max, sum of
// exponentials and rank are one read (online softmax: each thread keeps a running max and a sum rescaled
// when the max grows) and dlogits is the second read plus the one write; a separate max pass, a separate
// loss kernel and a top-k kernel would each re-read 67 MB at N=256.
// Why the block is this shape: a row is 256 KiB; one block of 1024 threads per row, and one such block per SM
// (a second does not fit at these registers), keeps 132 rows (34 MiB) in flight, so a row's second read
// mostly hits L2 (50-60 MiB on Hopper). The SM waits on memory latency unless many bytes are in flight: one
// scalar load per thread reached 0.27 of copy bandwidth on an H200 (bench/results/2026-11-26-h200-run1.md),
// eight scalar loads (32 KiB per SM) 0.44 (run4.md). Now each thread issues kUnroll 16-byte loads before it
// uses any (64 KiB per SM). Rows start wherever 1+K floats put them, so a row is a scalar head up to its first
// 16-byte boundary, a body of float4s and a scalar tail; when dlogits and logits are not equally aligned
// (never in the step) the whole row goes the scalar way. The second pass reads and writes with the streaming
// hint (evicted first): the rows still to be re-read keep L2, not dlogits, which nothing reads back here.
// Determinism: per-row losses (double) and ranks go to a workspace, and one block sums them in a fixed
// order; no atomics, so a run is reproducible bit for bit (loss curves compare across runs and resumes).
#include <cmath>

#include "../src/cuda/check.h"
#include "softmax_xent.cuh"

namespace moco::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kRowThreads = 1024;    // one block per row
constexpr int kUnroll = 4;           // 16-byte loads each thread has in flight
constexpr int kReduceThreads = 256;  // the single block that reduces the rows

// Running (max, sum of exp(x - max)) pairs: merge b into a. An empty pair is (-inf, 0).
__device__ __forceinline__ void merge(float& mx, float& s, float mx_b, float s_b) {
  const float m = fmaxf(mx, mx_b);
  if (m == -INFINITY) return;  // both empty
  s = s * expf(mx - m) + s_b * expf(mx_b - m);
  mx = m;
}

// A row's columns: [0, head) and [head + 4 * quads, m) one float at a time, the quads float4s in between.
struct RowSplit {
  int64_t head, quads;
  __device__ int64_t scalars(int64_t m) const { return m - 4 * quads; }
  __device__ int64_t scalar_col(int64_t i) const { return i < head ? i : i + 4 * quads; }  // i-th scalar column
};
__device__ __forceinline__ RowSplit split_row(const float* z, int64_t m, bool vectorised) {
  if (!vectorised) return {m, 0};
  const int64_t head = min((int64_t)((16 - (reinterpret_cast<uintptr_t>(z) & 15)) & 15) / 4, m);
  return {head, (m - head) / 4};
}

// The statistics of one thread's columns of a row: the running (max, sum of exp) and the count of columns
// beating the label's logit zy.
struct RowStats {
  float mx = -INFINITY, s = 0.f;
  int above = 0;
  // Takes n logits v with columns col; the running max grows once per call, so the sum is rescaled once per
  // group of loads, not once per element.
  template <int N>
  __device__ __forceinline__ void take(const float (&v)[N], const int64_t (&col)[N], int64_t m, float zy,
                                       int64_t y) {
    float group_max = mx;
#pragma unroll
    for (int u = 0; u < N; ++u) group_max = fmaxf(group_max, v[u]);  // columns past m hold -inf
    if (group_max > mx) {
      s *= expf(mx - group_max);  // expf(-inf) = 0 on the first group
      mx = group_max;
    }
#pragma unroll
    for (int u = 0; u < N; ++u)
      if (col[u] < m) {
        s += v[u] == -INFINITY ? 0.f : expf(v[u] - mx);          // a row start of -inf would give expf(nan)
        above += (v[u] > zy) | ((v[u] == zy) & (col[u] < y));  // col == y: neither
      }
  }
};

__global__ void __launch_bounds__(kRowThreads, 1)
    rows_kernel(int64_t m, float inv_n, const float* logits,  // (N, M)
                const int64_t* labels,                        // (N) or null: label 0
                float* dlogits,                               // (N, M) or null; may alias logits
                bool vectorised,                              // dlogits, if any, as aligned as logits
                double* row_loss,                             // (N)
                int* row_above) {                             // (N)
  __shared__ float sh_mx[kRowThreads / kWarp], sh_s[kRowThreads / kWarp];
  __shared__ int sh_above[kRowThreads / kWarp];
  const int64_t row = blockIdx.x;
  const float* z = logits + row * m;
  const int64_t y = labels ? labels[row] : 0;
  const float zy = z[y];  // read by every thread before any write of this row (the reductions below sync)
  const RowSplit split = split_row(z, m, vectorised);
  const float4* zq = reinterpret_cast<const float4*>(z + split.head);  // (quads) 16-byte aligned
  RowStats st;
  for (int64_t i = threadIdx.x; i < split.scalars(m); i += kRowThreads) {
    const int64_t col[1] = {split.scalar_col(i)};
    const float v[1] = {z[col[0]]};
    st.take(v, col, m, zy, y);
  }
  for (int64_t q0 = threadIdx.x; q0 < split.quads; q0 += (int64_t)kRowThreads * kUnroll) {
    float4 w[kUnroll];  // (kUnroll) loads in flight
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t q = q0 + (int64_t)u * kRowThreads;
      w[u] = q < split.quads ? zq[q] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
    }
    float v[4 * kUnroll];
    int64_t col[4 * kUnroll];  // columns past the row (q >= quads) are m, which take() skips
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t q = q0 + (int64_t)u * kRowThreads;
      const int64_t c0 = q < split.quads ? split.head + 4 * q : m;
      v[4 * u] = w[u].x, v[4 * u + 1] = w[u].y, v[4 * u + 2] = w[u].z, v[4 * u + 3] = w[u].w;
      col[4 * u] = c0, col[4 * u + 1] = q < split.quads ? c0 + 1 : m;
      col[4 * u + 2] = q < split.quads ? c0 + 2 : m, col[4 * u + 3] = q < split.quads ? c0 + 3 : m;
    }
    st.take(v, col, m, zy, y);
  }
  // warp, then block reduction of (mx, s) and above
  float mx = st.mx, s = st.s;
  int above = st.above;
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const float mx_b = __shfl_xor_sync(0xffffffffu, mx, o);
    const float s_b = __shfl_xor_sync(0xffffffffu, s, o);
    merge(mx, s, mx_b, s_b);
    above += __shfl_xor_sync(0xffffffffu, above, o);
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) {
    sh_mx[warp] = mx;
    sh_s[warp] = s;
    sh_above[warp] = above;
  }
  __syncthreads();
  if (warp == 0) {
    constexpr int kWarps = kRowThreads / kWarp;
    mx = lane < kWarps ? sh_mx[lane] : -INFINITY;
    s = lane < kWarps ? sh_s[lane] : 0.f;
    above = lane < kWarps ? sh_above[lane] : 0;
    for (int o = kWarp / 2; o > 0; o /= 2) {
      const float mx_b = __shfl_xor_sync(0xffffffffu, mx, o);
      const float s_b = __shfl_xor_sync(0xffffffffu, s, o);
      merge(mx, s, mx_b, s_b);
      above += __shfl_xor_sync(0xffffffffu, above, o);
    }
    if (lane == 0) {
      sh_mx[0] = mx;
      sh_s[0] = s;
      row_loss[row] = (double)mx + log((double)s) - (double)zy;
      row_above[row] = above;
    }
  }
  __syncthreads();
  if (!dlogits) return;
  mx = sh_mx[0];
  const float inv_s = 1.f / sh_s[0];
  auto grad = [&](float v, int64_t j) { return (expf(v - mx) * inv_s - (j == y ? 1.f : 0.f)) * inv_n; };
  // each element is read and written by the same thread, all reads before its writes: in place is safe
  float* d = dlogits + row * m;
  float4* dq = reinterpret_cast<float4*>(d + split.head);  // (quads) 16-byte aligned when vectorised
  for (int64_t i = threadIdx.x; i < split.scalars(m); i += kRowThreads) {
    const int64_t j = split.scalar_col(i);
    d[j] = grad(z[j], j);
  }
  for (int64_t q0 = threadIdx.x; q0 < split.quads; q0 += (int64_t)kRowThreads * kUnroll) {
    float4 w[kUnroll];  // (kUnroll) loads in flight
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t q = q0 + (int64_t)u * kRowThreads;
      if (q < split.quads) w[u] = __ldcs(zq + q);  // the last read of these logits
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t q = q0 + (int64_t)u * kRowThreads;
      if (q >= split.quads) break;
      const int64_t j = split.head + 4 * q;
      __stcs(dq + q, make_float4(grad(w[u].x, j), grad(w[u].y, j + 1), grad(w[u].z, j + 2), grad(w[u].w, j + 3)));
    }
  }
}

// One block: loss[0] = mean of row_loss, hits = rows with above < 1 and < 5. Each thread sums a fixed set of
// rows, then a fixed tree: the order never depends on timing.
__global__ void __launch_bounds__(kReduceThreads)
    reduce_kernel(int64_t n, const double* row_loss, const int* row_above, float* loss, int64_t* hits) {
  __shared__ double sh_loss[kReduceThreads];
  __shared__ long long sh_h1[kReduceThreads], sh_h5[kReduceThreads];
  double acc = 0;
  long long h1 = 0, h5 = 0;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) {
    acc += row_loss[i];
    h1 += row_above[i] < 1;
    h5 += row_above[i] < 5;
  }
  sh_loss[threadIdx.x] = acc;
  sh_h1[threadIdx.x] = h1;
  sh_h5[threadIdx.x] = h5;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) {
      sh_loss[threadIdx.x] += sh_loss[threadIdx.x + half];
      sh_h1[threadIdx.x] += sh_h1[threadIdx.x + half];
      sh_h5[threadIdx.x] += sh_h5[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    loss[0] = (float)(sh_loss[0] / (double)n);
    if (hits) {
      hits[0] = sh_h1[0];
      hits[1] = sh_h5[0];
    }
  }
}

size_t align8(size_t b) { return (b + 7) / 8 * 8; }

}  // namespace

size_t softmax_xent_workspace_bytes(int64_t n) {
  return align8((size_t)n * sizeof(double)) + align8((size_t)n * sizeof(int));
}

void softmax_xent(int64_t n, int64_t m, const float* logits, const int64_t* labels, float* dlogits, float* loss,
                  int64_t* hits, void* workspace, cudaStream_t stream) {
  MOCO_CHECK(n >= 1 && m >= 1, "softmax_xent: need N, M >= 1, got N=", n, " M=", m);
  MOCO_CHECK(n <= INT32_MAX, "softmax_xent: N=", n, " exceeds the grid (one block per row)");
  MOCO_CHECK(logits && loss && workspace, "softmax_xent: logits, loss and workspace must be non-null");
  MOCO_CHECK(reinterpret_cast<uintptr_t>(workspace) % 8 == 0, "softmax_xent: workspace ", workspace,
             " is not 8-byte aligned");
  double* row_loss = static_cast<double*>(workspace);                                             // (N)
  int* row_above = reinterpret_cast<int*>(static_cast<char*>(workspace) + align8(n * sizeof(double)));  // (N)
  // float4 stores need dlogits' rows as far from 16-byte boundaries as the logits' rows (equal pointers, or
  // buffers that both start aligned, as the step's do)
  const bool vectorised =
      !dlogits || (reinterpret_cast<uintptr_t>(dlogits) - reinterpret_cast<uintptr_t>(logits)) % 16 == 0;
  rows_kernel<<<(unsigned)n, kRowThreads, 0, stream>>>(m, 1.f / (float)n, logits, labels, dlogits, vectorised,
                                                       row_loss, row_above);
  MOCO_CUDA_CHECK_LAUNCH();
  reduce_kernel<<<1, kReduceThreads, 0, stream>>>(n, row_loss, row_above, loss, hits);
  MOCO_CUDA_CHECK_LAUNCH();
}

namespace {
__global__ void loss_summary_kernel(const float* loss, const int64_t* hits, float* summary) {
  summary[0] = loss[0];
  summary[1] = (float)hits[0];
  summary[2] = (float)hits[1];
}
}  // namespace

void loss_summary(const float* loss, const int64_t* hits, float* summary, cudaStream_t stream) {
  MOCO_CHECK(loss && hits && summary, "loss_summary: loss, hits and summary must be non-null");
  loss_summary_kernel<<<1, 1, 0, stream>>>(loss, hits, summary);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels
