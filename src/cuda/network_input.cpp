#include "network_input.h"

#include "dtype_dispatch.h"
#include "image_normalize.cuh"
#include "moco/error.h"
#include "nhwc_ops.cuh"

namespace moco::cuda {

ViewBatch view_batch(const Tensor& x, const char* what) {
  const bool f32 = x.dtype() == DType::F32 && x.dim() == 4 && x.size(1) == 3;
  const bool u8 = x.dtype() == DType::U8 && x.dim() == 4 && x.size(3) == 3;
  MOCO_CHECK(x.is_contiguous() && (f32 || u8), what, " must be a contiguous f32 (N, 3, H, W) or u8 (N, H, W, 3) ",
             "tensor, got ", device_name(x.device()), " ", dtype_name(x.dtype()), " ", shape_str(x.shape()));
  ViewBatch v;
  v.pixel = x.dtype();
  v.n = x.size(0);
  v.h = x.size(u8 ? 1 : 2);
  v.w = x.size(u8 ? 2 : 3);
  return v;
}

void to_network_input(const ViewBatch& v, const void* staged, DType act, void* out, cudaStream_t stream) {
  with_compute_type(act, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (v.pixel == DType::U8)
      kernels::image_to_nhwc<T>(v.n, v.h, v.w, static_cast<const uint8_t*>(staged), static_cast<T*>(out), stream);
    else
      kernels::nchw_to_nhwc<T>(v.n, 3, v.h * v.w, static_cast<const float*>(staged), static_cast<T*>(out), stream);
  });
}

}  // namespace moco::cuda
