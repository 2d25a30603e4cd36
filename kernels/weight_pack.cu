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
// Index arithmetic inside a slot is 32-bit (a slot holds fewer than 2^31 elements: the host checks it), since
// a 64-bit division is a long software routine on the GPU and each element needed three; 1x1 convolutions and
// linear weights, more than half of ResNet-50's, have the same layout both ways and need none.
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

// Slot-local index of the master (Co, Ci, kh, kw) element held at compute-layout (Co, kh, kw, Ci) index k.
__device__ __forceinline__ int master_index(const WeightSlot& w, int k) {
  if (w.kh == 1 && w.kw == 1) return k;  // 1x1 and linear: the two layouts agree
  const int ci = (int)w.ci, kh = (int)w.kh, kw = (int)w.kw;
  const int i = k % ci;
  k /= ci;
  const int b = k % kw;
  k /= kw;
  const int a = k % kh, o = k / kh;
  return ((o * ci + i) * kh + a) * kw + b;
}

// Slot-local index of the compute-layout element that holds master index m (the inverse of master_index).
__device__ __forceinline__ int compute_index(const WeightSlot& w, int m) {
  if (w.kh == 1 && w.kw == 1) return m;
  const int ci = (int)w.ci, kh = (int)w.kh, kw = (int)w.kw;
  const int b = m % kw;
  m /= kw;
  const int a = m % kh;
  m /= kh;
  const int i = m % ci, o = m / ci;
  return ((o * kh + a) * kw + b) * ci + i;
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
    mirror[j] = vec::from_f<T>(params[w.offset + master_index(w, (int)(j - w.offset))]);
  }
}

// Thread per master element of one slot (passed by value: no search).
template <class T>
__global__ void __launch_bounds__(kThreads)
    unpack_slot_kernel(WeightSlot w,
                       const T* __restrict__ mirror_grads,  // the slot's elements, compute layout
                       float* __restrict__ grads) {         // the slot's elements, master layout, accumulated
  const int64_t numel = w.co * w.ci * w.kh * w.kw;  // < 2^31: checked by the launcher
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;  // the loop counter may pass 2^31 before it stops
  for (int64_t m = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; m < numel; m += stride)
    grads[w.offset + m] += vec::to_f(mirror_grads[w.offset + compute_index(w, (int)m)]);
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
  MOCO_CHECK(slot.offset >= 0 && numel >= 0 && numel <= INT32_MAX, "unpack_weight_grad: bad slot at offset ",
             slot.offset, " with ", numel, " elements (at most 2^31 - 1)");
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
