// Convolutions through cuDNN's legacy convolution API or its graph API (see convolution.h for the contract).
//
// Per distinct (ConvShape, dtype) an Entry holds cuDNN's descriptors and, per pass, the plan: the algorithm
// picked from cuDNN's measured candidates (cudnnFind*AlgorithmEx, run once, on the caller's buffers, the
// first time that pass is called for that shape; the output it scribbles over is then computed for real).
// The search may borrow a temporary workspace as large as the greediest candidate (up to kMaxAlgoWorkspace),
// frozen or not, so the choice is the same either way; the persistent workspace only grows to what the
// chosen algorithms need, and freeze() turns that growth into an error.
//
// Unless the API is legacy, the same first call then builds the graph API's qualifying plans for the pass
// (conv_graph.h) and times them and the legacy algorithm alike, with events around kTimedRuns runs each on
// the caller's buffers after one untimed run, and keeps the graph plan the mode asks for.
#include "convolution.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "conv_graph.h"

namespace moco::cuda {

namespace {

// No algorithm asking for more workspace than this is considered, so a greedy one (FFT variants can ask
// for gigabytes) cannot take the memory the activations need.
constexpr size_t kMaxAlgoWorkspace = size_t(512) << 20;

enum Pass { kForward = kConvForward, kBackwardData = kConvBackwardData, kBackwardFilter = kConvBackwardFilter,
            kPasses = kConvPasses };

// Graph-API plans timed per pass (heuristics' best first), and the runs each is timed over.
constexpr int kMaxGraphPlans = 4;
constexpr int kTimedRuns = 3;
const char* pass_name(int pass) {
  static const char* const names[kPasses] = {"forward", "backward_data", "backward_filter"};
  return names[pass];
}

const char* fwd_algo_name(int a) {
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
const char* bwd_data_algo_name(int a) {
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
const char* bwd_filter_algo_name(int a) {
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
const char* algo_name(int pass, int a) {
  return pass == kForward ? fwd_algo_name(a) : pass == kBackwardData ? bwd_data_algo_name(a) : bwd_filter_algo_name(a);
}

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default math";
    case CUDNN_TENSOR_OP_MATH: return "tensor ops";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor ops with conversion";
    case CUDNN_FMA_MATH: return "fma";
  }
  return "?";
}

std::string shape_string(const cpu::ConvShape& s, DType dtype) {
  char buf[320];
  std::snprintf(buf, sizeof buf, "conv N=%lld Ci=%lld %lldx%lld -> Co=%lld k=%lldx%lld stride=%lld pad=%lld %s",
                (long long)s.n, (long long)s.ci, (long long)s.h, (long long)s.w, (long long)s.co, (long long)s.kh,
                (long long)s.kw, (long long)s.stride, (long long)s.pad, dtype_name(dtype));
  return buf;
}

std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
  return buf;
}

// The cache key: the shape's fields and the dtype.
struct Key {
  int64_t n, ci, h, w, co, kh, kw, stride, pad;
  DType dtype;
  bool operator==(const Key& o) const {
    return n == o.n && ci == o.ci && h == o.h && w == o.w && co == o.co && kh == o.kh && kw == o.kw &&
           stride == o.stride && pad == o.pad && dtype == o.dtype;
  }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = std::hash<int>()((int)k.dtype);
    for (int64_t v : {k.n, k.ci, k.h, k.w, k.co, k.kh, k.kw, k.stride, k.pad})
      h = (h * 1000003u) ^ std::hash<int64_t>()(v);
    return h;
  }
};

// Throws unless the call can be handed to cuDNN: a supported dtype, positive sizes, an output of at least
// one pixel, and every dimension and tensor size within the int range of the legacy API.
void check_args(const char* what, const cpu::ConvShape& s, DType dtype) {
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
};

// cuDNN's view of one shape: x (N, H, W, Ci), w (Co, kh, kw, Ci), y (N, Ho, Wo, Co), and one convolution
// descriptor per pass, because each carries the math type of the algorithm chosen for that pass.
struct Entry {
  cpu::ConvShape shape{};
  DType dtype = DType::F32;
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

// From cuDNN's measured candidates (the three passes' perf structs have the same fields): the fastest
// deterministic one that succeeded, fits `limit` and, in fp32, does not use tensor cores (TF32); when no
// deterministic one qualifies, the fastest of the rest. -1 when none qualifies.
template <class Perf>
int choose(const Perf* perf, int count, DType dtype, size_t limit) {
  int best = -1, best_det = -1;
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) continue;
    const bool tensor_ops = p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (dtype == DType::F32 && tensor_ops) continue;
    if (best < 0 || p.time < perf[best].time) best = i;
    if (p.determinism == CUDNN_DETERMINISTIC && (best_det < 0 || p.time < perf[best_det].time)) best_det = i;
  }
  return best_det >= 0 ? best_det : best;
}

