// cuDNN graph-API convolutions (see conv_graph.h for the contract and the engine rules).
#include "conv_graph.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>

#include "check.h"

namespace moco::cuda {

namespace {

// The tensors' unique ids in every graph and variant pack: dx and x share one, as do dy and y, dw and w.
constexpr int64_t kUidX = 1, kUidW = 2, kUidY = 3;

struct DestroyDescriptor {
  void operator()(void* d) const { cudnnBackendDestroyDescriptor(d); }  // unchecked: a destructor must not throw
};
using Descriptor = std::unique_ptr<void, DestroyDescriptor>;

Descriptor create(cudnnBackendDescriptorType_t type) {
  cudnnBackendDescriptor_t d = nullptr;
  MOCO_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d));
  return Descriptor(d);
}

// Moves `d` into `kept` and returns it there (a deque: earlier references stay valid).
const Descriptor& keep(std::deque<Descriptor>& kept, Descriptor d) {
  kept.push_back(std::move(d));
  return kept.back();
}

void set(const Descriptor& d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
         const void* values) {
  MOCO_CUDNN_CHECK(cudnnBackendSetAttribute(d.get(), name, type, count, values));
}
void set_descriptor(const Descriptor& d, cudnnBackendAttributeName_t name, const Descriptor& value) {
  cudnnBackendDescriptor_t v = value.get();
  set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
}

