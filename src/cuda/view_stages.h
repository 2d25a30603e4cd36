// GpuViewStages: the augmentation stages after the crop (grayscale, colour jitter, blur, flip), run on the
// device for a batch of 8-bit views whose crop the loader made on the host (LoaderConfig::stages_on_device),
// from the decisions it drew (Batch::params). The views come out as augment_view_u8 would have made them
// but for one more rounding to 8 bits, after the crop, where PIL rounds too.
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "device_buffer.h"
#include "moco/augment.h"
#include "moco/tensor.h"
#include "pinned_host.h"
#include "view_stages.cuh"

namespace moco::cuda {

class GpuViewStages {
 public:
  // Work is enqueued on `stream`; the scratch is sized for chunks of at most kChunk views.
  GpuViewStages(const AugmentRecipe& recipe, cudaStream_t stream);

  // views: (N, S, S, 3) uint8 on the device, in place; params: the N views' decisions, in row order.
  void apply(const Tensor& views, const std::vector<ViewParams>& params);

  static constexpr int64_t kChunk = 64;  // views per pass: bounds the scratch (64 x S x S x 3 bytes)

 private:
  AugmentRecipe recipe_;
  cudaStream_t stream_;
  std::vector<kernels::ViewStages> host_;    // (N) filled from the params
  DeviceBuffer<kernels::ViewStages> stages_;  // (N)
  DeviceBuffer<uint8_t> scratch_;            // (kChunk, S, S, 3): the blur's passes alternate with the views
  DeviceBuffer<int> means_;                  // (kChunk): each view's mean grey level, for contrast
  PinnedUploads uploads_;
};

}  // namespace moco::cuda
