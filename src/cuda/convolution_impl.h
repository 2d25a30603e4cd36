// The inside of Convolutions (convolution.h), shared by the files that implement it: convolution.cpp (the
// legacy API's search and the runs), convolution_graph_choice.cpp (timing the graph API against it) and
// convolution_plans.cpp (plans as text, and given plans). Not for use elsewhere.
#pragma once
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "conv_graph.h"
#include "convolution.h"

namespace moco::cuda::conv_detail {

// No algorithm asking for more workspace than this is considered, so a greedy one (FFT variants can ask
// for gigabytes) cannot take the memory the activations need.
constexpr size_t kMaxAlgoWorkspace = size_t(512) << 20;

enum Pass { kForward = kConvForward, kBackwardData = kConvBackwardData, kBackwardFilter = kConvBackwardFilter,
            kPasses = kConvPasses };

// Graph-API plans timed per pass (heuristics' best first), and the runs each is timed over.
constexpr int kMaxGraphPlans = 4;
constexpr int kTimedRuns = 3;
inline const char* pass_name(int pass) {
  static const char* const names[kPasses] = {"forward", "backward_data", "backward_filter"};
  return names[pass];
}
// In plans text and reports: backward data that adds into dx is a pass name of its own.
constexpr const char* kAddingBackwardDataName = "backward_data_add";
inline const char* pass_name(int pass, bool add) { return add ? kAddingBackwardDataName : pass_name(pass); }

inline const char* fwd_algo_name(int a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
  }
  return "?";
}
inline const char* bwd_data_algo_name(int a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
  }
  return "?";
}
inline const char* bwd_filter_algo_name(int a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "ALGO_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "FFT_TILING";
  }
  return "?";
}
inline const char* algo_name(int pass, int a) {
  return pass == kForward ? fwd_algo_name(a) : pass == kBackwardData ? bwd_data_algo_name(a) : bwd_filter_algo_name(a);
}

inline const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default math";
    case CUDNN_TENSOR_OP_MATH: return "tensor ops";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor ops with conversion";
    case CUDNN_FMA_MATH: return "fma";
  }
  return "?";
}

inline std::string shape_string(const cpu::ConvShape& s, DType dtype, bool add = false) {
  char buf[320];
  std::snprintf(buf, sizeof buf, "conv N=%lld Ci=%lld %lldx%lld -> Co=%lld k=%lldx%lld stride=%lld pad=%lld %s%s",
                (long long)s.n, (long long)s.ci, (long long)s.h, (long long)s.w, (long long)s.co, (long long)s.kh,
                (long long)s.kw, (long long)s.stride, (long long)s.pad, dtype_name(dtype),
                add ? " (dx added to)" : "");
  return buf;
}

inline std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
  return buf;
}

// The cache key: the shape's fields, the dtype, and whether backward data adds into its output (cuDNN's
// beta 1). An adding call is an entry of its own: a graph plan has its beta built in.
struct Key {
  int64_t n, ci, h, w, co, kh, kw, stride, pad;
  DType dtype;
  bool add;
  bool operator==(const Key& o) const {
    return n == o.n && ci == o.ci && h == o.h && w == o.w && co == o.co && kh == o.kh && kw == o.kw &&
           stride == o.stride && pad == o.pad && dtype == o.dtype && add == o.add;
  }
};
inline Key key_of(const cpu::ConvShape& s, DType dtype, bool add) {
  return Key{s.n, s.ci, s.h, s.w, s.co, s.kh, s.kw, s.stride, s.pad, dtype, add};
}
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = std::hash<int>()((int)k.dtype * 2 + (int)k.add);
    for (int64_t v : {k.n, k.ci, k.h, k.w, k.co, k.kh, k.kw, k.stride, k.pad})
      h = (h * 1000003u) ^ std::hash<int64_t>()(v);
    return h;
  }
};