// For an error message: every candidate with its status, workspace and math type.
template <class Perf>
std::string candidates(int pass, const Perf* perf, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) {
    out += std::string("\n  ") + algo_name(pass, (int)perf[i].algo) + ": " + cudnnGetErrorString(perf[i].status) +
           ", workspace " + mib(perf[i].memory) + ", " + math_name(perf[i].mathType) +
           (perf[i].determinism == CUDNN_DETERMINISTIC ? ", deterministic" : ", non-deterministic");
  }
  return out.empty() ? std::string(" (cuDNN returned no candidates)") : out;
}

// A temporary device buffer for one search, freed when the search is over.
struct SearchScratch {
  void* p = nullptr;
  ~SearchScratch() {
    if (p) cudaFree(p);
  }
};

}  // namespace

struct Convolutions::Impl {
  cudaStream_t stream = nullptr;
  cudnnHandle_t handle = nullptr;
  void* workspace = nullptr;  // (workspace_bytes) bytes, shared by every plan
  size_t workspace_bytes = 0;
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
    entries.clear();
    if (workspace) {
      cudaStreamSynchronize(stream);  // queued convolutions may still use it; unchecked: a destructor must not throw
      cudaFree(workspace);
    }
    if (handle) cudnnDestroy(handle);
  }

  Entry& entry(const cpu::ConvShape& s, DType dtype);
  cudnnStatus_t workspace_for(const Entry& e, int pass, int algo, size_t* bytes) const;
  size_t largest_workspace(const Entry& e, int pass) const;
  bool use_given_plan(Entry& e, int pass, bool frozen);
  void find(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  void consider_graph(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen);
  void grow_workspace(size_t bytes, bool frozen, const Entry& e, int pass);
  // Queues the pass with the legacy algorithm, or with the graph plan when one is in use and the pointers
  // are aligned for it; `ws` holds the workspace that run needs.
  void run_legacy(const Entry& e, int pass, const void* in0, const void* in1, void* out, void* ws, size_t ws_bytes);
  void run(const Entry& e, int pass, const void* in0, const void* in1, void* out);
  ConvApi api = ConvApi::kLegacy;
  // Plans given back by use_plans(), by shape and pass: used instead of a search.
  struct Given {
    int algo;
    cudnnMathType_t math;
    int64_t engine;  // -1: the legacy algorithm alone
  };
  std::unordered_map<Key, std::array<std::optional<Given>, kPasses>, KeyHash> given;
};

Entry& Convolutions::Impl::entry(const cpu::ConvShape& s, DType dtype) {
  const Key key{s.n, s.ci, s.h, s.w, s.co, s.kh, s.kw, s.stride, s.pad, dtype};
  auto it = entries.find(key);
  if (it != entries.end()) return *it->second;

  auto e = std::make_unique<Entry>();  // owns each descriptor as soon as it exists, so a throw leaks nothing
  e->shape = s;
  e->dtype = dtype;
  const cudnnDataType_t dt = dtype == DType::F32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16;
  const int n = (int)s.n, ci = (int)s.ci, h = (int)s.h, w = (int)s.w, co = (int)s.co, kh = (int)s.kh,
            kw = (int)s.kw, stride = (int)s.stride, pad = (int)s.pad, ho = (int)s.ho(), wo = (int)s.wo();
  MOCO_CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x));
  MOCO_CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NHWC, dt, n, ci, h, w));
  // NHWC filter format: (K, R, S, C) in memory, i.e. (Co, kh, kw, Ci)
  MOCO_CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w));
  MOCO_CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, dt, CUDNN_TENSOR_NHWC, co, ci, kh, kw));
  // fp32 stays on FMA kernels (cuDNN would otherwise use TF32 tensor cores); bf16 may use tensor cores.
  // Accumulation is fp32 in both (compute type FLOAT).
  const cudnnMathType_t math = dtype == DType::F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
  for (auto& c : e->conv) {
    MOCO_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
    MOCO_CUDNN_CHECK(
        cudnnSetConvolution2dDescriptor(c, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    MOCO_CUDNN_CHECK(cudnnSetConvolutionMathType(c, math));
  }
  int on = 0, oc = 0, oh = 0, ow = 0;
  MOCO_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(e->conv[kForward], e->x, e->w, &on, &oc, &oh, &ow));
  MOCO_CHECK(on == n && oc == co && oh == ho && ow == wo, "Convolutions: cuDNN sizes the output of ",
             shape_string(s, dtype), " as (", on, ", ", oc, ", ", oh, ", ", ow, "), expected (", n, ", ", co, ", ",
             ho, ", ", wo, ")");
  MOCO_CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y));
  MOCO_CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NHWC, dt, n, co, ho, wo));

  Entry& ref = *e;
  entries.emplace(key, std::move(e));
  order.push_back(&ref);
  return ref;
}

