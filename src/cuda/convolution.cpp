// Convolutions through cuDNN's legacy convolution API or its graph API (see convolution.h for the contract).
//
// Per distinct (ConvShape, dtype) an Entry holds cuDNN's descriptors and, per pass, the plan: the algorithm
// picked from cuDNN's measured candidates (cudnnFind*AlgorithmEx, run once, on the caller's buffers, the
// first time that pass is called for that shape; the output it scribbles over is then computed for real).
// The search may borrow a temporary workspace as large as the greediest candidate (up to kMaxAlgoWorkspace),
// frozen or not, so the choice is the same either way; the persistent workspace only grows to what the
// chosen algorithms need, and freeze() turns that growth into an error.
//
// Unless the API is legacy, the same first call then times the graph API against that algorithm
// (convolution_graph_choice.cpp); a plan given back by use_plans() replaces the search
// (convolution_plans.cpp). The types all three share are in convolution_impl.h.
#include "convolution.h"
#include "convolution_impl.h"

#include <cstdlib>
#include <cstring>
#include <unordered_set>

namespace moco::cuda {

using namespace conv_detail;

namespace {

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

// For describe(): how a stem's pass runs, when it has a space-to-depth form that was considered.
std::string stem_form_note(const Plan& p) {
  char buf[192];
  if (p.space_to_depth_timed_ms >= 0) {
    std::snprintf(buf, sizeof buf, "; stem form: %s (space_to_depth %.3f ms timed against %.3f ms direct)",
                  p.space_to_depth ? "space_to_depth" : "direct", (double)p.space_to_depth_timed_ms,
                  (double)p.direct_timed_ms);
    return buf;
  }
  if (p.space_to_depth) return p.given ? "; stem form: space_to_depth, as given" : "; stem form: space_to_depth";
  if (!p.stem_note.empty()) return "; stem form: direct, " + p.stem_note;
  return "";
}

}  // namespace

Entry& Convolutions::Impl::entry(const cpu::ConvShape& s, DType dtype, bool add) {
  const Key key = key_of(s, dtype, add);
  auto it = entries.find(key);
  if (it != entries.end()) return *it->second;

  auto e = std::make_unique<Entry>();  // owns each descriptor as soon as it exists, so a throw leaks nothing
  e->shape = s;
  e->dtype = dtype;
  e->add = add;
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
  if (bytes <= workspace_bytes || defer_growth) return;
  MOCO_CHECK(!frozen, "Convolutions: the workspace is frozen at ", workspace_bytes, " bytes, but ", pass_name(pass),
             " of ", shape_string(e.shape, e.dtype, e.add), " needs ", bytes, " bytes (algorithm ",
             algo_name(pass, e.plan[pass].algo), "); run this shape during the warm-up, before freeze()");
  wait_for_stream();  // work already queued may still read the old buffer (waited first: it may throw)
  // the new block first: if it cannot be had, the old one stays and the plans cached so far still work
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; clear it so later checks are not confused
    ::moco::fail("cudaMalloc(", bytes, " bytes) for the convolution workspace (", pass_name(pass), " of ",
                 shape_string(e.shape, e.dtype, e.add), ") failed: ", cudaGetErrorString(err));
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
  if (want > workspace_bytes && scratch.take(want)) {
    ws = scratch.p;
    ws_bytes = want;
  }

  int max_count = 0, returned = 0, pick = -1;
  Plan plan;
  auto take = [&](const auto& perf) {
    pick = choose(perf.data(), returned, e.dtype, std::min(ws_bytes, kMaxAlgoWorkspace));
    if (pick < 0)
      ::moco::fail("Convolutions: no usable ", pass_name(pass), " algorithm for ", shape_string(e.shape, e.dtype, e.add),
                   " (search workspace ", ws_bytes, " bytes); cuDNN's candidates:",
                   candidates(pass, perf.data(), returned));
    const auto& p = perf[(size_t)pick];
    plan.algo = (int)p.algo;
    plan.ms = p.time;
    plan.bytes = p.memory;
    plan.deterministic = p.determinism == CUDNN_DETERMINISTIC;
    plan.math = e.dtype == DType::F32 ? CUDNN_FMA_MATH : p.mathType;  // fp32 runs FMA whatever was reported
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
  scratch.release(stream);  // after the search's kernels

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
    e.plan[pass].found = true;
    if (api != ConvApi::kLegacy) consider_graph(e, pass, in0, in1, out, frozen);
  } catch (...) {
    // not found: a later call searches again (and, if the cause stays, throws again), from the descriptor's
    // first math type; in graph mode no legacy plan is left to run quietly in the graph plan's place
    forget(e, pass);
    throw;
  }
}

void Convolutions::Impl::forget(Entry& e, int pass) {
  e.plan[pass] = Plan{};
  if (e.dtype == DType::BF16) cudnnSetConvolutionMathType(e.conv[pass], CUDNN_TENSOR_OP_MATH);  // unchecked: unwinding
}

void Convolutions::Impl::run_legacy(const Entry& e, int pass, const void* in0, const void* in1, void* out, void* ws,
                                    size_t ws_bytes) {
  // float scalars for both fp32 and bf16 data; beta 0: out is not read; beta 1 (an adding backward data):
  // out += the result, rounded once
  const float one = 1.f, zero = 0.f;
  const int algo = e.plan[pass].algo;
  if (pass == kForward)
    MOCO_CUDNN_CHECK(cudnnConvolutionForward(handle, &one, e.x, in0, e.w, in1, e.conv[pass],
                                             (cudnnConvolutionFwdAlgo_t)algo, ws, ws_bytes, &zero, e.y, out));
  else if (pass == kBackwardData)
    MOCO_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &one, e.w, in1, e.y, in0, e.conv[pass],
                                                  (cudnnConvolutionBwdDataAlgo_t)algo, ws, ws_bytes,
                                                  e.add ? &one : &zero, e.x, out));
  else
    MOCO_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &one, e.x, in0, e.y, in1, e.conv[pass],
                                                    (cudnnConvolutionBwdFilterAlgo_t)algo, ws, ws_bytes, &zero,
                                                    e.w, out));
}

