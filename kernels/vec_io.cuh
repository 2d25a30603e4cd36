// Device-side helpers shared by the channels-last kernels (batchnorm_nhwc.cu, pointwise_nhwc.cu, ...): element
// conversion between T (float or __nv_bfloat16) and fp32, vectorised loads and stores of V consecutive
// elements as fp32, and launch-size helpers. Internal to kernels/; not a launcher header.
//
// Why bit operations for bf16: a bf16 is the top half of an fp32, so widening is a shift and needs no
// reinterpretation of a loaded uint4 as __nv_bfloat16 objects (which would be type punning); narrowing uses
// __float2bfloat16_rn (round to nearest even, NaN stays NaN).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace moco::kernels::vec {

template <class T>
__device__ __forceinline__ float to_f(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "T must be float or __nv_bfloat16");
    return __bfloat162float(v);
  }
}

template <class T>
__device__ __forceinline__ T from_f(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "T must be float or __nv_bfloat16");
    return __float2bfloat16_rn(v);
  }
}

// One 32-bit word holds 4 / sizeof(T) elements (1 float or 2 bf16, the lower address in the low half).
template <class T>
__device__ __forceinline__ void unpack_word(uint32_t w, float* f) {
  if constexpr (std::is_same_v<T, float>) {
    f[0] = __uint_as_float(w);
  } else {
    f[0] = __uint_as_float(w << 16);
    f[1] = __uint_as_float(w & 0xffff0000u);
  }
}
template <class T>
__device__ __forceinline__ uint32_t pack_word(const float* f) {
  if constexpr (std::is_same_v<T, float>) {
    return __float_as_uint(f[0]);
  } else {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f[0])) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f[1])) << 16);
  }
}

// V elements of T as one load brings them in, still packed: uint4, uint2 or uint32_t words, or a lone bf16.
// Kernels that keep several rows' loads in flight before using any hold them in this form, which takes a
// quarter (bf16) or the same (fp32) registers as the widened floats.
template <class T, int V>
struct Packed {
  static constexpr int kBytes = V * (int)sizeof(T);
  static_assert(kBytes == 2 || kBytes == 4 || kBytes == 8 || kBytes == 16, "unsupported vector width");
  using type = std::conditional_t<kBytes == 16, uint4,
               std::conditional_t<kBytes == 8, uint2, std::conditional_t<kBytes == 4, uint32_t, T>>>;
};

// p[0..V) as loaded. p must be aligned to V * sizeof(T) bytes when that is 4, 8 or 16 (the launchers check
// the base pointers; offsets are multiples of V). V * sizeof(T) may be 2, 4, 8 or 16.
template <class T, int V>
__device__ __forceinline__ typename Packed<T, V>::type load_packed(const T* p) {
  using W = typename Packed<T, V>::type;
  if constexpr (Packed<T, V>::kBytes == 2)
    return p[0];
  else
    return *reinterpret_cast<const W*>(p);
}

// f[0..V) = the packed elements widened to fp32.
template <class T, int V>
__device__ __forceinline__ void unpack(const typename Packed<T, V>::type& w, float (&f)[V]) {
  constexpr int kBytes = Packed<T, V>::kBytes;
  constexpr int kPerWord = 4 / (int)sizeof(T);
  if constexpr (kBytes == 2) {
    f[0] = to_f(w);
  } else if constexpr (kBytes == 4) {
    unpack_word<T>(w, f);
  } else if constexpr (kBytes == 8) {
    unpack_word<T>(w.x, f);
    unpack_word<T>(w.y, f + kPerWord);
  } else {
    unpack_word<T>(w.x, f);
    unpack_word<T>(w.y, f + kPerWord);
    unpack_word<T>(w.z, f + 2 * kPerWord);
    unpack_word<T>(w.w, f + 3 * kPerWord);
  }
}

// f[0..V) = p[0..V) widened to fp32; alignment as for load_packed.
template <class T, int V>
__device__ __forceinline__ void load(const T* p, float (&f)[V]) {
  unpack<T, V>(load_packed<T, V>(p), f);
}

// f[0..V) rounded to T, packed as one load brings them in (the inverse of unpack).
template <class T, int V>
__device__ __forceinline__ typename Packed<T, V>::type pack(const float (&f)[V]) {
  constexpr int kBytes = Packed<T, V>::kBytes;
  constexpr int kPerWord = 4 / (int)sizeof(T);
  if constexpr (kBytes == 2) {
    return from_f<T>(f[0]);
  } else if constexpr (kBytes == 4) {
    return pack_word<T>(f);
  } else if constexpr (kBytes == 8) {
    return make_uint2(pack_word<T>(f), pack_word<T>(f + kPerWord));
  } else {
    return make_uint4(pack_word<T>(f), pack_word<T>(f + kPerWord), pack_word<T>(f + 2 * kPerWord),
                      pack_word<T>(f + 3 * kPerWord));
  }
}

// p[0..V) = packed elements; alignment as for load_packed.
template <class T, int V>
__device__ __forceinline__ void store_packed(T* p, const typename Packed<T, V>::type& w) {
  using W = typename Packed<T, V>::type;
  if constexpr (Packed<T, V>::kBytes == 2)
    p[0] = w;
  else
    *reinterpret_cast<W*>(p) = w;
}

// p[0..V) = f[0..V) rounded to T; alignment as for load.
template <class T, int V>
__device__ __forceinline__ void store(T* p, const float (&f)[V]) {
  store_packed<T, V>(p, pack<T, V>(f));
}

// Elements per 16-byte vector: 4 floats or 8 bf16.
template <class T>
constexpr int kVec16 = 16 / (int)sizeof(T);

// Host side: whether p is aligned to `bytes` (null counts as aligned: an absent optional operand).
inline bool aligned(const void* p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % (uintptr_t)bytes == 0; }

// Blocks for a grid-stride loop over `items` with `threads` per block: enough to fill the device several
// times over, capped so the grid size stays a small int.
inline unsigned grid_for(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return (unsigned)(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

}  // namespace moco::kernels::vec