// The most workspace any algorithm of the pass asks for, among those within kMaxAlgoWorkspace. Algorithms
// that do not support the shape answer an error status here and are simply not counted.
cudnnStatus_t Convolutions::Impl::workspace_for(const Entry& e, int pass, int algo, size_t* bytes) const {
  if (pass == kForward)
    return cudnnGetConvolutionForwardWorkspaceSize(handle, e.x, e.w, e.conv[pass], e.y, (cudnnConvolutionFwdAlgo_t)algo,
                                                   bytes);
  if (pass == kBackwardData)
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, e.w, e.y, e.conv[pass], e.x,
                                                        (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
  return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, e.x, e.y, e.conv[pass], e.w,
                                                        (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
}

size_t Convolutions::Impl::largest_workspace(const Entry& e, int pass) const {
  const int count = pass == kForward        ? (int)CUDNN_CONVOLUTION_FWD_ALGO_COUNT
                    : pass == kBackwardData ? (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                                            : (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  size_t most = 0;
  for (int a = 0; a < count; ++a) {
    size_t bytes = 0;
    if (workspace_for(e, pass, a, &bytes) == CUDNN_STATUS_SUCCESS && bytes <= kMaxAlgoWorkspace)
      most = std::max(most, bytes);
  }
  return most;
}

void Convolutions::Impl::grow_workspace(size_t bytes, bool frozen, const Entry& e, int pass) {
  if (bytes <= workspace_bytes) return;
  MOCO_CHECK(!frozen, "Convolutions: the workspace is frozen at ", workspace_bytes, " bytes, but ", pass_name(pass),
             " of ", shape_string(e.shape, e.dtype), " needs ", bytes, " bytes (algorithm ",
             algo_name(pass, e.plan[pass].algo), "); run this shape during the warm-up, before freeze()");
  wait_for_stream();  // work already queued may still read the old buffer (waited first: it may throw)
  // the new block first: if it cannot be had, the old one stays and the plans cached so far still work
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; clear it so later checks are not confused
    ::moco::fail("cudaMalloc(", bytes, " bytes) for the convolution workspace (", pass_name(pass), " of ",
                 shape_string(e.shape, e.dtype), ") failed: ", cudaGetErrorString(err));
  }
  if (workspace) MOCO_CUDA_CHECK(cudaFree(workspace));
  workspace = p;
  workspace_bytes = bytes;
}

// Measures the pass's algorithms on the caller's buffers (in0, in1 read; out overwritten with arbitrary
// values) and records the chosen plan, growing the workspace for it (or throwing when frozen).
void Convolutions::Impl::find(Entry& e, int pass, const void* in0, const void* in1, void* out, bool frozen) {
  if (use_given_plan(e, pass, frozen)) return;
  // cudnnFind* waits for the device; wait for the queued work first, under the caller's bound (set_host_wait).
  wait_for_stream();
  // The search's workspace: the persistent one, or a temporary one large enough for every candidate when
  // that is bigger, so the choice does not depend on what earlier shapes happened to allocate. If the
  // temporary allocation fails, the search runs within the persistent workspace (candidates that need more
  // report CUDNN_STATUS_ALLOC_FAILED and are skipped).
  void* ws = workspace;
  size_t ws_bytes = workspace_bytes;
  SearchScratch scratch;
  const size_t want = largest_workspace(e, pass);
  if (want > workspace_bytes) {
    if (cudaMalloc(&scratch.p, want) == cudaSuccess) {
      ws = scratch.p;
      ws_bytes = want;
    } else {
      scratch.p = nullptr;
      cudaGetLastError();
    }
  }

  int max_count = 0, returned = 0, pick = -1;
  Plan plan;
  auto take = [&](const auto& perf) {
    pick = choose(perf.data(), returned, e.dtype, std::min(ws_bytes, kMaxAlgoWorkspace));
    if (pick < 0)
      ::moco::fail("Convolutions: no usable ", pass_name(pass), " algorithm for ", shape_string(e.shape, e.dtype),
                   " (search workspace ", ws_bytes, " bytes); cuDNN's candidates:",
                   candidates(pass, perf.data(), returned));
    const auto& p = perf[(size_t)pick];
    plan.algo = (int)p.algo;
    plan.ms = p.time;
    plan.bytes = p.memory;
    plan.deterministic = p.determinism == CUDNN_DETERMINISTIC;
    plan.math = p.mathType;
  };
  if (pass == kForward) {
    MOCO_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf((size_t)std::max(max_count, 1));
    MOCO_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, e.x, in0, e.w, in1, e.conv[pass], e.y, out,
                                                            (int)perf.size(), &returned, perf.data(), ws, ws_bytes));
    take(perf);
  } else if (pass == kBackwardData) {
    MOCO_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf((size_t)std::max(max_count, 1));
    MOCO_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, e.w, in1, e.y, in0, e.conv[pass], e.x, out,
                                                                 (int)perf.size(), &returned, perf.data(), ws,
                                                                 ws_bytes));
    take(perf);
  } else {
    MOCO_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf((size_t)std::max(max_count, 1));
    MOCO_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, e.x, in0, e.y, in1, e.conv[pass], e.w,
                                                                   out, (int)perf.size(), &returned, perf.data(), ws,
                                                                   ws_bytes));
    take(perf);
  }
  if (scratch.p) {  // the search's kernels must be done before its buffer goes
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
    MOCO_CUDA_CHECK(cudaFree(scratch.p));
    scratch.p = nullptr;
  }

  // bf16 runs with the math type the algorithm was measured with (cuDNN picks the kernel from algorithm
  // and math type together); fp32 keeps FMA, which excludes TF32 whatever the candidate reported.
  if (e.dtype == DType::BF16) MOCO_CUDNN_CHECK(cudnnSetConvolutionMathType(e.conv[pass], plan.math));
  // The workspace the algorithm needs with the descriptor as it now is: the search measured it under the
  // math type cuDNN tried, and the larger of the two is safe either way. A refused query keeps the measured
  // size (the pair was just run by the search).
  size_t needed = 0;
  const cudnnStatus_t asked = workspace_for(e, pass, plan.algo, &needed);
  if (asked == CUDNN_STATUS_SUCCESS) plan.bytes = std::max(plan.bytes, needed);
  e.plan[pass] = plan;  // recorded before the growth so a frozen error can name the algorithm
  try {
    grow_workspace(plan.bytes, frozen, e, pass);
  } catch (...) {
    e.plan[pass] = Plan{};  // not found: a later call searches again (and, if still frozen, throws again)
    throw;
  }
  e.plan[pass].found = true;
  if (api != ConvApi::kLegacy) consider_graph(e, pass, in0, in1, out, frozen);
}