void Convolutions::Impl::run(const Entry& e, int pass, const void* in0, const void* in1, void* out, void* ws,
                             size_t ws_bytes) {
  if (!ws) ws = workspace, ws_bytes = workspace_bytes;
  const Plan& plan = e.plan[pass];
  if (plan.graph.plan && graph_conv_aligned(in0, in1, out)) {
    // a graph plan is told no size, so it would run past a short workspace; the legacy API checks its own.
    // (A plan chosen while growth was deferred, the stem's stride-1 form that auto mode turned down, is one.)
    MOCO_CHECK(plan.graph.workspace <= ws_bytes, "Convolutions: graph engine ", plan.graph.engine, " for ",
               pass_name(pass), " of ", shape_string(e.shape, e.dtype, e.add), " needs ", plan.graph.workspace,
               " bytes of workspace, but only ", ws_bytes, " are there");
    run_graph_conv(handle, plan.graph, pass, in0, in1, out, ws);
  } else
    run_legacy(e, pass, in0, in1, out, ws, ws_bytes);
}

float Convolutions::Impl::time_ms(const std::function<void()>& launch) {
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
  launch();  // untimed: first-use costs stay out of the measurement
  MOCO_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < kTimedRuns; ++i) launch();
  MOCO_CUDA_CHECK(cudaEventRecord(stop, stream));
  wait_for_stream();
  float ms = 0;
  MOCO_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  return ms / kTimedRuns;
}

void Convolutions::Impl::search_and_run(Entry& e, int pass, const void* in0, const void* in1, void* out,
                                        bool frozen) {
  if (!e.plan[pass].found) {
    find(e, pass, in0, in1, out, frozen);
    choose_stem_form(e, pass, in0, in1, out, frozen);
  }
  if (e.plan[pass].space_to_depth)
    run_space_to_depth(e, pass, in0, in1, out);
  else
    run(e, pass, in0, in1, out);
}

Convolutions::Convolutions(cudaStream_t stream, ConvApi api, StemForm stem)
    : impl_(std::make_unique<Impl>()), api_(api), stem_(stem) {
  impl_->api = api;
  impl_->stem = stem;
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
  impl_->search_and_run(impl_->entry(s, dtype), kForward, x, w, y, frozen_);
}

