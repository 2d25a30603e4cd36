#include "view_stages.h"

#include <algorithm>

#include "check.h"

namespace moco::cuda {

namespace {

// One view's decisions as the kernels read them; a stage the recipe does not have stays off, whatever p says.
kernels::ViewStages stages_of(const ViewParams& p, const RecipeStages& has) {
  kernels::ViewStages s{};
  s.jitter = has.jitter && p.jitter ? 1 : 0;
  for (int k = 0; k < 4; ++k) s.order[k] = p.jitter_params.order[k];
  s.factor[0] = p.jitter_params.brightness;
  s.factor[1] = p.jitter_params.contrast;
  s.factor[2] = p.jitter_params.saturation;
  s.factor[3] = p.jitter_params.hue;
  s.hue_turn = hue_turn(p.jitter_params.hue);
  s.gray = has.gray && p.gray ? 1 : 0;
  if (has.blur && p.blur) {
    const BlurBox box = pil_blur_box(p.sigma);  // the CPU blur's own box
    s.blur = 1;
    s.radius = box.radius;
    s.inner = box.inner;
    s.edge = box.edge;
  }
  s.flip = has.flip && p.flip ? 1 : 0;
  return s;
}

}  // namespace

GpuViewStages::GpuViewStages(const AugmentRecipe& recipe, cudaStream_t stream) : recipe_(recipe), stream_(stream) {}

void GpuViewStages::apply(const Tensor& views, const std::vector<ViewParams>& params) {
  const int64_t s = recipe_.size;
  MOCO_CHECK(views.device() == Device::CUDA && views.dtype() == DType::U8 && views.is_contiguous() &&
                 views.shape() == (Shape{views.size(0), s, s, 3}),
             "device view stages: views must be contiguous device u8 (N, ", s, ", ", s, ", 3), got ",
             device_name(views.device()), " ", dtype_name(views.dtype()), " ", shape_str(views.shape()));
  const int64_t n = views.size(0);
  MOCO_CHECK((int64_t)params.size() == n, "device view stages: ", params.size(), " views' decisions for ", n,
             " views");
  if (n == 0) return;
  host_.resize((size_t)n);
  const RecipeStages has = recipe_stages(recipe_.kind);
  for (int64_t i = 0; i < n; ++i) host_[(size_t)i] = stages_of(params[(size_t)i], has);
  const int64_t chunk = std::min(n, kChunk), values = chunk * s * s * 3;
  if (stages_.size() < (size_t)n || scratch_.size() < (size_t)values) {
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffers may still be in use
    if (stages_.size() < (size_t)n) stages_ = DeviceBuffer<kernels::ViewStages>((size_t)n, "view stages");
    if (scratch_.size() < (size_t)values) {
      scratch_ = DeviceBuffer<uint8_t>((size_t)values, "view stages scratch");
      means_ = DeviceBuffer<int>((size_t)chunk, "view contrast means");
    }
  }
  uploads_.upload(stages_.get(), host_.data(), (size_t)n * sizeof(kernels::ViewStages), stream_,
                  [](cudaEvent_t e) { MOCO_CUDA_CHECK(cudaEventSynchronize(e)); });
  uint8_t* base = static_cast<uint8_t*>(views.raw());
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t m = std::min(chunk, n - first);
    kernels::apply_view_stages(m, (int)s, has.gray_first, stages_.get() + first, base + first * s * s * 3,
                               scratch_.get(), means_.get(), stream_);
  }
}

}  // namespace moco::cuda