// Throws unless the call can be handed to cuDNN: a supported dtype, positive sizes, an output of at least
// one pixel, and every dimension and tensor size within the int range of the legacy API.
inline void check_args(const char* what, const cpu::ConvShape& s, DType dtype) {
  MOCO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "Convolutions::", what, ": dtype ", dtype_name(dtype),
             " is not supported (expected f32 or bf16)");
  MOCO_CHECK(s.n > 0 && s.ci > 0 && s.h > 0 && s.w > 0 && s.co > 0 && s.kh > 0 && s.kw > 0 && s.stride > 0 &&
                 s.pad >= 0,
             "Convolutions::", what, ": ", shape_string(s, dtype),
             " has a non-positive size or stride, or a negative pad (expected sizes and stride >= 1, pad >= 0)");
  MOCO_CHECK(s.h + 2 * s.pad >= s.kh && s.w + 2 * s.pad >= s.kw, "Convolutions::", what, ": ",
             shape_string(s, dtype), " has a kernel larger than its padded input");
  const int64_t biggest = std::max({s.n * s.ci * s.h * s.w, s.n * s.co * s.ho() * s.wo(), s.co * s.ci * s.kh * s.kw});
  MOCO_CHECK(biggest <= INT_MAX, "Convolutions::", what, ": ", shape_string(s, dtype), " has a tensor of ", biggest,
             " elements; cuDNN's 4-d descriptors take int sizes (at most ", INT_MAX, ")");
}

// One pass's chosen algorithm (an int holding the pass's cuDNN algorithm enum) and what the search measured.
struct Plan {
  bool found = false;
  int algo = 0;
  float ms = 0;
  size_t bytes = 0;
  bool deterministic = true;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  // The graph API, when considered: the plan in use (empty: the legacy algorithm runs), both sides' times
  // as timed here (-1: not timed), and what the graph API offered when it is not used.
  GraphConvPlan graph;
  int64_t best_graph_engine = -1;
  float legacy_timed_ms = -1, graph_timed_ms = -1;
  std::string graph_note;
  bool given = false;  // taken from use_plans(), not searched
  // A stem's forward or filter gradient (space_to_depth_fits): whether it runs in the space-to-depth form
  // (then over that shape's entry, with this plan kept for the choice's record), and both forms' times as
  // timed here (-1: not timed).
  bool space_to_depth = false;
  float direct_timed_ms = -1, space_to_depth_timed_ms = -1;
  std::string stem_note;  // why auto mode did not time the space-to-depth form
};

// cuDNN's view of one shape: x (N, H, W, Ci), w (Co, kh, kw, Ci), y (N, Ho, Wo, Co), and one convolution
// descriptor per pass, because each carries the math type of the algorithm chosen for that pass.
struct Entry {
  cpu::ConvShape shape{};
  DType dtype = DType::F32;
  bool add = false;  // backward data adds into dx (only backward_data(..., add) calls use such an entry)
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv[kPasses] = {nullptr, nullptr, nullptr};
  Plan plan[kPasses];

  Entry() = default;
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;
  ~Entry() {  // destroy calls cannot usefully fail; a destructor must not throw
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    for (auto c : conv)
      if (c) cudnnDestroyConvolutionDescriptor(c);
  }
};

// A temporary device buffer for one search or timing, freed when it is over.
struct SearchScratch {
  void* p = nullptr;
  // Allocates `bytes`; false (the failure cleared: it is not sticky) when the device has no room.
  bool take(size_t bytes) {
    if (cudaMalloc(&p, bytes) == cudaSuccess) return true;
    p = nullptr;
    cudaGetLastError();
    return false;
  }
  // Frees it once the work queued on `stream`, which may still use it, is done.
  void release(cudaStream_t stream) {
    if (!p) return;
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
    MOCO_CUDA_CHECK(cudaFree(p));
    p = nullptr;
  }
  ~SearchScratch() {
    if (!p) return;
    // unwinding past a search or a timing run whose kernels may still be queued on it: wait for the device
    // first (cudaFree is not documented to), unchecked, as a destructor must not throw
    cudaDeviceSynchronize();
    cudaFree(p);
  }
};

}  // namespace moco::cuda::conv_detail

namespace moco::cuda {

struct Convolutions::Impl {
  using Entry = conv_detail::Entry;
  using Key = conv_detail::Key;
  using KeyHash = conv_detail::KeyHash;
  static constexpr int kPasses = conv_detail::kPasses;
  cudaStream_t stream = nullptr;
  cudnnHandle_t handle = nullptr;
  void* workspace = nullptr;  // (workspace_bytes) bytes, shared by every plan
  size_t workspace_bytes = 0;
  // While set, grow_workspace leaves the workspace as it is: auto mode searches the stem's stride-1 form
  // before it knows whether it keeps that form, and grows for it only if it does (choose_stem_form).
  bool defer_growth = false;
  std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> entries;
  std::vector<const Entry*> order;  // first-seen order, so describe() is stable
  std::function<void()> host_wait;  // set_host_wait; empty: cudaStreamSynchronize