void Convolutions::Impl::run_legacy(const Entry& e, int pass, const void* in0, const void* in1, void* out, void* ws,
                                    size_t ws_bytes) {
  const float one = 1.f, zero = 0.f;  // float scalars for both fp32 and bf16 data; beta 0: out is not read
  const int algo = e.plan[pass].algo;
  if (pass == kForward)
    MOCO_CUDNN_CHECK(cudnnConvolutionForward(handle, &one, e.x, in0, e.w, in1, e.conv[pass],
                                             (cudnnConvolutionFwdAlgo_t)algo, ws, ws_bytes, &zero, e.y, out));
  else if (pass == kBackwardData)
    MOCO_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &one, e.w, in1, e.y, in0, e.conv[pass],
                                                  (cudnnConvolutionBwdDataAlgo_t)algo, ws, ws_bytes, &zero, e.x,
                                                  out));
  else
    MOCO_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &one, e.x, in0, e.y, in1, e.conv[pass],
                                                    (cudnnConvolutionBwdFilterAlgo_t)algo, ws, ws_bytes, &zero,
                                                    e.w, out));
}

void Convolutions::Impl::run(const Entry& e, int pass, const void* in0, const void* in1, void* out) {
  const Plan& plan = e.plan[pass];
  if (plan.graph.plan && graph_conv_aligned(in0, in1, out))
    run_graph_conv(handle, plan.graph, pass, in0, in1, out, workspace);
  else
    run_legacy(e, pass, in0, in1, out, workspace, workspace_bytes);
}