// A channels-last tensor of logical dims (n, c, h, w).
Descriptor tensor(int64_t uid, cudnnDataType_t type, int64_t n, int64_t c, int64_t h, int64_t w) {
  Descriptor t = create(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t dims[4] = {n, c, h, w};
  const int64_t strides[4] = {h * w * c, 1, w * c, c};
  const int64_t alignment = kGraphConvAlignment;
  set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  MOCO_CUDNN_CHECK(cudnnBackendFinalize(t.get()));
  return t;
}

// Cross-correlation (what deep-learning frameworks call convolution) with fp32 accumulation.
Descriptor convolution(const cpu::ConvShape& s) {
  Descriptor c = create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const int64_t spatial = 2, dilation[2] = {1, 1}, stride[2] = {s.stride, s.stride}, pad[2] = {s.pad, s.pad};
  set(c, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
  set(c, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  set(c, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial);
  set(c, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dilation);
  set(c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride);
  set(c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  set(c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  MOCO_CUDNN_CHECK(cudnnBackendFinalize(c.get()));
  return c;
}

// The pass's operation node: output = 1 * op(inputs) + beta * output.
Descriptor operation(int pass, const Descriptor& x, const Descriptor& w, const Descriptor& y, const Descriptor& conv,
                     float beta) {
  struct Names {
    cudnnBackendDescriptorType_t type;
    cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
  };
  static const Names names[kConvPasses] = {
      {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
      {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
      {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA},
  };
  const Names& n = names[pass];
  Descriptor op = create(n.type);
  const float alpha = 1.f;  // float scaling factors for float and bf16 data (double only for double)
  set_descriptor(op, n.x, x);
  set_descriptor(op, n.w, w);
  set_descriptor(op, n.y, y);
  set_descriptor(op, n.conv, conv);
  set(op, n.alpha, CUDNN_TYPE_FLOAT, 1, &alpha);
  set(op, n.beta, CUDNN_TYPE_FLOAT, 1, &beta);
  MOCO_CUDNN_CHECK(cudnnBackendFinalize(op.get()));
  return op;
}

// The notes of the engine behind an engine config, as bit sets over the note enums.
struct EngineNotes {
  int64_t index = -1;
  uint32_t numerical = 0, behavior = 0;
};
EngineNotes notes_of(cudnnBackendDescriptor_t config) {
  Descriptor engine = create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t e = engine.get();
  int64_t got = 0;
  MOCO_CUDNN_CHECK(cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                            &got, &e));
  EngineNotes out;
  MOCO_CUDNN_CHECK(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &got, &out.index));
  cudnnBackendNumericalNote_t numerical[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  MOCO_CUDNN_CHECK(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                            CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &got, numerical));
  for (int64_t i = 0; i < got; ++i) out.numerical |= 1u << (unsigned)numerical[i];
  cudnnBackendBehaviorNote_t behavior[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  MOCO_CUDNN_CHECK(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                                            CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &got, behavior));
  for (int64_t i = 0; i < got; ++i) out.behavior |= 1u << (unsigned)behavior[i];
  return out;
}

// Why an engine is not used (conv_graph.h), or nullptr when it qualifies.
const char* disqualified(const EngineNotes& n, DType dtype) {
  auto numerical = [&](cudnnBackendNumericalNote_t note) { return (n.numerical >> (unsigned)note) & 1u; };
  if (numerical(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC)) return "non-deterministic";
  if ((n.behavior >> (unsigned)CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION) & 1u) return "compiled at run time";
  if (numerical(CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)) return "reduced-precision accumulation";
  if (dtype == DType::F32 && (numerical(CUDNN_NUMERICAL_NOTE_TENSOR_CORE) ||
                              numerical(CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS)))
    return "TF32 in fp32";
  return nullptr;
}

std::string engine_line(int64_t index, const char* why) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "\n  engine %lld: %s", (long long)index, why);
  return buf;
}

}  // namespace

GraphConvCandidates graph_conv_candidates(cudnnHandle_t handle, const cpu::ConvShape& s, DType dtype, int pass,
                                          size_t max_workspace, int max_plans, int64_t only_engine, bool add) {
  MOCO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "graph_conv_candidates: dtype ", dtype_name(dtype),
             " is not supported (expected f32 or bf16)");
  MOCO_CHECK(pass >= 0 && pass < kConvPasses, "graph_conv_candidates: pass ", pass, " is not 0, 1 or 2");
  MOCO_CHECK(!add || pass == kConvBackwardData, "graph_conv_candidates: only backward data adds into its output");
  const cudnnDataType_t type = dtype == DType::F32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16;
  auto kept = std::make_shared<std::deque<Descriptor>>();  // everything the plans are built from
  const Descriptor& x = keep(*kept, tensor(kUidX, type, s.n, s.ci, s.h, s.w));      // (N, H, W, Ci)
  const Descriptor& w = keep(*kept, tensor(kUidW, type, s.co, s.ci, s.kh, s.kw));   // (Co, kh, kw, Ci)
  const Descriptor& y = keep(*kept, tensor(kUidY, type, s.n, s.co, s.ho(), s.wo()));  // (N, Ho, Wo, Co)
  const Descriptor& conv = keep(*kept, convolution(s));
  const Descriptor& op = keep(*kept, operation(pass, x, w, y, conv, add ? 1.f : 0.f));

  const Descriptor& graph = keep(*kept, create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR));
  cudnnBackendDescriptor_t ops[1] = {op.get()};
  set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, ops);
  set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  MOCO_CUDNN_CHECK(cudnnBackendFinalize(graph.get()));

  // The engine configs of heuristics mode A, then those of the fallback mode that A did not name (the usual
  // safeguard: A may offer only tensor-core engines, which fp32 refuses)
  // Mode A must answer; the fallback mode only adds what it can (a status of its own is kept in `dropped`).
  GraphConvCandidates out;
  std::vector<cudnnBackendDescriptor_t> configs;
  for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    const Descriptor& heuristics = keep(*kept, create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR));
    set_descriptor(heuristics, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
    set(heuristics, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    auto check = [&](cudnnStatus_t st, const char* call) {
      if (st == CUDNN_STATUS_SUCCESS) return true;
      MOCO_CHECK(mode != CUDNN_HEUR_MODE_A, call, " (heuristics mode A) failed: ", cudnnGetErrorString(st));
      out.dropped += std::string("\n  fallback heuristics: ") + cudnnGetErrorString(st);
      return false;
    };
    if (!check(cudnnBackendFinalize(heuristics.get()), "cudnnBackendFinalize")) continue;
    int64_t count = 0;  // how many configs the heuristics have, then the configs themselves
    if (!check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                        CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
               "cudnnBackendGetAttribute(CUDNN_ATTR_ENGINEHEUR_RESULTS)"))
      continue;
    std::vector<cudnnBackendDescriptor_t> got;
    for (int64_t i = 0; i < count; ++i) got.push_back(keep(*kept, create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)).get());
    if (count > 0 && !check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, got.data()),
                            "cudnnBackendGetAttribute(CUDNN_ATTR_ENGINEHEUR_RESULTS)"))
      continue;
    configs.insert(configs.end(), got.begin(), got.begin() + count);
  }

  std::vector<int64_t> seen;  // engines already considered: the fallback list repeats some of A's
  for (size_t i = 0; i < configs.size() && (int)out.plans.size() < max_plans; ++i) {
    const EngineNotes notes = notes_of(configs[i]);
    if (std::find(seen.begin(), seen.end(), notes.index) != seen.end()) continue;
    seen.push_back(notes.index);
    if (only_engine >= 0 && notes.index != only_engine) continue;
    if (const char* why = disqualified(notes, dtype)) {
      out.dropped += engine_line(notes.index, why);
      continue;
    }
    Descriptor plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[i]);
    // An engine that cannot take this graph after all refuses here: it is dropped, its status kept in
    // `dropped` (a refusal by every engine, BAD_PARAM among them, then shows what the graph got wrong).
    if (const cudnnStatus_t st = cudnnBackendFinalize(plan.get())) {
      out.dropped += engine_line(notes.index, cudnnGetErrorString(st));
      continue;
    }
    int64_t bytes = 0, got = 0;
    MOCO_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                              CUDNN_TYPE_INT64, 1, &got, &bytes));
    if (bytes < 0 || (size_t)bytes > max_workspace) {
      out.dropped += engine_line(notes.index, "workspace above the limit");
      continue;
    }
    GraphConvPlan p;
    p.plan = std::shared_ptr<void>(plan.release(), DestroyDescriptor());
    p.workspace = (size_t)bytes;
    p.engine = notes.index;
    p.built_from = kept;
    out.plans.push_back(std::move(p));
  }
  if (configs.empty()) out.dropped += " (cuDNN's heuristics offered no engine)";
  return out;
}

void run_graph_conv(cudnnHandle_t handle, const GraphConvPlan& plan, int pass, const void* in0, const void* in1,
                    void* out, void* workspace) {
  MOCO_CHECK(plan.plan, "run_graph_conv: empty plan");
  MOCO_CHECK(pass >= 0 && pass < kConvPasses, "run_graph_conv: pass ", pass, " is not 0, 1 or 2");
  // forward (x, w) -> y; backward_data (dy, w) -> dx; backward_filter (x, dy) -> dw
  static const int64_t uids[kConvPasses][3] = {{kUidX, kUidW, kUidY}, {kUidY, kUidW, kUidX}, {kUidX, kUidY, kUidW}};
  void* pointers[3] = {const_cast<void*>(in0), const_cast<void*>(in1), out};
  const Descriptor pack = create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids[pass]);
  set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, pointers);
  set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  MOCO_CUDNN_CHECK(cudnnBackendFinalize(pack.get()));
  MOCO_CUDNN_CHECK(cudnnBackendExecute(handle, plan.plan.get(), pack.get()));
}

bool graph_conv_aligned(const void* a, const void* b, const void* c) {
  const uintptr_t mask = (uintptr_t)kGraphConvAlignment - 1;
  return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & mask) == 0;
}

}  // namespace moco::cuda
