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
// exponentials and rank come from one read (online softmax: each thread keeps a running max and a sum rescaled
// when the max grows), and dlogits from the same values, still in registers (or, in the row-per-block form
// below, read again), with the one write; a separate max pass, a separate loss kernel and a top-k kernel would
// each re-read 67 MB at N=256.
// Two forms, the same arithmetic (launcher: softmax_xent; SoftmaxXentForm):
// - One row per cluster of blocks (sm_90 thread block clusters), on request only: a cluster of up
//   to 8 blocks holds the whole row in registers (512 threads x 4 float4s per block, so up to 65536 columns
//   plus the row's unaligned ends, which covers MoCo's 1+K at K = 65536). Each block reduces its share of the
//   row, publishes (max, sum, rank count) in the workspace, and after the cluster barrier every block merges
//   the cluster's partials in rank order and writes dlogits from the registers. The logits are read from memory
//   once and dlogits written once: 8 bytes per element, the least there is, with 2048 blocks of 2 per SM so
//   that one block loads while another waits at its barrier. Measured on an H100 it ran at 0.67x the speed of
//   the row-per-block form (0.097 against 0.065 ms at N 256, K 65536: bench/results/2026-11-27-h100-summary.md),
//   so reading once did not pay for the cluster barrier and the lower occupancy; it stays for study
//   (MOCO_SOFTMAX_FORM=cluster, bench_softmax_xent).
// - One row per block, the default (Auto): 1024 threads, one block per SM, 132 rows (34 MiB) in flight, so a
//   row's second read, for dlogits, mostly hits L2 (it walks the row back from its end, which pass 1 read
//   last). Each thread keeps two groups of kRowGroup 16-byte loads in flight (for_each_group), and the
//   per-element work is cut to a max, a subtract, a multiply, an exp2, an add and a compare (exp_below_max; no
//   column index for label 0). On an H100 the earlier version, which read both passes forwards, loaded one
//   group, waited for it, then spent about 20 instructions per element (int64 columns, expf), reached 0.69 of
//   copy bandwidth (counting 8 bytes per element), its loss-only pass 0.49. This one, on an H100, timed after
//   an L2 flush that leaves clean lines, with the reduce below launched as a dependent: 0.82 of the 512 MiB
//   copy's bandwidth in place as the step runs it (0.0544 ms), 0.79 with dlogits to their own buffer; there a
//   cudaMemcpy of the same 67 MB reached 0.96, and in place this kernel runs at 0.85 of that memcpy's speed
//   (bench/results/2026-11-27-h100-run3.md). On an H200, after the older flush that left L2 dirty (its
//   write-back fell inside the timed window): 0.64. Of the shapes tried beside it (bench_softmax_forms: 512 or 256
//   threads with 2 or 4 blocks per SM, the loss summed in the last block instead of a second kernel, L2
//   prefetch of the next wave's rows, 256-byte L2 fetches, 8 to 64 blocks per row in two kernels, a persistent
//   grid of 64 to 128 blocks) none wrote loss and dlogits faster beyond noise, on the H200 or the H100
//   (bench/results/2026-11-27-h200-summary.md, 2026-11-27-h100-run3.md).
// Rows start wherever M floats put them, so a row is a scalar head up to its first 16-byte boundary, a body of
// float4s and a scalar tail; when dlogits and logits are not equally aligned (never in the step) the row-per-
// block form takes the whole row the scalar way. Writes carry the streaming hint (evicted first): nothing here
// reads dlogits back, and in the row-per-block form the rows still to be re-read keep L2.
// Determinism: per-row losses (double) and ranks go to a workspace, and one block sums them in a fixed
// order; no atomics, so a run is reproducible bit for bit (loss curves compare across runs and resumes).
// That block is a second kernel, and on sm_90 builds it is launched as a programmatic dependent of the rows
// kernel (SoftmaxXentReduce; reduce_kernel waits for the rows on the device): its launch overlaps the rows
// kernel's end, which took the kernel in place from 0.0568 to 0.0544 ms on an H100.
#include <cooperative_groups.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>
#include <cmath>
#include <cstddef>