// Builds the graph API's qualifying plans for the pass and times them and the legacy algorithm found just
// before, each the same way, on the caller's buffers (their output is overwritten; the caller computes it
// again). Records the times and, as the mode asks, the graph plan to use. In auto mode anything the graph
// API refuses only leaves a note; in graph mode it is an error.
void Convolutions::Impl::consider_graph(Entry& e, int pass, const void* in0, const void* in1, void* out,
                                        bool frozen) {
  Plan& plan = e.plan[pass];
  const bool required = api == ConvApi::kGraph;
  if (!graph_conv_aligned(in0, in1, out)) {
    MOCO_CHECK(!required, "Convolutions: MOCO_CONV_API=graph, but the first ", pass_name(pass), " call of ",
               shape_string(e.shape, e.dtype), " has a pointer that is not ", kGraphConvAlignment,
               "-byte aligned, so no graph plan can be timed on it");
    plan.graph_note = "not timed: unaligned buffers";
    return;
  }
  // A frozen workspace cannot grow, so only plans that fit it are candidates.
  const size_t limit = frozen ? std::min(workspace_bytes, kMaxAlgoWorkspace) : kMaxAlgoWorkspace;
  GraphConvCandidates found;
  try {
    found = graph_conv_candidates(handle, e.shape, e.dtype, pass, limit, kMaxGraphPlans);
  } catch (const Error& err) {
    if (required) throw;
    plan.graph_note = std::string("graph API refused: ") + err.what();
    return;
  }
  MOCO_CHECK(!found.plans.empty() || !required, "Convolutions: MOCO_CONV_API=graph, but no cuDNN graph-API engine "
             "qualifies for ", pass_name(pass), " of ", shape_string(e.shape, e.dtype), ":", found.dropped);
  if (found.plans.empty()) {
    plan.graph_note = "no graph engine qualified";
    return;
  }

  size_t most = workspace_bytes;  // the timing runs' workspace: the persistent one, or scratch when larger
  for (const GraphConvPlan& g : found.plans) most = std::max(most, g.workspace);
  SearchScratch scratch;
  void* ws = workspace;
  if (most > workspace_bytes) {
    if (cudaMalloc(&scratch.p, most) != cudaSuccess) {
      scratch.p = nullptr;
      cudaGetLastError();  // not sticky; cleared so later checks are not confused
      MOCO_CHECK(!required, "Convolutions: MOCO_CONV_API=graph, but the ", most, "-byte workspace to time the graph "
                 "plans of ", pass_name(pass), " of ", shape_string(e.shape, e.dtype), " cannot be allocated");
      plan.graph_note = "not timed: no memory for the graph plans' workspace";
      return;
    }
    ws = scratch.p;
  }
  cudaEvent_t start = nullptr, stop = nullptr;
  MOCO_CUDA_CHECK(cudaEventCreate(&start));
  MOCO_CUDA_CHECK(cudaEventCreate(&stop));
  struct Events {
    cudaEvent_t a, b;
    ~Events() {  // unchecked: a destructor must not throw
      cudaEventDestroy(a);
      cudaEventDestroy(b);
    }
  } events{start, stop};
  auto time_ms = [&](const std::function<void()>& launch) {
    launch();  // untimed: first-use costs stay out of the measurement
    MOCO_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < kTimedRuns; ++i) launch();
    MOCO_CUDA_CHECK(cudaEventRecord(stop, stream));
    wait_for_stream();
    float ms = 0;
    MOCO_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms / kTimedRuns;
  };
  // graph mode needs no legacy time, nor any time when only one plan qualifies
  if (!required) plan.legacy_timed_ms = time_ms([&] { run_legacy(e, pass, in0, in1, out, ws, most); });
  int best = 0;
  float best_ms = -1;
  if (!required || found.plans.size() > 1)
    for (size_t i = 0; i < found.plans.size(); ++i) {
      const GraphConvPlan& g = found.plans[i];
      const float ms = time_ms([&] { run_graph_conv(handle, g, pass, in0, in1, out, ws); });
      if (best_ms < 0 || ms < best_ms) best = (int)i, best_ms = ms;
    }
  if (scratch.p) {  // the timing runs must be done before their buffer goes
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
    MOCO_CUDA_CHECK(cudaFree(scratch.p));
    scratch.p = nullptr;
  }
  plan.best_graph_engine = found.plans[(size_t)best].engine;
  plan.graph_timed_ms = best_ms;
  const bool take = required || best_ms < plan.legacy_timed_ms * (1.0 - kGraphMargin);
  if (!take) return;
  grow_workspace(std::max(plan.bytes, found.plans[(size_t)best].workspace), frozen, e, pass);
  plan.graph = found.plans[(size_t)best];
}

