// Tensor: a typed, strided view of memory on one device. Ownership is shared through Storage, so views
// (reshape, slices of the batch) stay valid while any of them lives. A Tensor never allocates by itself:
// memory comes from the heap (Tensor::empty), from a backend's allocator (Tensor::adopt: the GPU's block
// cache), or from someone else's buffer (Tensor::wrap).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moco/error.h"

namespace moco {

enum class DType : uint8_t { F32, F64, BF16, F16, I64, I32, U8 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// How a 4-D tensor's logical (N, C, H, W) dimensions are laid out in memory. The CPU path is contiguous
// (NCHW); the GPU path keeps activations channels-last (NHWC, strides (HWC, 1, WC, C)), which is what
// cuDNN's tensor-core convolutions want, while shapes stay (N, C, H, W) everywhere above the leaf ops.
enum class MemoryFormat : uint8_t { Contiguous, ChannelsLast };

// Raw memory with a release function; the release function knows the device and the allocator (free, a
// device block cache).
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  std::function<void(void*)> release;
  Storage(void* p, size_t n, Device d, std::function<void(void*)> rel)
      : ptr(p), bytes(n), device(d), release(std::move(rel)) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release && ptr) release(ptr);
  }
};

class Tensor {
 public:
  Tensor() = default;
  // Heap-backed, contiguous, uninitialised (CPU) tensor.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  // Non-owning view of memory someone else keeps alive (a flat parameter buffer, a device buffer).
  static Tensor wrap(void* data, const Shape& shape, DType dtype, Device device = Device::CPU);
  // Takes ownership of `bytes` at `data` (any device): `release(data)` runs when the last view goes.
  static Tensor adopt(void* data, size_t bytes, const Shape& shape, DType dtype, Device device,
                      std::function<void(void*)> release, MemoryFormat format = MemoryFormat::Contiguous);

  bool defined() const { return data_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return (int64_t)shape_.size(); }
  int64_t size(int64_t i) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype_); }
  bool is_contiguous() const;
  bool is_channels_last() const;  // a 4-D tensor with NHWC strides
  void* raw() const { return data_; }

  // Typed pointer; throws if T does not match dtype.
  template <class T>
  T* data() const {
    MOCO_CHECK(dtype_of<T>() == dtype_, "tensor holds ", dtype_name(dtype_), ", asked for ", dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_);
  }

  // Same memory, new shape (contiguous tensors only; numel must match).
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) along dimension 0 (no copy).
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Deep copy to a fresh contiguous CPU tensor.
  Tensor clone() const;

  // Throws unless the shape is exactly `expected` (-1 = any size); `what` names the tensor in the message.
  void expect_shape(const Shape& expected, const char* what) const;

 private:
  std::shared_ptr<Storage> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  Shape shape_, strides_;
  static Shape contiguous_strides(const Shape& s);
  static Shape channels_last_strides(const Shape& s);  // (N, C, H, W) laid out NHWC
};

}  // namespace moco