#include "../src/cuda/check.h"
#include "softmax_xent.cuh"

namespace moco::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kRowThreads = 1024;      // row per block: one block per row
constexpr int kRowGroup = 4;           // row per block: float4s a thread loads as a group (two groups in flight)
constexpr int kClusterThreads = 512;   // row per cluster: threads of each block
constexpr int kHeld = 4;               // row per cluster: float4s each thread holds
constexpr int kMaxClusterBlocks = 8;   // the portable cluster size
constexpr int kBlockQuads = kClusterThreads * kHeld;  // float4s one block of a cluster holds
constexpr int kReduceThreads = 256;    // the single block that reduces the rows
// Column indices are int: a row's columns plus the float4s a thread reads past its end stay far below 2^31.
constexpr int64_t kMaxColumns = INT32_MAX / 2;
constexpr float kLog2e = 1.4426950408889634f;

// A block's share of a row, published to the rest of its cluster: running max, sum of exp(z - max), and the
// count of columns beating the label.
struct alignas(16) Partial {
  float mx, s;
  int above, unused;
};
static_assert(sizeof(Partial) == 16 && offsetof(Partial, above) == 8, "read back as one float4 (x, y, z)");

// Running (max, sum of exp(x - max)) pairs: merge b into a. An empty pair is (-inf, 0). A few calls per row,
// so the accurate expf.
__device__ __forceinline__ void merge(float& mx, float& s, float mx_b, float s_b) {
  const float m = fmaxf(mx, mx_b);
  if (m == -INFINITY) return;  // both empty
  s = s * expf(mx - m) + s_b * expf(mx_b - m);
  mx = m;
}

// The shift exp_below_max takes for a running max mx: mx itself, or 0 for mx = -inf, where every value taken
// so far is -inf too and exp(-inf - 0) = 0 is the term wanted (expf(-inf - -inf) would be nan).
__device__ __forceinline__ float shift_of(float mx) { return mx == -INFINITY ? 0.f : mx; }

// exp(v - shift) for v <= shift, as 2^((v - shift) log2(e)): a subtraction, a multiply and the hardware's exp2,
// once per element of the row in each pass, where expf spends about eight instructions on a range reduction
// that a result in [0, 1] does not need, and the row-per-block form did not hide them behind its loads.
// Subtracting before scaling keeps the error relative to the gap, not to the logits' size (scores near 1e3
// from the probe lose nothing): the float subtraction, the product and log2(e)'s own rounding each add up to
// about 2^-24 |v - shift| relative (the CPU reference subtracts in double) on top of exp2f's 2 ulp, 4e-6 at the
// widest gap the tests' logits reach (28.6 at 1/T = 14.3), within the 1e-5 of the CPU's dlogits they hold it
// to.
__device__ __forceinline__ float exp_below_max(float v, float shift) { return exp2f((v - shift) * kLog2e); }

// A row's columns: [0, head) and [head + 4 * quads, m) one float at a time, the quads float4s in between.
struct RowSplit {
  int head, quads;
  __device__ int scalars(int m) const { return m - 4 * quads; }
  __device__ int scalar_col(int i) const { return i < head ? i : i + 4 * quads; }  // i-th scalar column
};
__device__ __forceinline__ RowSplit split_row(const float* z, int m, bool vectorised) {
  if (!vectorised) return {m, 0};
  const int head = min((int)((16 - (reinterpret_cast<uintptr_t>(z) & 15)) & 15) / 4, m);
  return {head, (m - head) / 4};
}