// The plan use_plans() gave for this shape and pass, if any, installed without a search. A plan this
// machine cannot run (another cuDNN, another GPU: the algorithm or graph engine is refused here) is dropped
// with a note on stderr, and the pass is searched as usual.
bool Convolutions::Impl::use_given_plan(Entry& e, int pass, bool frozen) {
  const Key key{e.shape.n, e.shape.ci, e.shape.h, e.shape.w, e.shape.co, e.shape.kh, e.shape.kw, e.shape.stride,
                e.shape.pad, e.dtype};
  auto it = given.find(key);
  if (it == given.end() || !it->second[pass]) return false;
  const Given g = *it->second[pass];
  it->second[pass].reset();  // tried once: a refusal below falls back to the search for good
  auto refuse = [&](const std::string& why) {
    // the search starts from the math type the entry was made with
    if (e.dtype == DType::BF16) MOCO_CUDNN_CHECK(cudnnSetConvolutionMathType(e.conv[pass], CUDNN_TENSOR_OP_MATH));
    std::fprintf(stderr, "moco: the given cuDNN plan for %s of %s cannot be used here (%s); searching again\n",
                 pass_name(pass), shape_string(e.shape, e.dtype).c_str(), why.c_str());
    return false;
  };
  // fp32 keeps FMA math whatever the plan says (no TF32); bf16 runs the plan's math type
  if (e.dtype == DType::BF16) MOCO_CUDNN_CHECK(cudnnSetConvolutionMathType(e.conv[pass], g.math));
  Plan plan;
  plan.algo = g.algo;
  plan.math = e.dtype == DType::BF16 ? g.math : CUDNN_FMA_MATH;
  plan.given = true;
  if (const cudnnStatus_t st = workspace_for(e, pass, g.algo, &plan.bytes))
    return refuse("algorithm " + std::to_string(g.algo) + " (" + algo_name(pass, g.algo) + "): " +
                  cudnnGetErrorString(st));
  size_t bytes = plan.bytes;
  if (g.engine >= 0) {
    GraphConvCandidates found;
    try {
      found = graph_conv_candidates(handle, e.shape, e.dtype, pass, kMaxAlgoWorkspace, 1 << 20);
    } catch (const Error& err) {
      return refuse(err.what());
    }
    for (const GraphConvPlan& c : found.plans)
      if (c.engine == g.engine && !plan.graph.plan) plan.graph = c;
    if (!plan.graph.plan) return refuse("graph engine " + std::to_string(g.engine) + " is not offered");
    bytes = std::max(bytes, plan.graph.workspace);
  }
  e.plan[pass] = plan;
  try {
    grow_workspace(bytes, frozen, e, pass);
  } catch (...) {
    e.plan[pass] = Plan{};
    throw;
  }
  e.plan[pass].found = true;
  return true;
}

