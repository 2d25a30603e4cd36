// Launchers for the small channels-last leaf ops of the ResNet (raw pointers and sizes only; no Tensor):
// ReLU, add, bias, max-pool, global average pool, dtype casts, the NCHW <-> NHWC conversions at the
// network's edges, and the packing of fp32 master weights into the compute copy the convolutions read.
//
// T is float or __nv_bfloat16. Activations are (N, H, W, C) with C innermost. Arithmetic is done in fp32
// and rounded once to T on store. Each launcher names its CPU reference.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// ---- pointwise over n elements
// y = max(x, 0); NaN propagates (as torch.relu). y may alias x. CPU: cpu::relu_forward.
template <class T> void relu_forward(int64_t n, const T* x, T* y, cudaStream_t stream);
// dx = y > 0 ? dy : 0, from the forward OUTPUT y. dx may alias dy. CPU: cpu::relu_backward.
template <class T> void relu_backward(int64_t n, const T* y, const T* dy, T* dx, cudaStream_t stream);
// y = a + b. y may alias a or b. CPU: cpu::add_forward.
template <class T> void add_forward(int64_t n, const T* a, const T* b, T* y, cudaStream_t stream);

// ---- bias of a linear layer over rows (N, O)
// y[i, o] += bias[o] (fp32 bias). CPU: the bias term of cpu::linear_forward.
template <class T> void bias_add_forward(int64_t n, int64_t o, const float* bias, T* y, cudaStream_t stream);
// db[o] += sum_i dy[i, o] (fp32, ACCUMULATED, deterministic). CPU: db of cpu::linear_backward.
template <class T> void bias_backward(int64_t n, int64_t o, const T* dy, float* db, cudaStream_t stream);

// ---- the ImageNet stem's max-pool: 3x3, stride 2, padding 1 (padding never wins)
// x (N, H, W, C) -> y (N, Ho, Wo, C) with Ho = (H - 1) / 2 + 1, Wo likewise; argmax (N, Ho, Wo, C), nullable
// (no backward to come), holds the winner's place in its window, (h - (2 oy - 1)) * 3 + (w - (2 ox - 1)) in
// 0..8: a byte, where a position in the plane took an int32 (first maximum in row-major window order; a NaN
// wins, the last one if several, as in torch). CPU: cpu::maxpool_forward (NCHW; its argmax is the position
// h * W + w of the same winner).
template <class T>
void maxpool3x3s2_forward(int64_t n, int64_t h, int64_t w, int64_t c, const T* x, T* y, uint8_t* argmax,
                          cudaStream_t stream);
// dx (N, H, W, C) = sum of dy over the windows whose argmax is that input. Written as a gather (each input
// element visits the at most 4 windows that contain it), so it is deterministic and needs no zero-fill.
// CPU: cpu::maxpool_backward.
template <class T>
void maxpool3x3s2_backward(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t* argmax, const T* dy, T* dx,
                           cudaStream_t stream);

// ---- global average pool: x (N, HW, C) -> y (N, C) and back. CPU: cpu::avgpool_forward / _backward.
template <class T> void global_avgpool_forward(int64_t n, int64_t hw, int64_t c, const T* x, T* y, cudaStream_t stream);
template <class T> void global_avgpool_backward(int64_t n, int64_t hw, int64_t c, const T* dy, T* dx, cudaStream_t stream);

// ---- dtype and layout at the network's edges
// y = (Dst) x over n elements; Src, Dst in {float, __nv_bfloat16}.
template <class Src, class Dst> void cast(int64_t n, const Src* x, Dst* y, cudaStream_t stream);
// x (N, C, HW) fp32 -> y (N, HW, C) of T: the loader's images into the network's layout.
template <class T> void nchw_to_nhwc(int64_t n, int64_t c, int64_t hw, const float* x, T* y, cudaStream_t stream);
// x (N, HW, C) of T -> y (N, C, HW) fp32: activations back to the CPU layout (tests, feature export).
template <class T> void nhwc_to_nchw(int64_t n, int64_t c, int64_t hw, const T* x, float* y, cudaStream_t stream);

// ---- the compute copy of the weights
// The fp32 master parameters keep torchvision's layout (conv weights (Co, Ci, kh, kw)); the convolutions
// read a copy of type T with conv weights in cuDNN's NHWC filter layout (Co, kh, kw, Ci). The copy serves
// the convolutions and the linear layers (BN reads its fp32 parameters directly), one slot per such tensor,
// at the same offset in both buffers (the copy is as long as the master buffer). A slot with ci == kh ==
// kw == 1 is copied as is (linear weights), so one launch covers every slot.
struct WeightSlot {
  int64_t offset;          // elements into the flat buffers
  int64_t co, ci, kh, kw;  // conv weight shape; (numel, 1, 1, 1) for anything else
};
// mirror[slot] = permute(cast<T>(params[slot])) for every slot. slots: DEVICE array (num_slots), sorted by
// offset; total: the flat buffer's length (an upper bound of the last slot's end). Elements outside every
// slot (alignment padding, BN slots) are left as they are.
template <class T>
void pack_weights(const WeightSlot* slots, int num_slots, int64_t total, const float* params, T* mirror,
                  cudaStream_t stream);
// grads[slot] += unpermute(mirror_grads[slot]) in fp32 for ONE slot (described on the host), launched over
// that slot's elements only: the convolutions' and linear layers' weight gradients, computed in T in the
// compute layout, onto the fp32 master gradients. Backward folds each layer's weight gradient as soon as cuDNN
// or cuBLAS has written it, so that its all-reduce bucket can start early (src/cuda/gpu_moco.cpp).
template <class T>
void unpack_weight_grad(const WeightSlot& slot, const T* mirror_grads, float* grads, cudaStream_t stream);

}  // namespace moco::kernels