// The statistics of one thread's columns of a row: the running (max, sum of exp) and the count of columns
// beating the label's logit zy. kLabels: a label per row (the linear probe). Without, the label is column 0
// (the MoCo step): no column lies before it, so only a greater logit beats it and no column index is needed.
template <bool kLabels>
struct RowStats {
  float mx = -INFINITY, s = 0.f;
  int above = 0;
  // Takes n logits v with columns col (padding past the row's end reads as -inf with column m: it neither adds
  // to the sum nor beats the label); the running max grows once per call, so the sum is rescaled once per group
  // of loads, not once per element.
  template <int N>
  __device__ __forceinline__ void take(const float (&v)[N], const int (&col)[N], float zy, int y) {
    float group_max = mx;
#pragma unroll
    for (int u = 0; u < N; ++u) group_max = fmaxf(group_max, v[u]);
    if (group_max > mx) {
      s *= exp_below_max(mx, group_max);  // 2^-inf = 0 on the first group
      mx = group_max;
    }
    const float shift = shift_of(mx);
#pragma unroll
    for (int u = 0; u < N; ++u) {
      s += exp_below_max(v[u], shift);
      if (kLabels)
        above += (v[u] > zy) | ((v[u] == zy) & (col[u] < y));  // col == y: neither
      else
        above += v[u] > zy;  // column 0 itself is equal, not greater
    }
  }
};

// Loads the float4s q0 + u * stride (u < U) of a row's body; those at or past q_end read as -inf. kLastRead:
// with the evict-first hint (the row-per-block form's second read).
template <int U, bool kLastRead>
__device__ __forceinline__ void load_quads(float4 (&w)[U], const float4* zq, int q0, int stride, int q_end) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int q = q0 + u * stride;
    w[u] = q >= q_end ? make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY)
           : kLastRead ? __ldcs(zq + q)
                       : zq[q];
  }
}

// Feeds load_quads' values to st with their columns (those past q_end get column m).
template <int U, bool kLabels>
__device__ __forceinline__ void take_quads(RowStats<kLabels>& st, const float4 (&w)[U], int q0, int stride,
                                           int q_end, int head, int m, float zy, int y) {
  float v[4 * U];  // (4U) the group's logits
  int col[4 * U];  // (4U) their columns
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int q = q0 + u * stride;
    const bool in = q < q_end;
    const int c0 = head + 4 * q;
    v[4 * u] = w[u].x, v[4 * u + 1] = w[u].y, v[4 * u + 2] = w[u].z, v[4 * u + 3] = w[u].w;
    col[4 * u] = in ? c0 : m, col[4 * u + 1] = in ? c0 + 1 : m;
    col[4 * u + 2] = in ? c0 + 2 : m, col[4 * u + 3] = in ? c0 + 3 : m;
  }
  st.take(v, col, zy, y);
}

// Calls use(w, q0) on each group w of U float4s {q0 + u * stride} of a row's body of q_end float4s, q0 from
// first in steps of U * stride (kBackwards: from the last such q0 down to first), and issues the next group's
// loads before it uses the current one: two groups (2U 16-byte loads, 128 KiB per SM at 1024 threads) in
// flight per thread, so a thread's arithmetic on one group overlaps the memory latency of the next instead of
// following it. The threads of a block move through the row together, so the block sweeps it in that order.
template <int U, bool kLastRead, bool kBackwards, typename Use>
__device__ __forceinline__ void for_each_group(const float4* zq, int first, int stride, int q_end, Use use) {
  const int step = kBackwards ? -U * stride : U * stride;  // from one visited group to the next
  int left = first < q_end ? (q_end - first + U * stride - 1) / (U * stride) : 0;  // groups still to use
  int q0 = kBackwards ? first + (left - 1) * U * stride : first;  // the group to use next
  float4 a[U], b[U] = {};  // (U) each: one group in use while the other is in flight (b zeroed: the host
                          // compiler of the CUDA emulator cannot see that a b is loaded before it is used)
  if (left > 0) load_quads<U, kLastRead>(a, zq, q0, stride, q_end);
  for (; left > 0; left -= 2, q0 += 2 * step) {
    if (left > 1) load_quads<U, kLastRead>(b, zq, q0 + step, stride, q_end);
    use(a, q0);
    if (left == 1) break;
    if (left > 2) load_quads<U, kLastRead>(a, zq, q0 + 2 * step, stride, q_end);
    use(b, q0 + step);
  }
}

