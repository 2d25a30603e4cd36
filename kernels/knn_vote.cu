// The kNN monitor's vote on the GPU: per query row of cosine similarities to the bank, select the k largest,
// and let them vote for their classes.
//
// What it computes, per row r of sims (rows, B):
//   N_r = the k entries j with the largest sims[r, j], the lower index first among equal ones
//   votes[r, c] = sum over j in N_r with label c of exp(sims[r, j] / t), summed in the order (sim descending,
//                 index ascending), in double
//   pred[r] = argmax_c votes[r, c], the first of equal maxima
// CPU reference: moco::knn_top1 (src/eval/knn.cpp): std::partial_sort with the same comparator, the same
// double sum in the same order, std::max_element. Given the same similarities the neighbours are the same
// set, and the votes differ at most by exp's last-bit rounding.
//
// How, one block per row (the row is read 5 times; nothing of it is written):
//   1. a radix select over the similarities' order-preserving 32-bit keys, 8 bits per pass from the top,
//      finds the k-th largest key: 4 reads of the row, each counting the keys that still match in a
//      256-bin shared histogram;
//   2. a fifth read gathers every entry above it and, when all entries equal to it are needed, those too, into
//      a shared list; otherwise (ties at the k-th place) one thread takes the lowest indices in order;
//   3. a bitonic sort of the list in shared memory, then one thread sums the votes in that order.
// Fused so that the (rows, B) similarities, 5 MB per query for an ImageNet bank, are never copied or sorted
// in global memory; only their reads remain.
#include <cmath>

#include "../src/cuda/check.h"
#include "knn_vote.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 1024;

// Larger float -> larger key; -0 is taken as +0, as the CPU's comparison treats them.
__device__ __forceinline__ unsigned order_key(float f) {
  const unsigned u = __float_as_uint(f == 0.f ? 0.f : f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// a goes before b in the CPU's order: greater similarity, then lower index. Compared by order_key, as the
// select is, so that both phases share one total order even if a similarity is NaN (which the CPU's sort leaves
// undefined): the list's order, and so the vote, then cannot depend on the order the threads filled it in.
__device__ __forceinline__ bool before(float sa, int ia, float sb, int ib) {
  const unsigned ka = order_key(sa), kb = order_key(sb);
  return ka > kb || (ka == kb && ia < ib);
}

__global__ void __launch_bounds__(kThreads)
    vote_kernel(int64_t bank, int k, int pow2, int classes, double t,
                const float* __restrict__ sims,        // (rows, B)
                const int* __restrict__ bank_labels,   // (B)
                double* __restrict__ votes,            // (rows, classes)
                int* __restrict__ pred) {              // (rows)
  __shared__ unsigned hist[256];
  __shared__ unsigned sh_prefix, sh_remaining, sh_equal, sh_count;
  __shared__ float list_sim[kKnnMaxK];  // (pow2) the neighbours, then padding
  __shared__ int list_idx[kKnnMaxK];    // (pow2)
  const int64_t row = blockIdx.x;
  const float* s = sims + row * bank;
  const unsigned tid = threadIdx.x;

  // 1. the k-th largest key: after pass p, the top 8(p+1) bits of prefix are those of the k-th key, and
  // remaining is its rank among the keys that share them
  unsigned prefix = 0, mask = 0, remaining = (unsigned)k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (unsigned b = tid; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    for (int64_t j = tid; j < bank; j += kThreads) {
      const unsigned key = order_key(s[j]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      unsigned above = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + hist[b] >= remaining) {
          sh_prefix = prefix | ((unsigned)b << shift);
          sh_remaining = remaining - above;
          sh_equal = hist[b];
          break;
        }
        above += hist[b];
      }
    }
    __syncthreads();
    prefix = sh_prefix, remaining = sh_remaining;
    mask |= 255u << shift;
  }
  const unsigned kth = prefix;  // k - remaining keys are above it; `remaining` of the sh_equal equal to it go in
  const bool all_equal_go = sh_equal == remaining;

  // 2. the neighbours, in any order (sorted below)
  if (tid == 0) sh_count = 0;
  __syncthreads();
  for (int64_t j = tid; j < bank; j += kThreads) {
    const unsigned key = order_key(s[j]);
    if (key > kth || (all_equal_go && key == kth)) {
      const unsigned slot = atomicAdd(&sh_count, 1u);
      list_sim[slot] = s[j];
      list_idx[slot] = (int)j;
    }
  }
  __syncthreads();
  if (!all_equal_go && tid == 0) {  // ties at the k-th place (rare): the lowest indices, in index order
    unsigned slot = sh_count, taken = 0;
    for (int64_t j = 0; j < bank && taken < remaining; ++j)
      if (order_key(s[j]) == kth) {
        list_sim[slot] = s[j];
        list_idx[slot++] = (int)j;
        ++taken;
      }
  }
  for (int i = k + (int)tid; i < pow2; i += kThreads) {  // padding that sorts last
    list_sim[i] = -INFINITY;
    list_idx[i] = 0x7fffffff;
  }
  __syncthreads();

  // 3. bitonic sort of the pow2 entries into the CPU's order, then the vote
  for (int size = 2; size <= pow2; size <<= 1)
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int i = (int)tid; i < pow2; i += kThreads) {
        const int j = i ^ stride;
        if (j <= i) continue;
        const bool forward = (i & size) == 0;  // this run is sorted in the CPU's order, the other run reversed
        const bool swap = forward ? before(list_sim[j], list_idx[j], list_sim[i], list_idx[i])
                                  : before(list_sim[i], list_idx[i], list_sim[j], list_idx[j]);
        if (swap) {
          const float ts = list_sim[i];
          const int ti = list_idx[i];
          list_sim[i] = list_sim[j], list_idx[i] = list_idx[j];
          list_sim[j] = ts, list_idx[j] = ti;
        }
      }
      __syncthreads();
    }
  double* v = votes + row * classes;
  for (int c = (int)tid; c < classes; c += kThreads) v[c] = 0.0;
  __syncthreads();
  if (tid == 0) {
    for (int i = 0; i < k; ++i) v[bank_labels[list_idx[i]]] += exp((double)list_sim[i] / t);
    int best = 0;
    for (int c = 1; c < classes; ++c)
      if (v[c] > v[best]) best = c;
    pred[row] = best;
  }
}

}  // namespace

void knn_vote(int64_t rows, int64_t bank, int k, int classes, double t, const float* sims, const int* bank_labels,
              double* votes, int* pred, cudaStream_t stream) {
  MOCO_CHECK(rows >= 1 && rows <= INT32_MAX, "knn_vote: rows=", rows, ", expected 1 .. 2^31-1 (one block each)");
  MOCO_CHECK(bank >= 1 && bank <= INT32_MAX, "knn_vote: bank of ", bank, " entries, expected 1 .. 2^31-1");
  MOCO_CHECK(k >= 1 && k <= kKnnMaxK && k <= bank, "knn_vote: k=", k, ", expected 1 .. min(bank=", bank, ", ",
             kKnnMaxK, ")");
  MOCO_CHECK(classes >= 1, "knn_vote: classes=", classes, ", expected >= 1");
  MOCO_CHECK(t > 0, "knn_vote: temperature ", t, ", expected > 0");
  MOCO_CHECK(sims && bank_labels && votes && pred, "knn_vote: null pointer");
  int pow2 = 1;
  while (pow2 < k) pow2 <<= 1;
  vote_kernel<<<(unsigned)rows, kThreads, 0, stream>>>(bank, k, pow2, classes, t, sims, bank_labels, votes, pred);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels
