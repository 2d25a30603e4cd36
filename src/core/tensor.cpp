#include "moco/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace moco {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I64: return 8;
    case DType::I32: return 4;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I64: return "i64";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape Tensor::contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

static void release_heap(void* p) { std::free(p); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  MOCO_CHECK(device == Device::CPU, "Tensor::empty allocates CPU memory only, not ", device_name(device),
             "; device tensors come from their backend (Backend::empty)");
  for (int64_t d : shape) MOCO_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
  void* p = std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
  MOCO_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes for shape ", shape_str(shape));
  t.storage_ = std::make_shared<Storage>(p, bytes, device, &release_heap);
  t.data_ = p;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, Device device) {
  MOCO_CHECK(data != nullptr || shape_numel(shape) == 0, "Tensor::wrap of a null pointer with shape ", shape_str(shape));
  Tensor t;
  t.data_ = data;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::adopt(void* data, size_t bytes, const Shape& shape, DType dtype, Device device,
                     std::function<void(void*)> release, MemoryFormat format) {
  MOCO_CHECK(format == MemoryFormat::Contiguous || shape.size() == 4, "a channels-last tensor must be 4-D, got ",
             shape_str(shape));
  MOCO_CHECK((size_t)shape_numel(shape) * dtype_size(dtype) <= bytes, "shape ", shape_str(shape), " of ",
             dtype_name(dtype), " needs more than the ", bytes, " bytes given");
  Tensor t = wrap(data, shape, dtype, device);
  t.storage_ = std::make_shared<Storage>(data, bytes, device, std::move(release));
  if (format == MemoryFormat::ChannelsLast) t.strides_ = channels_last_strides(shape);
  return t;
}

int64_t Tensor::size(int64_t i) const {
  if (i < 0) i += dim();
  MOCO_CHECK(i >= 0 && i < dim(), "dimension ", i, " out of range for shape ", shape_str(shape_));
  return shape_[(size_t)i];
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

Shape Tensor::channels_last_strides(const Shape& s) { return {s[2] * s[3] * s[1], 1, s[3] * s[1], s[1]}; }

bool Tensor::is_channels_last() const { return dim() == 4 && strides_ == channels_last_strides(shape_); }

Tensor Tensor::reshape(const Shape& shape) const {
  MOCO_CHECK(is_contiguous(), "reshape of a non-contiguous tensor ", shape_str(shape_));
  MOCO_CHECK(shape_numel(shape) == numel(), "cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  MOCO_CHECK(dim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "row slice [", begin, ", ", end,
             ") out of range for shape ", shape_str(shape_));
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + (size_t)(begin * strides_[0]) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::clone() const {
  MOCO_CHECK(device_ == Device::CPU, "clone() copies CPU tensors only");
  MOCO_CHECK(is_contiguous(), "clone() of a non-contiguous tensor");
  Tensor t = empty(shape_, dtype_);
  std::memcpy(t.data_, data_, nbytes());
  return t;
}

void Tensor::expect_shape(const Shape& expected, const char* what) const {
  bool ok = expected.size() == shape_.size();
  for (size_t i = 0; ok && i < expected.size(); ++i) ok = expected[i] < 0 || expected[i] == shape_[i];
  MOCO_CHECK(ok, what, " has shape ", shape_str(shape_), ", expected ", shape_str(expected), " (-1 = any)");
}

}  // namespace moco