// The whole block's (max, sum, above), returned to every thread: warps, then warp 0 over the warps, a fixed
// tree, so the same bits every run. Called once per kernel (its shared slots are not reusable).
template <int kThreads, bool kLabels>
__device__ __forceinline__ RowStats<kLabels> block_stats(const RowStats<kLabels>& st) {
  constexpr int kWarps = kThreads / kWarp;
  __shared__ float sh_mx[kWarps], sh_s[kWarps];
  __shared__ int sh_above[kWarps];
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
    mx = lane < kWarps ? sh_mx[lane] : -INFINITY;
    s = lane < kWarps ? sh_s[lane] : 0.f;
    above = lane < kWarps ? sh_above[lane] : 0;
    for (int o = kWarp / 2; o > 0; o /= 2) {
      const float mx_b = __shfl_xor_sync(0xffffffffu, mx, o);
      const float s_b = __shfl_xor_sync(0xffffffffu, s, o);
      merge(mx, s, mx_b, s_b);
      above += __shfl_xor_sync(0xffffffffu, above, o);
    }
    if (lane == 0) {  // after the shuffles, so after every lane of warp 0 has read its slot
      sh_mx[0] = mx;
      sh_s[0] = s;
      sh_above[0] = above;
    }
  }
  __syncthreads();
  RowStats<kLabels> out;
  out.mx = sh_mx[0], out.s = sh_s[0], out.above = sh_above[0];
  return out;
}

// dlogits_j = (exp(z_j - mx) / s - [j == y]) / N for one row's statistics, as exp(z_j - mx) * (1 / (s N))
// - [j == y] / N in one fused multiply-add.
template <bool kLabels>
struct RowGrad {
  float shift, scale, inv_n;  // shift_of(mx), 1 / (s N), 1 / N
  int y;                         // the label (0 without labels)
  __device__ float operator()(float v, int j) const {
    return fmaf(exp_below_max(v, shift), scale, j == (kLabels ? y : 0) ? -inv_n : 0.f);
  }
};

// Stores the dlogits of the float4s q0 + u * stride (u < U, those before q_end) with the streaming hint.
template <int U, bool kLabels>
__device__ __forceinline__ void store_quads(float4* dq, const float4 (&w)[U], int q0, int stride, int q_end,
                                            int head, const RowGrad<kLabels>& grad) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int q = q0 + u * stride;
    if (q >= q_end) break;
    const int j = head + 4 * q;
    __stcs(dq + q, make_float4(grad(w[u].x, j), grad(w[u].y, j + 1), grad(w[u].z, j + 2), grad(w[u].w, j + 3)));
  }
}