std::string Convolutions::plans() const {
  std::string out =
      "# cuDNN convolution plans: N Ci H W Co kh kw stride pad dtype pass legacy-algorithm math-type "
      "graph-engine (-1: none)\n";
  for (const Entry* e : impl_->order)
    for (int pass = 0; pass < kPasses; ++pass) {
      const Plan& p = e->plan[pass];
      if (!p.found) continue;
      const cpu::ConvShape& s = e->shape;
      char buf[256];
      std::snprintf(buf, sizeof buf, "%lld %lld %lld %lld %lld %lld %lld %lld %lld %s %s %d %d %lld\n",
                    (long long)s.n, (long long)s.ci, (long long)s.h, (long long)s.w, (long long)s.co,
                    (long long)s.kh, (long long)s.kw, (long long)s.stride, (long long)s.pad, dtype_name(e->dtype),
                    pass_name(pass), p.algo, (int)p.math, (long long)(p.graph.plan ? p.graph.engine : -1));
      out += buf;
    }
  return out;
}

void Convolutions::use_plans(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    long long v[9];
    std::string dtype, pass;
    int algo = -1, math = -1;
    long long engine = -2;
    for (long long& x : v) f >> x;
    f >> dtype >> pass >> algo >> math >> engine;
    std::string rest;
    const bool ok = !f.fail() && !(f >> rest) && (dtype == "f32" || dtype == "bf16") && algo >= 0 &&
                    (math == CUDNN_DEFAULT_MATH || math == CUDNN_TENSOR_OP_MATH ||
                     math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION || math == CUDNN_FMA_MATH) &&
                    engine >= -1;
    int p = -1;
    for (int i = 0; i < kPasses; ++i)
      if (pass == pass_name(i)) p = i;
    MOCO_CHECK(ok && p >= 0, "convolution plans, line ", number, ": '", line,
               "' is not 'N Ci H W Co kh kw stride pad f32|bf16 forward|backward_data|backward_filter algorithm "
               "math-type graph-engine'");
    const DType dt = dtype == "f32" ? DType::F32 : DType::BF16;
    const cpu::ConvShape s{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
    check_args("use_plans", s, dt);
    const Key key{s.n, s.ci, s.h, s.w, s.co, s.kh, s.kw, s.stride, s.pad, dt};
    impl_->given[key][p] = Impl::Given{algo, (cudnnMathType_t)math, engine};
  }
}

ConvApi conv_api_from_env() {
  const char* v = std::getenv("MOCO_CONV_API");
  if (!v || !*v || std::strcmp(v, "legacy") == 0) return ConvApi::kLegacy;
  if (std::strcmp(v, "graph") == 0) return ConvApi::kGraph;
  if (std::strcmp(v, "auto") == 0) return ConvApi::kAuto;
  ::moco::fail("MOCO_CONV_API=", v, " is not a cuDNN API choice (expected legacy, graph or auto)");
}

const char* conv_api_name(ConvApi api) {
  return api == ConvApi::kGraph ? "graph" : api == ConvApi::kAuto ? "auto" : "legacy";
}

Convolutions::Convolutions(cudaStream_t stream, ConvApi api) : impl_(std::make_unique<Impl>()), api_(api) {
  impl_->api = api;
  impl_->stream = stream;
  MOCO_CUDNN_CHECK(cudnnCreate(&impl_->handle));
  MOCO_CUDNN_CHECK(cudnnSetStream(impl_->handle, stream));
}

Convolutions::~Convolutions() = default;

void Convolutions::set_host_wait(std::function<void()> wait) { impl_->host_wait = std::move(wait); }

void Convolutions::forward(const cpu::ConvShape& s, DType dtype, const void* x, const void* w, void* y) {
  check_args("forward", s, dtype);
  MOCO_CHECK(x && w && y, "Convolutions::forward: null pointer (x=", x, ", w=", w, ", y=", y, ") for ",
             shape_string(s, dtype));
  Entry& e = impl_->entry(s, dtype);
  if (!e.plan[kForward].found) impl_->find(e, kForward, x, w, y, frozen_);
  impl_->run(e, kForward, x, w, y);
}