void Convolutions::backward_data(const cpu::ConvShape& s, DType dtype, const void* dy, const void* w, void* dx,
                                 bool add) {
  check_args("backward_data", s, dtype);
  MOCO_CHECK(dy && w && dx, "Convolutions::backward_data: null pointer (dy=", dy, ", w=", w, ", dx=", dx, ") for ",
             shape_string(s, dtype, add));
  Entry& e = impl_->entry(s, dtype, add);
  if (!e.plan[kBackwardData].found) {
    if (!add) {
      impl_->find(e, kBackwardData, dy, w, dx, frozen_);
    } else {
      // the search and the timing runs overwrite dx, which holds the sum so far: a copy waits aside meanwhile,
      // on the device, or in host memory when the device has no room left for it (once per shape, at warm-up)
      const size_t bytes = (size_t)(s.n * s.ci * s.h * s.w) * dtype_size(dtype);
      SearchScratch kept;
      std::vector<char> kept_on_host;  // (bytes) used only when the device copy cannot be had
      const bool on_device = kept.take(bytes);
      if (!on_device) {
        kept_on_host.resize(bytes);
        impl_->wait_for_stream();  // under the caller's bound: a copy into pageable memory would wait unbounded
      }
      void* aside = on_device ? kept.p : kept_on_host.data();
      const cudaMemcpyKind out = on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost;
      const cudaMemcpyKind back = on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
      MOCO_CUDA_CHECK(cudaMemcpyAsync(aside, dx, bytes, out, impl_->stream));
      try {
        impl_->find(e, kBackwardData, dy, w, dx, frozen_);
        MOCO_CUDA_CHECK(cudaMemcpyAsync(dx, aside, bytes, back, impl_->stream));  // dx holds the sum so far again
        impl_->keep_graph_plan_if_it_adds(e, dy, w, dx, aside, on_device, bytes);
      } catch (...) {
        // a search that fails may already have run candidates over dx (and the check after it, its plan): the sum
        // so far goes back before the error does (unchecked: the first error is the one to report), so a
        // caller that recovers from it keeps its gradients
        if (cudaMemcpyAsync(dx, aside, bytes, back, impl_->stream) == cudaSuccess)
          cudaStreamSynchronize(impl_->stream);  // `aside` must outlive the transfer back
        throw;
      }
      if (on_device)
        kept.release(impl_->stream);
      else
        impl_->wait_for_stream();  // the host copy must outlive the transfer back
    }
  }
  impl_->run(e, kBackwardData, dy, w, dx);
}

void Convolutions::backward_filter(const cpu::ConvShape& s, DType dtype, const void* x, const void* dy, void* dw) {
  check_args("backward_filter", s, dtype);
  MOCO_CHECK(x && dy && dw, "Convolutions::backward_filter: null pointer (x=", x, ", dy=", dy, ", dw=", dw, ") for ",
             shape_string(s, dtype));
  impl_->search_and_run(impl_->entry(s, dtype), kBackwardFilter, x, dy, dw, frozen_);
}

size_t Convolutions::workspace_bytes() const { return impl_->workspace_bytes; }

int Convolutions::cached_shapes() const {
  // shapes with at least one chosen plan (a search that ended in an error leaves none); a shape's adding
  // backward data, an entry of its own, is the same shape
  std::unordered_set<Key, KeyHash> shapes;
  for (const Entry* e : impl_->order)
    if (e->plan[kForward].found || e->plan[kBackwardData].found || e->plan[kBackwardFilter].found)
      shapes.insert(key_of(e->shape, e->dtype, false));
  return (int)shapes.size();
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
        std::snprintf(buf, sizeof buf,
                      " %s: graph engine %lld, %.3f ms timed against %.3f ms for %s (%s), workspace %s\n",
                      pass_name(pass), (long long)p.graph.engine, (double)p.graph_timed_ms,
                      (double)p.legacy_timed_ms, algo_name(pass, p.algo), math_name(p.math),
                      mib(std::max(p.bytes, p.graph.workspace)).c_str());
      else if (p.graph.plan)  // graph mode: the legacy algorithm is kept for unaligned calls, untimed
        std::snprintf(buf, sizeof buf, " %s: graph engine %lld, %s, workspace %s (legacy: %s)\n", pass_name(pass),
                      (long long)p.graph.engine, p.graph_timed_ms >= 0 ? "fastest timed" : "the one qualifying",
                      mib(std::max(p.bytes, p.graph.workspace)).c_str(), algo_name(pass, p.algo));
      else if (p.given)
        std::snprintf(buf, sizeof buf, " %s: %s (%s), as given, workspace %s%s", pass_name(pass),
                      algo_name(pass, p.algo), math_name(p.math), mib(p.bytes).c_str(),
                      p.deterministic ? "" : ", NON-DETERMINISTIC (no deterministic algorithm qualified)");
      else
        std::snprintf(buf, sizeof buf, " %s: %s (%s), %.3f ms measured, workspace %s%s", pass_name(pass),
                      algo_name(pass, p.algo), math_name(p.math), (double)p.ms, mib(p.bytes).c_str(),
                      p.deterministic ? "" : ", NON-DETERMINISTIC (no deterministic algorithm qualified)");
      std::string line = shape_string(e->shape, e->dtype, e->add) + buf;
      if (!p.graph.plan && !p.given && impl_->api != ConvApi::kLegacy) {
        char note[256];
        if (p.best_graph_engine >= 0)
          std::snprintf(note, sizeof note, "; timed %.3f ms against graph engine %lld at %.3f ms",
                        (double)p.legacy_timed_ms, (long long)p.best_graph_engine, (double)p.graph_timed_ms);
        else
          std::snprintf(note, sizeof note, "; %s", p.graph_note.c_str());
        line += note;
      }
      if (!p.graph.plan) line += "\n";
      line.insert(line.size() - 1, stem_form_note(p));
      out += line;
    }
  return out;
}

}  // namespace moco::cuda