// Row per block (see the top): pass 1 reduces the row, pass 2 re-reads it for dlogits.
template <bool kLabels>
__global__ void __launch_bounds__(kRowThreads, 1)
    rows_kernel(int m, float inv_n, const float* logits,  // (N, M)
                const int64_t* labels,                    // (N); read when kLabels (else label 0)
                float* dlogits,                           // (N, M) or null; may alias logits
                bool vectorised,                          // dlogits, if any, as aligned as logits
                double* row_loss,                         // (N)
                int* row_above) {                         // (N)
  const int64_t row = blockIdx.x;
  const float* z = logits + row * m;
  const int y = kLabels ? (int)labels[row] : 0;
  const float zy = z[y];  // read by every thread before any write of this row (block_stats syncs)
  const RowSplit split = split_row(z, m, vectorised);
  const float4* zq = reinterpret_cast<const float4*>(z + split.head);  // (quads) 16-byte aligned
  RowStats<kLabels> st;
  for (int i = threadIdx.x; i < split.scalars(m); i += kRowThreads) {
    const int col[1] = {split.scalar_col(i)};
    const float v[1] = {z[col[0]]};
    st.take(v, col, zy, y);
  }
  for_each_group<kRowGroup, false, false>(zq, threadIdx.x, kRowThreads, split.quads,
                                          [&](const float4(&w)[kRowGroup], int q0) {
                                            take_quads(st, w, q0, kRowThreads, split.quads, split.head, m, zy, y);
                                          });
  st = block_stats<kRowThreads>(st);
  if (threadIdx.x == 0) {
    row_loss[row] = (double)st.mx + log((double)st.s) - (double)zy;
    row_above[row] = st.above;
  }
  if (!dlogits) return;
  const RowGrad<kLabels> grad{shift_of(st.mx), inv_n / st.s, inv_n, y};
  // each element is read and written by the same thread, all reads before its writes: in place is safe
  float* d = dlogits + row * m;
  float4* dq = reinterpret_cast<float4*>(d + split.head);  // (quads) 16-byte aligned when vectorised
  for (int i = threadIdx.x; i < split.scalars(m); i += kRowThreads) {
    const int j = split.scalar_col(i);
    d[j] = grad(z[j], j);
  }
  // The last read of these logits, from the row's end back to its start: pass 1 read the end last, so it is
  // the likeliest still in L2, and walking back reaches the start before it is pushed out, where a second
  // sweep from the start would chase the lines the first one evicts. Elementwise: the order changes no bit.
  for_each_group<kRowGroup, true, true>(zq, threadIdx.x, kRowThreads, split.quads,
                                        [&](const float4(&w)[kRowGroup], int q0) {
                                          store_quads(dq, w, q0, kRowThreads, split.quads, split.head, grad);
                                        });
}

// Row per cluster (see the top). Block rank b of the row's C blocks holds the body's float4s
// [Q b / C, Q (b + 1) / C) in registers, and block 0's first threads one scalar column each (the unaligned
// head and tail). Launched with cudaLaunchKernelEx in clusters of C blocks, N * C blocks in all.
template <bool kLabels>
__global__ void __launch_bounds__(kClusterThreads, 2)
    cluster_rows_kernel(int m, float inv_n, const float* logits,  // (N, M) rows 16-byte aligned as dlogits'
                        const int64_t* labels,                    // (N); read when kLabels (else label 0)
                        float* dlogits,                           // (N, M) or null; may alias logits
                        Partial* partials,                        // (N, C)
                        double* row_loss,                         // (N)
                        int* row_above) {                         // (N)
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const int c = (int)cluster.num_blocks(), b = (int)cluster.block_rank();
  const int64_t row = blockIdx.x / c;
  const float* z = logits + row * m;
  const int y = kLabels ? (int)labels[row] : 0;
  const float zy = z[y];  // read by every block before the cluster barrier, after which dlogits are written
  const RowSplit split = split_row(z, m, true);
  const float4* zq = reinterpret_cast<const float4*>(z + split.head);  // (quads) 16-byte aligned
  const int q_begin = split.quads * b / c, q_end = split.quads * (b + 1) / c;
  const int q0 = q_begin + threadIdx.x;
  float4 w[kHeld];  // (kHeld) this thread's share of the row, held until its dlogits are written
  load_quads<kHeld, false>(w, zq, q0, kClusterThreads, q_end);
  const bool has_scalar = b == 0 && (int)threadIdx.x < split.scalars(m);
  const int scalar_col[1] = {has_scalar ? split.scalar_col(threadIdx.x) : m};  // m: none
  const float scalar[1] = {has_scalar ? z[scalar_col[0]] : -INFINITY};
  RowStats<kLabels> st;
  st.take(scalar, scalar_col, zy, y);
  take_quads(st, w, q0, kClusterThreads, q_end, split.head, m, zy, y);
  st = block_stats<kClusterThreads>(st);
  if (threadIdx.x == 0) partials[row * c + b] = Partial{st.mx, st.s, st.above, 0};
  cluster.sync();  // every block of the row has published its partial (release, then acquire: cluster scope)
  // every block merges the same partials in the same order, so all use the same bits
  float mx = -INFINITY, s = 0.f;
  int above = 0;
  for (int r = 0; r < c; ++r) {
    // From L2 (ld.global.cg), never from this SM's L1: the cluster barrier orders the other blocks' writes
    // before these reads, and a load that cannot hit a stale L1 line does not lean on anything more.
    const float4 p = __ldcg(reinterpret_cast<const float4*>(partials + row * c + r));  // Partial's 16 bytes
    merge(mx, s, p.x, p.y);
    above += __float_as_int(p.z);
  }
  if (b == 0 && threadIdx.x == 0) {
    row_loss[row] = (double)mx + log((double)s) - (double)zy;
    row_above[row] = above;
  }
  if (!dlogits) return;
  const RowGrad<kLabels> grad{shift_of(mx), inv_n / s, inv_n, y};
  float* d = dlogits + row * m;
  if (has_scalar) d[scalar_col[0]] = grad(scalar[0], scalar_col[0]);
  store_quads(reinterpret_cast<float4*>(d + split.head), w, q0, kClusterThreads, q_end, split.head, grad);
#else
  __trap();  // built for a device without clusters; the launcher never picks this form there (cluster_form_fits)
#endif
}