  void wait_for_stream() {
    if (host_wait)
      host_wait();
    else
      MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    // queued convolutions may still use the plans and the workspace; unchecked: a destructor must not throw
    cudaStreamSynchronize(stream);
    entries.clear();
    if (workspace) cudaFree(workspace);
    if (handle) cudnnDestroy(handle);
  }

  Entry& entry(const cpu::ConvShape& s, DType dtype, bool add = false);
  cudnnStatus_t workspace_for(const Entry& e, int pass, int algo, size_t* bytes) const;
  size_t largest_workspace(const Entry& e, int pass) const;
  bool use_given_plan(Entry& e, int pass, bool frozen);
  // Drops the pass's plan (a later call searches again) and puts back the descriptor's first math type.
  void forget(Entry& e, int pass);
  void find(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  void consider_graph(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  // The adding backward data's graph plan stays only if it adds into dx rather than writing over it, checked
  // on this first call (convolution_adding_check.cpp); else the legacy algorithm runs the pass, with a note.
  // dx holds the sum so far, also in `kept` ((bytes) bytes, on the device or the host); dx holds it again when
  // this returns.
  void keep_graph_plan_if_it_adds(Entry& e, const void* dy, const void* w, void* dx, const void* kept,
                                  bool kept_on_device, size_t bytes);
  bool graph_plan_adds(const Entry& e, const void* dy, const void* w, void* dx, const void* kept, bool kept_on_device,
                       size_t bytes);
  // Grows the workspace to `bytes` (a frozen one throws instead), unless defer_growth is set.
  void grow_workspace(size_t bytes, bool frozen, const Entry& e, int pass);
  // Queues the pass with the legacy algorithm, or with the graph plan when one is in use and the pointers
  // are aligned for it; `ws` holds the workspace that run needs (run: the persistent one unless given).
  void run_legacy(const Entry& e, int pass, const void* in0, const void* in1, void* out, void* ws, size_t ws_bytes);
  void run(const Entry& e, int pass, const void* in0, const void* in1, void* out, void* ws = nullptr,
           size_t ws_bytes = 0);
  // A forward or filter-gradient call: the plan and the stem's form chosen on the first one, then the run.
  void search_and_run(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  // The mean time of kTimedRuns launches on the stream after one untimed one (first-use costs stay out).
  float time_ms(const std::function<void()>& launch);

  // The stem's space-to-depth form (convolution_stem.cpp), for a forward or filter-gradient pass whose direct
  // plan was just found: decides the form (as given, as the mode says, or by timing both on the caller's
  // buffers), and for that form finds the space-to-depth shape's plan and grows the workspace.
  void choose_stem_form(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  // Queues the pass in the space-to-depth form: the transforms into the workspace (or into `base`, a buffer of
  // space_to_depth_bytes), then the stride-1 plan.
  void run_space_to_depth(const Entry& e, int pass, const void* in0, const void* in1, void* out,
                          void* base = nullptr);
  // The space-to-depth shape's entry with the pass's plan found (searched on scratch copies the first time).
  Entry& prepare_space_to_depth(const Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  // The space-to-depth shape's entry of a prepared stem entry, and the bytes the form runs in: that plan's own
  // workspace, the transformed input and filter.
  const Entry& space_to_depth_entry(const Entry& e) const;
  size_t space_to_depth_bytes(const Entry& e, int pass) const;
  ConvApi api = ConvApi::kLegacy;
  StemForm stem = StemForm::kDirect;
  // Plans given back by use_plans(), by shape and pass: used instead of a search.
  struct Given {
    int algo;
    cudnnMathType_t math;
    bool deterministic;
    int64_t engine;  // -1: the legacy algorithm alone
    bool space_to_depth;  // the stem's form (a trailing space_to_depth on the line)
  };
  std::unordered_map<Key, std::array<std::optional<Given>, kPasses>, KeyHash> given;
};

}  // namespace moco::cuda
