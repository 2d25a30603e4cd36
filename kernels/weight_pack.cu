// The compute copy of the weights (declared in nhwc_ops.cuh): fp32 master parameters in torchvision's layout
// to a copy of type T in the convolutions' layout, and the weight gradients back.
//
// What it computes, per slot at offset off with conv shape (Co, Ci, kh, kw) (linear weights are
// (numel, 1, 1, 1), for which the permutation is the identity), with
//   m = off + ((o * Ci + i) * kh + a) * kw + b   (master layout)   and   k = off + ((o * kh + a) * kw + b) * Ci + i
// (compute layout):
//   pack_weights:        mirror[k] = (T) params[m]
//   unpack_weight_grad:  grads[m] += (float) mirror_grads[k]   (one slot, launched as its gradient is ready)
// Elements outside every slot are not touched.
// CPU reference: the same permutation on the host (tests/gpu/test_nhwc_kernels.cpp).
// pack_weights covers every slot in one launch: one thread per element of the flat buffer (grid-stride)
// finds its slot by binary search over the sorted slot offsets, then gathers its one source element, so
// every output element is written by exactly one thread (the writes are coalesced; the gathered reads are
// strided by Ci, cheap next to a training step, which packs twice: query and key encoder).
// unpack_weight_grad gets its slot by value and needs no search.
#include "../src/cuda/check.h"
#include "nhwc_ops.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

// The slot holding flat element i (the last slot with offset <= i, if i lies inside it), or -1.
__device__ __forceinline__ int slot_of(const WeightSlot* slots, int num_slots, int64_t i) {
  int lo = 0, hi = num_slots;  // the answer is lo - 1 once lo == hi
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (slots[mid].offset <= i) lo = mid + 1;
    else hi = mid;
  }
  const int s = lo - 1;
  if (s < 0) return -1;
  const WeightSlot& w = slots[s];
  return i - w.offset < w.co * w.ci * w.kh * w.kw ? s : -1;
}

// Thread per mirror element j (the (Co, kh, kw, Ci) position); gathers its master element.
template <class T>
__global__ void __launch_bounds__(kThreads)
    pack_kernel(const WeightSlot* __restrict__ slots, int num_slots, int64_t total,
                const float* __restrict__ params,  // (total), master layout
                T* __restrict__ mirror) {          // (total), compute layout
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total; j += stride) {
    const int s = slot_of(slots, num_slots, j);
    if (s < 0) continue;
    const WeightSlot w = slots[s];
    int64_t t = j - w.offset;
    const int64_t i = t % w.ci;
    t /= w.ci;
    const int64_t b = t % w.kw;
    t /= w.kw;
    const int64_t a = t % w.kh, o = t / w.kh;
    mirror[j] = vec::from_f<T>(params[w.offset + ((o * w.ci + i) * w.kh + a) * w.kw + b]);
  }
}

// Thread per master element of one slot (passed by value: no search).
template <class T>
__global__ void __launch_bounds__(kThreads)
    unpack_slot_kernel(WeightSlot w,
                       const T* __restrict__ mirror_grads,  // the slot's elements, compute layout
                       float* __restrict__ grads) {         // the slot's elements, master layout, accumulated
  const int64_t numel = w.co * w.ci * w.kh * w.kw;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t0 < numel; t0 += stride) {
    int64_t t = t0;
    const int64_t b = t % w.kw;
    t /= w.kw;
    const int64_t a = t % w.kh;
    t /= w.kh;
    const int64_t i = t % w.ci, o = t / w.ci;
    grads[w.offset + t0] += vec::to_f(mirror_grads[w.offset + ((o * w.kh + a) * w.kw + b) * w.ci + i]);
  }
}

void check_args(const char* who, const WeightSlot* slots, int num_slots, int64_t total, const void* a,
                const void* b) {
  MOCO_CHECK(num_slots >= 0 && total >= 0, who, ": need num_slots, total >= 0, got ", num_slots, ", ", total);
  MOCO_CHECK(num_slots == 0 || total == 0 || (slots && a && b), who, ": slots and both buffers must be non-null");
}

}  // namespace

template <class T>
void pack_weights(const WeightSlot* slots, int num_slots, int64_t total, const float* params, T* mirror,
                  cudaStream_t stream) {
  check_args("pack_weights", slots, num_slots, total, params, mirror);
  if (num_slots == 0 || total == 0) return;
  pack_kernel<T><<<vec::grid_for(total, kThreads), kThreads, 0, stream>>>(slots, num_slots, total, params, mirror);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T>
void unpack_weight_grad(const WeightSlot& slot, const T* mirror_grads, float* grads, cudaStream_t stream) {
  const int64_t numel = slot.co * slot.ci * slot.kh * slot.kw;
  MOCO_CHECK(slot.offset >= 0 && numel >= 0, "unpack_weight_grad: bad slot at offset ", slot.offset, " with ",
             numel, " elements");
  MOCO_CHECK(numel == 0 || (mirror_grads && grads), "unpack_weight_grad: both buffers must be non-null");
  if (numel == 0) return;
  unpack_slot_kernel<T><<<vec::grid_for(numel, kThreads), kThreads, 0, stream>>>(slot, mirror_grads, grads);
  MOCO_CUDA_CHECK_LAUNCH();
}

template void unpack_weight_grad<float>(const WeightSlot&, const float*, float*, cudaStream_t);
template void unpack_weight_grad<__nv_bfloat16>(const WeightSlot&, const __nv_bfloat16*, float*, cudaStream_t);
template void pack_weights<float>(const WeightSlot*, int, int64_t, const float*, float*, cudaStream_t);
template void pack_weights<__nv_bfloat16>(const WeightSlot*, int, int64_t, const float*, __nv_bfloat16*, cudaStream_t);

}  // namespace moco::kernels