// One block: loss[0] = mean of row_loss, hits = rows with above < 1 and < 5. Each thread sums a fixed set of
// rows, then a fixed tree: the order never depends on timing.
// Launched as a programmatic dependent of the rows kernel (sm_90; SoftmaxXentReduce), it may start before
// that grid ends, so it first waits for it: griddepcontrol.wait returns once the rows kernel has finished and
// its row_loss and row_above are visible. After a plain launch there is nothing to wait for and it returns at
// once. Why at all: at N 256 the reduce, timed alone with its launch, takes 4.4 us beside a 56 us kernel.
__global__ void __launch_bounds__(kReduceThreads)
    reduce_kernel(int64_t n, const double* row_loss, const int* row_above, float* loss, int64_t* hits) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
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
size_t align128(size_t b) { return (b + 127) / 128 * 128; }

// Blocks per cluster the row-per-cluster form needs for rows of m columns (more than kMaxClusterBlocks: it
// does not fit). A row holds at most 3 + 3 scalar columns, which block 0's first threads take.
static_assert(kSoftmaxXentClusterMaxColumns == kMaxClusterBlocks * kBlockQuads * 4 + 3,
              "softmax_xent.cuh's widest cluster row must follow the kernel's sizes");
int64_t cluster_blocks_for(int64_t m) {
  const int64_t most_quads = m / 4;  // the body of a row that starts 16-byte aligned; others have fewer
  return std::max<int64_t>(1, (most_quads + kBlockQuads - 1) / kBlockQuads);
}

// The row-per-cluster launch of `rows` rows in clusters of c blocks; `cluster` holds its attribute and must
// outlive the returned configuration.
cudaLaunchConfig_t cluster_launch(int64_t rows, int c, cudaStream_t stream, cudaLaunchAttribute& cluster) {
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = (unsigned)c;
  cluster.val.clusterDim.y = cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)(rows * c));
  cfg.blockDim = dim3(kClusterThreads);
  cfg.stream = stream;
  cfg.attrs = &cluster;
  cfg.numAttrs = 1;
  return cfg;
}

// Whether the row-per-cluster form can run here in clusters of c blocks: the kernel was built for sm_90 or
// later (an older build traps in it) and the current device can place such a cluster. Answers are kept per
// device and size. A query that fails while an earlier error is pending answers no for this call only, so one
// bad moment does not refuse an asked-for cluster form for good; one that fails on its own (no kernel image for
// this device, say) is an answer, and kept.
bool cluster_form_runs(int c) {
  static std::mutex mutex;
  static std::map<std::pair<int, int>, bool> known;  // (device, c) -> answer
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = known.find({device, c});
  if (it != known.end()) return it->second;
  const bool error_pending = cudaPeekAtLastError() != cudaSuccess;
  bool answered = false, yes = false;
  cudaFuncAttributes attr{};
  // both instantiations share the launch bounds that decide where a cluster fits
  if (cudaFuncGetAttributes(&attr, cluster_rows_kernel<false>) == cudaSuccess) {
    answered = attr.ptxVersion < 90;  // built for an older architecture: no, for good
    if (!answered) {
      cudaLaunchAttribute cluster;
      const cudaLaunchConfig_t cfg = cluster_launch(1, c, nullptr, cluster);
      int clusters = 0;
      answered = cudaOccupancyMaxActiveClusters(&clusters, cluster_rows_kernel<false>, &cfg) == cudaSuccess;
      yes = answered && clusters >= 1;
    }
  }
  if (!error_pending) (void)cudaGetLastError();  // a refusal above is an answer, not a launch's error
  if (answered || !error_pending) known[{device, c}] = yes;
  return yes;
}

// Whether reduce_kernel's image for the current device was built for sm_90 or later, where its
// griddepcontrol.wait exists: only then may it start before the rows kernel ends. Kept per device, but only a
// definite answer: the kernel's attributes, or no image for this device. Any other failed query (an earlier
// error still pending, a module that failed to load this once) answers no for this call only, and the error
// its own query left is cleared only where none was pending before, so an earlier one still reaches its check.
bool dependent_reduce_runs() {
  static std::mutex mutex;
  static std::map<int, bool> known;  // device -> answer
  const bool error_pending = cudaPeekAtLastError() != cudaSuccess;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    if (!error_pending) (void)cudaGetLastError();
    return false;
  }
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = known.find(device);
  if (it != known.end()) return it->second;
  cudaFuncAttributes attr{};
  const cudaError_t query = cudaFuncGetAttributes(&attr, reduce_kernel);
  const bool yes = query == cudaSuccess && attr.ptxVersion >= 90;
  if (!error_pending) (void)cudaGetLastError();
  if (query == cudaSuccess || query == cudaErrorNoKernelImageForDevice || query == cudaErrorInvalidDeviceFunction)
    known[device] = yes;
  return yes;
}

// Launches reduce_kernel after the rows kernel on `stream`, plainly or as its programmatic dependent.
void launch_reduce(int64_t n, const double* row_loss, const int* row_above, float* loss, int64_t* hits,
                   cudaStream_t stream, bool dependent) {
  if (!dependent) {
    reduce_kernel<<<1, kReduceThreads, 0, stream>>>(n, row_loss, row_above, loss, hits);
    MOCO_CUDA_CHECK_LAUNCH();
    return;
  }
  cudaLaunchAttribute overlap;
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(1);
  cfg.blockDim = dim3(kReduceThreads);
  cfg.stream = stream;
  cfg.attrs = &overlap;
  cfg.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&cfg, reduce_kernel, n, row_loss, row_above, loss, hits);
  if (launched != cudaSuccess) (void)cudaGetLastError();  // reported here, not again by the next launch's check
  MOCO_CUDA_CHECK(launched);
}

}  // namespace

bool softmax_xent_dependent_reduce_runs() { return dependent_reduce_runs(); }

size_t softmax_xent_workspace_bytes(int64_t n) {
  return align128(align8((size_t)n * sizeof(double)) + align8((size_t)n * sizeof(int))) +
         (size_t)n * kMaxClusterBlocks * sizeof(Partial);
}

bool softmax_xent_cluster_form_fits(int64_t m) {
  const int64_t c = cluster_blocks_for(m);
  return c <= kMaxClusterBlocks && cluster_form_runs((int)c);
}

