// Convolutions: whether a graph plan built to add into dx (cuDNN's beta = 1) really adds.
//
// The adding data gradient sums a residual block's two input gradients inside cuDNN (convolution.h). cuDNN
// documents beta for the node but does not promise that every engine honours it. An engine that refuses
// beta = 1 when its plan is finalised is harmless (the legacy algorithm stays), but one that finalises and
// then writes over dx would drop the shortcut's gradient with no error, and the timing that chose it would
// not notice. So the first call of such a plan runs it twice more, on the caller's buffers: once over dx
// holding the sum so far S (giving S + G) and once over zeros (giving G). On the first elements, the first
// result less the second must be S, to within the rounding of one sum; a plan that fails loses its place to
// the legacy algorithm, whose beta the legacy API documents. Once per plan, at warm-up.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "convolution_impl.h"
#include "moco/bf16_host.h"

namespace moco::cuda {

using namespace conv_detail;

namespace {

// Elements compared: enough to see a dropped sum anywhere it is not negligible, few enough to copy at once.
constexpr size_t kCheckedElements = size_t(1) << 16;

std::vector<float> as_floats(const std::vector<unsigned char>& bytes, DType dtype) {
  std::vector<float> v(bytes.size() / dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::BF16) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      v[i] = bf16_value(b);
    } else {
      std::memcpy(&v[i], bytes.data() + 4 * i, 4);
    }
  }
  return v;
}

}  // namespace

bool Convolutions::Impl::graph_plan_adds(const Entry& e, const void* dy, const void* w, void* dx, const void* kept,
                                         bool kept_on_device, size_t bytes) {
  const size_t checked = std::min(bytes, kCheckedElements * dtype_size(e.dtype));
  std::vector<unsigned char> sum_h(checked), added_h(checked), alone_h(checked);  // (checked) bytes each
  run(e, kBackwardData, dy, w, dx);  // dx = S + G
  MOCO_CUDA_CHECK(cudaMemcpyAsync(added_h.data(), dx, checked, cudaMemcpyDeviceToHost, stream));
  MOCO_CUDA_CHECK(cudaMemsetAsync(dx, 0, bytes, stream));  // all-zero bits: 0 in fp32 and bf16
  run(e, kBackwardData, dy, w, dx);  // dx = G
  MOCO_CUDA_CHECK(cudaMemcpyAsync(alone_h.data(), dx, checked, cudaMemcpyDeviceToHost, stream));
  // dx holds S again before anything can throw below
  MOCO_CUDA_CHECK(cudaMemcpyAsync(dx, kept, bytes, kept_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice,
                                  stream));
  wait_for_stream();  // the host copies are read below (pageable memory: the copies are done when this returns)
  if (kept_on_device)
    MOCO_CUDA_CHECK(cudaMemcpy(sum_h.data(), kept, checked, cudaMemcpyDeviceToHost));
  else
    std::memcpy(sum_h.data(), kept, checked);

  const std::vector<float> s = as_floats(sum_h, e.dtype), added = as_floats(added_h, e.dtype),
                           alone = as_floats(alone_h, e.dtype);
  size_t informative = 0, wrong = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double sum = s[i], g = alone[i], got = added[i];
    // one rounding of S + G to the output type, and G's own: far inside 1/64 of the magnitudes in bf16
    const double tolerance = (std::fabs(sum) + std::fabs(g)) / 64;
    informative += sum != 0;
    wrong += !(std::fabs(got - sum - g) <= tolerance);  // a NaN counts as wrong
  }
  // S all zero cannot tell adding from overwriting, and either is right then
  return informative == 0 || wrong == 0;
}

void Convolutions::Impl::keep_graph_plan_if_it_adds(Entry& e, const void* dy, const void* w, void* dx,
                                                    const void* kept, bool kept_on_device, size_t bytes) {
  Plan& plan = e.plan[kBackwardData];
  if (!plan.graph.plan) return;
  // an unaligned first call runs the legacy algorithm, so it cannot check the graph plan: the step's calls are
  // always aligned, and the plan is dropped rather than trusted unchecked
  const bool aligned = graph_conv_aligned(dy, w, dx);
  if (aligned && graph_plan_adds(e, dy, w, dx, kept, kept_on_device, bytes)) return;
  if (aligned) {
    plan.graph_note = "graph engine " + std::to_string(plan.graph.engine) +
                      " dropped: it wrote over dx instead of adding to it (beta 1 ignored)";
    std::fprintf(stderr, "moco: cuDNN graph engine %lld did not add into dx for %s; the legacy algorithm runs it "
                 "instead\n", (long long)plan.graph.engine, shape_string(e.shape, e.dtype, true).c_str());
  } else {
    plan.graph_note = "graph plan dropped: the first call's buffers were unaligned, so it was not checked to add "
                      "into dx";
  }
  plan.graph = GraphConvPlan{};
  plan.best_graph_engine = -1;
}

}  // namespace moco::cuda
