// Convolutions through cuDNN's graph (backend) API: one pass of one shape as an operation graph of a single
// convolution node, the engine configurations cuDNN's heuristics propose for it (mode A, then the fallback
// mode's others), and the execution plans made
// from them. Convolutions (convolution.h) uses these next to the legacy API's algorithms and keeps whichever
// its MOCO_CONV_API setting asks for (legacy, graph, or the faster of the two by measurement).
//
// Layouts as in convolution.h, all channels-last: x (N, H, W, Ci), w (Co, kh, kw, Ci), y (N, Ho, Wo, Co). The
// graph API describes a tensor by its logical dimensions in (N, C, H, W) order and the strides of each, so
// channels-last is dims (N, C, H, W) with strides (H*W*C, 1, W*C, C).
//
// Which engines are kept, and why:
// - deterministic only (CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC is dropped), as the legacy choice prefers, so
//   a step is reproducible;
// - no runtime compilation (CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION): those compile a kernel with NVRTC on
//   first use, seconds per shape in the first step;
// - no reduced-precision accumulation (CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION): bf16 convolutions
//   accumulate in fp32 here, as in the legacy path and the CPU reference;
// - in fp32, no tensor cores or down-converted inputs (TF32), so fp32 stays the exact-math test mode.
//
// CPU reference: cpu::conv2d_forward / cpu::conv2d_backward, as for the legacy path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moco/cpu_ops.h"
#include "moco/tensor.h"
#include <cudnn.h>

namespace moco::cuda {

// The three passes, numbered as Convolutions numbers them.
enum ConvPass { kConvForward = 0, kConvBackwardData = 1, kConvBackwardFilter = 2, kConvPasses = 3 };

// Every pointer handed to a graph plan must be aligned to this many bytes: the plans are built for it, so
// the engines may use 16-byte vector loads. Convolutions runs its legacy algorithm on a call whose pointers
// are not.
constexpr int64_t kGraphConvAlignment = 16;

// One finalized execution plan and what it needs.
struct GraphConvPlan {
  // The graph's other descriptors (tensors, node, graph, heuristics, engine configs), kept as long as the
  // plan: cuDNN does not document that a finalized plan outlives the descriptors it was built from. Declared
  // first, so destroyed after the plan.
  std::shared_ptr<const void> built_from;
  std::shared_ptr<void> plan;  // the cudnnBackendDescriptor_t of the execution plan, destroyed with the last copy
  size_t workspace = 0;        // bytes
  int64_t engine = -1;         // cuDNN's global engine index, for describe()
};

// What building the candidates found: the plans that qualify, heuristics' order (best first), and a line
// per engine config that was dropped, with the reason, for error messages.
struct GraphConvCandidates {
  std::vector<GraphConvPlan> plans;
  std::string dropped;
};

// Builds up to `max_plans` qualifying plans for `pass` of shape `s` in `dtype` (F32 or BF16), each needing
// at most `max_workspace` bytes; with `only_engine` >= 0, of that engine only (no other plan is finalized).
// With `add` (backward data only) the plans add their result into the output (the node's beta is 1), which
// is then read: a residual block's two input gradients meet without a pass of their own.
// Throws moco::Error naming the call when cuDNN refuses the graph itself.
GraphConvCandidates graph_conv_candidates(cudnnHandle_t handle, const cpu::ConvShape& s, DType dtype, int pass,
                                          size_t max_workspace, int max_plans, int64_t only_engine = -1,
                                          bool add = false);

// Queues one run of `plan` on the handle's stream: forward (x, w) -> y; backward_data (dy, w) -> dx;
// backward_filter (x, dy) -> dw, the output overwritten (or added to, for a plan built with `add`). `workspace` holds at least plan.workspace bytes.
void run_graph_conv(cudnnHandle_t handle, const GraphConvPlan& plan, int pass, const void* in0, const void* in1,
                    void* out, void* workspace);

// True when every pointer is aligned to kGraphConvAlignment.
bool graph_conv_aligned(const void* a, const void* b, const void* c);

}  // namespace moco::cuda