void softmax_xent(int64_t n, int64_t m, const float* logits, const int64_t* labels, float* dlogits, float* loss,
                  int64_t* hits, void* workspace, cudaStream_t stream, SoftmaxXentForm form,
                  SoftmaxXentReduce reduce) {
  MOCO_CHECK(n >= 1 && m >= 1, "softmax_xent: need N, M >= 1, got N=", n, " M=", m);
  MOCO_CHECK(m <= kMaxColumns, "softmax_xent: rows of M=", m, " columns; at most ", kMaxColumns,
             " (column indices are 32-bit)");
  MOCO_CHECK(logits && loss && workspace, "softmax_xent: logits, loss and workspace must be non-null");
  MOCO_CHECK(reinterpret_cast<uintptr_t>(workspace) % 16 == 0, "softmax_xent: workspace ", workspace,
             " is not 16-byte aligned");
  char* ws = static_cast<char*>(workspace);
  double* row_loss = reinterpret_cast<double*>(ws);                                  // (N)
  int* row_above = reinterpret_cast<int*>(ws + align8(n * sizeof(double)));          // (N)
  Partial* partials = reinterpret_cast<Partial*>(  // (N, C): a row's 8 share one 128-byte line where the
                                                    // workspace starts 128-byte aligned, as cudaMalloc's do
      ws + align128(align8(n * sizeof(double)) + align8(n * sizeof(int))));
  // float4 stores need dlogits' rows as far from 16-byte boundaries as the logits' rows (equal pointers, or
  // buffers that both start aligned, as the step's do)
  const bool vectorised =
      !dlogits || (reinterpret_cast<uintptr_t>(dlogits) - reinterpret_cast<uintptr_t>(logits)) % 16 == 0;
  const int64_t c = cluster_blocks_for(m);
  const bool cluster_fits = vectorised && c <= kMaxClusterBlocks;
  if (form == SoftmaxXentForm::Auto) form = SoftmaxXentForm::RowPerBlock;  // the faster on an H100 (above)
  const bool can_depend = reduce != SoftmaxXentReduce::AfterRows && dependent_reduce_runs();  // asked once
  if (reduce == SoftmaxXentReduce::Auto)
    reduce = can_depend ? SoftmaxXentReduce::Dependent : SoftmaxXentReduce::AfterRows;
  const bool dependent = reduce == SoftmaxXentReduce::Dependent;
  MOCO_CHECK(!dependent || can_depend, "softmax_xent: the reduce as a programmatic dependent launch needs an sm_90 "
             "build on an sm_90 device; use SoftmaxXentReduce::Auto or AfterRows here");
  if (form == SoftmaxXentForm::RowPerCluster) {
    MOCO_CHECK(cluster_fits, "softmax_xent: the row-per-cluster form holds rows of at most ",
               kSoftmaxXentClusterMaxColumns, " columns with dlogits aligned as the logits; got M=", m,
               vectorised ? "" : " and dlogits misaligned");
    MOCO_CHECK(cluster_form_runs((int)c), "softmax_xent: the row-per-cluster form needs thread block clusters "
               "(an sm_90 build on an sm_90 device); use SoftmaxXentForm::Auto or RowPerBlock here");
    MOCO_CHECK(n * c <= INT32_MAX, "softmax_xent: N=", n, " exceeds the grid (", c, " blocks per row)");
    cudaLaunchAttribute cluster;
    const cudaLaunchConfig_t cfg = cluster_launch(n, (int)c, stream, cluster);
    MOCO_CUDA_CHECK(cudaLaunchKernelEx(&cfg, labels ? cluster_rows_kernel<true> : cluster_rows_kernel<false>,
                                       (int)m, 1.f / (float)n, logits, labels, dlogits, partials, row_loss,
                                       row_above));
  } else {
    MOCO_CHECK(n <= INT32_MAX, "softmax_xent: N=", n, " exceeds the grid (one block per row)");
    const auto kernel = labels ? rows_kernel<true> : rows_kernel<false>;
    kernel<<<(unsigned)n, kRowThreads, 0, stream>>>((int)m, 1.f / (float)n, logits, labels, dlogits, vectorised,
                                                    row_loss, row_above);
  }
  MOCO_CUDA_CHECK_LAUNCH();
  launch_reduce(n, row_loss, row_above, loss, hits, stream, dependent);
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