void Convolutions::backward_data(const cpu::ConvShape& s, DType dtype, const void* dy, const void* w, void* dx) {
  check_args("backward_data", s, dtype);
  MOCO_CHECK(dy && w && dx, "Convolutions::backward_data: null pointer (dy=", dy, ", w=", w, ", dx=", dx, ") for ",
             shape_string(s, dtype));
  Entry& e = impl_->entry(s, dtype);
  if (!e.plan[kBackwardData].found) impl_->find(e, kBackwardData, dy, w, dx, frozen_);
  impl_->run(e, kBackwardData, dy, w, dx);
}

void Convolutions::backward_filter(const cpu::ConvShape& s, DType dtype, const void* x, const void* dy, void* dw) {
  check_args("backward_filter", s, dtype);
  MOCO_CHECK(x && dy && dw, "Convolutions::backward_filter: null pointer (x=", x, ", dy=", dy, ", dw=", dw, ") for ",
             shape_string(s, dtype));
  Entry& e = impl_->entry(s, dtype);
  if (!e.plan[kBackwardFilter].found) impl_->find(e, kBackwardFilter, x, dy, dw, frozen_);
  impl_->run(e, kBackwardFilter, x, dy, dw);
}

size_t Convolutions::workspace_bytes() const { return impl_->workspace_bytes; }

int Convolutions::cached_shapes() const {
  int n = 0;  // shapes with at least one chosen plan (a search that ended in an error leaves none)
  for (const Entry* e : impl_->order)
    if (e->plan[kForward].found || e->plan[kBackwardData].found || e->plan[kBackwardFilter].found) ++n;
  return n;
}

std::string Convolutions::describe() const {
  std::string out;
  for (const Entry* e : impl_->order)
    for (int pass = 0; pass < kPasses; ++pass) {
      const Plan& p = e->plan[pass];
      if (!p.found) continue;
      char buf[512];
      if (p.graph.plan && p.given)
        std::snprintf(buf, sizeof buf, " %s: graph engine %lld, as given, workspace %s (legacy: %s)\n",
                      pass_name(pass), (long long)p.graph.engine, mib(std::max(p.bytes, p.graph.workspace)).c_str(),
                      algo_name(pass, p.algo));
      else if (p.graph.plan && p.legacy_timed_ms >= 0)
        std::snprintf(buf, sizeof buf, " %s: graph engine %lld, %.3f ms timed against %.3f ms for %s (%s), workspace %s\n",
                      pass_name(pass), (long long)p.graph.engine, (double)p.graph_timed_ms,
                      (double)p.legacy_timed_ms, algo_name(pass, p.algo), math_name(p.math),
                      mib(std::max(p.bytes, p.graph.workspace)).c_str());
      else if (p.graph.plan)  // graph mode: the legacy algorithm is kept for unaligned calls, untimed
        std::snprintf(buf, sizeof buf, " %s: graph engine %lld, %s, workspace %s (legacy: %s)\n", pass_name(pass),
                      (long long)p.graph.engine, p.graph_timed_ms >= 0 ? "fastest timed" : "the one qualifying",
                      mib(std::max(p.bytes, p.graph.workspace)).c_str(), algo_name(pass, p.algo));
      else if (p.given)
        std::snprintf(buf, sizeof buf, " %s: %s (%s), as given, workspace %s", pass_name(pass),
                      algo_name(pass, p.algo), math_name(p.math), mib(p.bytes).c_str());
      else
        std::snprintf(buf, sizeof buf, " %s: %s (%s), %.3f ms measured, workspace %s%s", pass_name(pass),
                      algo_name(pass, p.algo), math_name(p.math), (double)p.ms, mib(p.bytes).c_str(),
                      p.deterministic ? "" : ", NON-DETERMINISTIC (no deterministic algorithm qualified)");
      std::string line = shape_string(e->shape, e->dtype) + buf;
      if (!p.graph.plan && !p.given && impl_->api != ConvApi::kLegacy) {
        char note[256];
        if (p.best_graph_engine >= 0)
          std::snprintf(note, sizeof note, "; timed %.3f ms against graph engine %lld at %.3f ms", (double)p.legacy_timed_ms,
                        (long long)p.best_graph_engine, (double)p.graph_timed_ms);
        else
          std::snprintf(note, sizeof note, "; %s", p.graph_note.c_str());
        line += note;
      }
      if (!p.graph.plan) line += "\n";
      out += line;
    }
  return out;
}

}  // namespace moco::cuda
