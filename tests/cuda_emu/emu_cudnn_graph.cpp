// The graph (backend) API of the emulated cuDNN (include/cudnn.h), for graphs of one convolution, with the
// rules a caller can break checked as cuDNN documents them:
// - A descriptor is created, given its attributes, then finalized. An attribute of the wrong type, one that
//   does not belong to the descriptor, or one set after finalization is refused (BAD_PARAM); a descriptor
//   handed to another as an attribute must already be finalized (BAD_PARAM_NOT_FINALIZED).
// - Finalization checks that the required attributes are there and agree: a tensor has as many strides as
//   dimensions and an alignment that is a power of two of at least one element; the convolution node's x, w
//   and y have the sizes its convolution gives (BAD_PARAM_SHAPE_MISMATCH otherwise); its tensors' unique ids
//   differ. Only fp32/bf16 4-d tensors, 2-d convolutions with equal pre- and post-padding, FLOAT compute and
//   one node per graph are modelled (NOT_SUPPORTED otherwise).
// - The heuristics offer six made-up engines per graph, with notes chosen so that a caller has to filter.
//   Mode A offers, in this order: a non-deterministic one first (as a fast atomics-based kernel would rank),
//   one using tensor cores (TF32 for fp32 data), one compiled at run time, one accumulating in reduced
//   precision, and one that needs a workspace and refuses a strided convolution when its plan is finalized.
//   The fallback mode offers a plain one, then the tensor-core one again: a caller that asks only mode A
//   finds no fp32 engine for a strided convolution.
// - MOCO_EMU_GRAPH_BETA=refuse makes every engine refuse a node with beta != 0 when its plan is finalized, as
//   a real engine may: cuDNN does not promise that every engine adds into its output. MOCO_EMU_GRAPH_BETA=ignore
//   makes every engine finalize such a plan and then write over its output as if beta were 0: the failure
//   that no error reports, which Convolutions checks each adding plan for.
// - A variant pack must give every tensor of the plan's node, by unique id, a pointer aligned as the tensor's
//   BYTE_ALIGNMENT promised (a misaligned vector load faults on a device), and a workspace when the plan needs
//   one, in device memory at least as large as it needs. Execution is queued on the handle's stream; it
//   writes over the whole workspace and computes the pass as the legacy API does (emu_conv_math.h), so the
//   two APIs agree exactly here.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "include/cuda_runtime.h"
#include "include/cudnn.h"
#include "emu_conv_math.h"
#include "emu_runtime.h"
#include "emu_streams.h"

namespace {

// MOCO_EMU_GRAPH_BETA=refuse: no engine adds into its output; =ignore: every engine overwrites it (see the top).
bool beta_mode_is(const char* mode) {
  const char* v = std::getenv("MOCO_EMU_GRAPH_BETA");
  return v && std::strcmp(v, mode) == 0;
}
bool refuses_beta() { return beta_mode_is("refuse"); }
bool ignores_beta() { return beta_mode_is("ignore"); }

struct Attr {
  cudnnBackendAttributeType_t type;
  int64_t count;
  std::vector<unsigned char> bytes;
};

struct TensorInfo {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int64_t dims[4] = {0, 0, 0, 0}, strides[4] = {0, 0, 0, 0};
  int64_t uid = 0, alignment = 0;
};
struct ConvInfo {
  int64_t stride[2] = {1, 1}, pad[2] = {0, 0}, dilation[2] = {1, 1};
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
};
// The node, its tensors named as in the forward pass: x holds dx in backward data, w holds dw in backward
// filter, y holds dy in both backward passes.
struct NodeInfo {
  int pass = 0;
  TensorInfo x, w, y;
  ConvInfo conv;
  float alpha = 1.f, beta = 0.f;
};
struct EngineInfo {
  int64_t index = -1;
  std::vector<cudnnBackendNumericalNote_t> numerical;
  std::vector<cudnnBackendBehaviorNote_t> behavior;
  bool workspace = false;         // needs an index table: 4 bytes per output pixel and tap
  bool refuses_strided = false;   // its plan does not finalize for stride > 1
};

struct Descriptor {
  cudnnBackendDescriptorType_t type;
  bool finalized = false;
  std::map<int, Attr> attrs;
  // what finalization derived, or what a GetAttribute filled in (engine configs and engines)
  TensorInfo tensor;
  ConvInfo conv;
  NodeInfo node;
  EngineInfo engine;
  cudnnHandle_t handle = nullptr;
  cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;  // a heuristics descriptor's
  size_t workspace = 0;  // an execution plan's need
};

std::mutex g_mutex;
std::set<Descriptor*> g_live;  // descriptors created and not yet destroyed

Descriptor* live(cudnnBackendDescriptor_t d) {
  auto* p = static_cast<Descriptor*>(d);
  return g_live.count(p) ? p : nullptr;
}

size_t element_size(cudnnBackendAttributeType_t t) {
  switch (t) {
    case CUDNN_TYPE_HANDLE:
    case CUDNN_TYPE_VOID_PTR:
    case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(void*);
    case CUDNN_TYPE_INT64:
    case CUDNN_TYPE_DOUBLE: return 8;
    case CUDNN_TYPE_FLOAT:
    case CUDNN_TYPE_DATA_TYPE:
    case CUDNN_TYPE_CONVOLUTION_MODE:
    case CUDNN_TYPE_HEUR_MODE:
    case CUDNN_TYPE_NUMERICAL_NOTE:
    case CUDNN_TYPE_BEHAVIOR_NOTE: return 4;
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
  }
  return 0;
}

// Which descriptor each settable attribute belongs to, and its type.
struct AttrSpec {
  cudnnBackendAttributeName_t name;
  cudnnBackendDescriptorType_t owner;
  cudnnBackendAttributeType_t type;
};
const AttrSpec kSettable[] = {
    {CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_DATA_TYPE},
    {CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_TENSOR_STRIDES, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_DATA_TYPE},
    {CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_CONVOLUTION_MODE},
    {CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
     CUDNN_TYPE_FLOAT},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
     CUDNN_TYPE_FLOAT},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
     CUDNN_TYPE_FLOAT},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
     CUDNN_TYPE_FLOAT},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_TYPE_FLOAT},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
     CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_TYPE_FLOAT},
    {CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, CUDNN_TYPE_HANDLE},
    {CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, CUDNN_TYPE_HEUR_MODE},
    {CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, CUDNN_TYPE_HANDLE},
    {CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
     CUDNN_TYPE_BACKEND_DESCRIPTOR},
    {CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_INT64},
    {CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_VOID_PTR},
    {CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_VOID_PTR},
};

const AttrSpec* settable(cudnnBackendAttributeName_t name) {
  for (const AttrSpec& s : kSettable)
    if (s.name == name) return &s;
  return nullptr;
}

const Attr* find(const Descriptor& d, cudnnBackendAttributeName_t name) {
  auto it = d.attrs.find((int)name);
  return it == d.attrs.end() ? nullptr : &it->second;
}
template <class T>
T value(const Attr& a, int64_t i = 0) {
  T v;
  std::memcpy(&v, a.bytes.data() + (size_t)i * sizeof(T), sizeof(T));
  return v;
}
// The descriptor an attribute names (validated as live and finalized when it was set).
Descriptor* referenced(const Descriptor& d, cudnnBackendAttributeName_t name) {
  const Attr* a = find(d, name);
  return a && a->count == 1 ? live(value<cudnnBackendDescriptor_t>(*a)) : nullptr;
}
bool has_one(const Descriptor& d, cudnnBackendAttributeName_t name) {
  const Attr* a = find(d, name);
  return a && a->count == 1;
}

cudnnStatus_t finalize_tensor(Descriptor& d) {
  const Attr *type = find(d, CUDNN_ATTR_TENSOR_DATA_TYPE), *dims = find(d, CUDNN_ATTR_TENSOR_DIMENSIONS),
             *strides = find(d, CUDNN_ATTR_TENSOR_STRIDES);
  if (!type || !dims || !strides || !has_one(d, CUDNN_ATTR_TENSOR_UNIQUE_ID) ||
      !has_one(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT))
    return CUDNN_STATUS_BAD_PARAM;
  if (strides->count != dims->count) return CUDNN_STATUS_BAD_PARAM;
  if (dims->count != 4) return CUDNN_STATUS_NOT_SUPPORTED;
  TensorInfo& t = d.tensor;
  t.type = value<cudnnDataType_t>(*type);
  if (t.type != CUDNN_DATA_FLOAT && t.type != CUDNN_DATA_BFLOAT16) return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
  for (int i = 0; i < 4; ++i) {
    t.dims[i] = value<int64_t>(*dims, i);
    t.strides[i] = value<int64_t>(*strides, i);
    if (t.dims[i] < 1 || t.strides[i] < 1) return CUDNN_STATUS_BAD_PARAM;
  }
  t.uid = value<int64_t>(*find(d, CUDNN_ATTR_TENSOR_UNIQUE_ID));
  t.alignment = value<int64_t>(*find(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT));
  const int64_t elem = (int64_t)emu_conv::element_bytes(t.type);
  if (t.alignment < elem || (t.alignment & (t.alignment - 1))) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_convolution(Descriptor& d) {
  const cudnnBackendAttributeName_t pairs[4] = {CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
                                                CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS,
                                                CUDNN_ATTR_CONVOLUTION_POST_PADDINGS};
  if (!has_one(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE) || !has_one(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE) ||
      !has_one(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS))
    return CUDNN_STATUS_BAD_PARAM;
  if (value<int64_t>(*find(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS)) != 2) return CUDNN_STATUS_NOT_SUPPORTED;
  for (auto name : pairs) {
    const Attr* a = find(d, name);
    if (!a || a->count != 2) return CUDNN_STATUS_BAD_PARAM;
  }
  if (value<cudnnDataType_t>(*find(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE)) != CUDNN_DATA_FLOAT)
    return CUDNN_STATUS_NOT_SUPPORTED;  // fp32 and bf16 data accumulate in float
  ConvInfo& c = d.conv;
  c.mode = value<cudnnConvolutionMode_t>(*find(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE));
  for (int i = 0; i < 2; ++i) {
    c.dilation[i] = value<int64_t>(*find(d, pairs[0]), i);
    c.stride[i] = value<int64_t>(*find(d, pairs[1]), i);
    c.pad[i] = value<int64_t>(*find(d, pairs[2]), i);
    if (c.dilation[i] < 1 || c.stride[i] < 1 || c.pad[i] < 0) return CUDNN_STATUS_BAD_PARAM;
    if (value<int64_t>(*find(d, pairs[3]), i) != c.pad[i]) return CUDNN_STATUS_NOT_SUPPORTED;
  }
  return CUDNN_STATUS_SUCCESS;
}

// The attribute names of each pass's node: x, w, y (forward naming), convolution, alpha, beta.
struct NodeNames {
  cudnnBackendDescriptorType_t type;
  cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
};
const NodeNames kNodes[3] = {
    {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
    {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
    {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA},
};

cudnnStatus_t finalize_node(Descriptor& d, int pass) {
  const NodeNames& n = kNodes[pass];
  const Descriptor *x = referenced(d, n.x), *w = referenced(d, n.w), *y = referenced(d, n.y),
                   *conv = referenced(d, n.conv);
  if (!x || !w || !y || !conv || !has_one(d, n.alpha) || !has_one(d, n.beta)) return CUDNN_STATUS_BAD_PARAM;
  if (x->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR || w->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR ||
      y->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR || conv->type != CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)
    return CUDNN_STATUS_BAD_PARAM;
  NodeInfo& node = d.node;
  node.pass = pass;
  node.x = x->tensor;
  node.w = w->tensor;
  node.y = y->tensor;
  node.conv = conv->conv;
  node.alpha = value<float>(*find(d, n.alpha));
  node.beta = value<float>(*find(d, n.beta));
  if (node.x.type != node.w.type || node.x.type != node.y.type) return CUDNN_STATUS_BAD_PARAM;
  if (node.x.uid == node.w.uid || node.x.uid == node.y.uid || node.w.uid == node.y.uid) return CUDNN_STATUS_BAD_PARAM;
  // x (N, C, H, W), w (K, C, R, S), y (N, K, Ho, Wo) with Ho and Wo as the convolution gives them
  const int64_t* xd = node.x.dims;
  const int64_t* wd = node.w.dims;
  const int64_t* yd = node.y.dims;
  const ConvInfo& c = node.conv;
  const int ho = emu_conv::output_dim((int)xd[2], (int)c.pad[0], (int)wd[2], (int)c.dilation[0], (int)c.stride[0]);
  const int wo = emu_conv::output_dim((int)xd[3], (int)c.pad[1], (int)wd[3], (int)c.dilation[1], (int)c.stride[1]);
  if (xd[1] != wd[1] || yd[0] != xd[0] || yd[1] != wd[0] || yd[2] != ho || yd[3] != wo)
    return CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH;
  return CUDNN_STATUS_SUCCESS;
}

// The made-up engines of a heuristics mode, in the order it ranks them (see the top of the file).
std::vector<EngineInfo> engines_for(cudnnBackendHeurMode_t mode) {
  const EngineInfo tensor_core{12, {CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, {}, false, false};
  if (mode == CUDNN_HEUR_MODE_FALLBACK) return {EngineInfo{16, {}, {}, false, false}, tensor_core};
  return {
      EngineInfo{11, {CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC, CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, {}, false, false},
      tensor_core,
      EngineInfo{13, {CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, {CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION}, false, false},
      EngineInfo{14, {CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION}, {}, false, false},
      EngineInfo{15, {}, {}, true, true},
  };
}

cudnnStatus_t finalize(Descriptor& d) {
  switch (d.type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: return finalize_tensor(d);
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: return finalize_convolution(d);
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: return finalize_node(d, emu_conv::kForward);
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
      return finalize_node(d, emu_conv::kBackwardData);
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
      return finalize_node(d, emu_conv::kBackwardFilter);
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
      const Attr* ops = find(d, CUDNN_ATTR_OPERATIONGRAPH_OPS);
      const Attr* handle = find(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE);
      if (!ops || ops->count < 1 || !handle || !value<cudnnHandle_t>(*handle)) return CUDNN_STATUS_BAD_PARAM;
      if (ops->count > 1) return CUDNN_STATUS_NOT_SUPPORTED;  // one node per graph is all that is modelled
      const Descriptor* op = live(value<cudnnBackendDescriptor_t>(*ops));
      if (!op || (op->type != CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR &&
                  op->type != CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR &&
                  op->type != CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR))
        return CUDNN_STATUS_NOT_SUPPORTED;
      d.node = op->node;
      d.handle = value<cudnnHandle_t>(*handle);
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
      const Descriptor* graph = referenced(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
      if (!graph || graph->type != CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR ||
          !has_one(d, CUDNN_ATTR_ENGINEHEUR_MODE))
        return CUDNN_STATUS_BAD_PARAM;
      d.node = graph->node;
      d.handle = graph->handle;
      d.mode = value<cudnnBackendHeurMode_t>(*find(d, CUDNN_ATTR_ENGINEHEUR_MODE));
      if (d.mode != CUDNN_HEUR_MODE_A && d.mode != CUDNN_HEUR_MODE_FALLBACK) return CUDNN_STATUS_NOT_SUPPORTED;
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
      const Descriptor* config = referenced(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
      const Attr* handle = find(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE);
      if (!config || config->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR || !handle || !value<cudnnHandle_t>(*handle))
        return CUDNN_STATUS_BAD_PARAM;
      d.node = config->node;
      d.engine = config->engine;
      d.handle = value<cudnnHandle_t>(*handle);
      const ConvInfo& c = d.node.conv;
      if (d.engine.refuses_strided && (c.stride[0] > 1 || c.stride[1] > 1)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
      if (d.node.beta != 0.f && refuses_beta()) return CUDNN_STATUS_NOT_SUPPORTED;
      const int64_t* yd = d.node.y.dims;
      const int64_t* wd = d.node.w.dims;
      d.workspace = d.engine.workspace ? sizeof(int32_t) * (size_t)(yd[2] * yd[3] * wd[2] * wd[3]) : 0;
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
      const Attr *uids = find(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS),
                 *ptrs = find(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
      if (!uids || !ptrs || uids->count != ptrs->count) return CUDNN_STATUS_BAD_PARAM;
      const Attr* ws = find(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE);
      if (ws && ws->count != 1) return CUDNN_STATUS_BAD_PARAM;
      return CUDNN_STATUS_SUCCESS;
    }
    default:
      return CUDNN_STATUS_BAD_PARAM;  // engine configs and engines come filled in from cudnnBackendGetAttribute
  }
}

// Writes `n` values of `T` for a GetAttribute call: *count = how many were written.
template <class T>
cudnnStatus_t give(const std::vector<T>& values, int64_t requested, int64_t* count, void* out) {
  const int64_t n = std::min<int64_t>(requested, (int64_t)values.size());
  if (n > 0 && !out) return CUDNN_STATUS_BAD_PARAM;
  if (n > 0) std::memcpy(out, values.data(), sizeof(T) * (size_t)n);
  *count = n;
  return CUDNN_STATUS_SUCCESS;
}

// The tensor of the plan's node with this unique id, or nullptr.
const TensorInfo* tensor_with_uid(const NodeInfo& n, int64_t uid) {
  for (const TensorInfo* t : {&n.x, &n.w, &n.y})
    if (t->uid == uid) return t;
  return nullptr;
}

emu_conv::Array4 array_of(const TensorInfo& t) {
  return {(int)t.dims[0], (int)t.dims[1], (int)t.dims[2], (int)t.dims[3],
          t.strides[0],   t.strides[1],   t.strides[2],   t.strides[3], t.type};
}

emu_conv::Problem problem_of(const NodeInfo& n) {
  emu_conv::Problem p{};
  p.type = n.x.type;
  p.elem = emu_conv::element_bytes(p.type);
  p.n = (int)n.x.dims[0], p.c = (int)n.x.dims[1], p.h = (int)n.x.dims[2], p.w = (int)n.x.dims[3];
  p.k = (int)n.w.dims[0], p.r = (int)n.w.dims[2], p.s = (int)n.w.dims[3];
  p.ho = (int)n.y.dims[2], p.wo = (int)n.y.dims[3];
  p.pad_h = (int)n.conv.pad[0], p.pad_w = (int)n.conv.pad[1];
  p.u = (int)n.conv.stride[0], p.v = (int)n.conv.stride[1];
  p.dil_h = (int)n.conv.dilation[0], p.dil_w = (int)n.conv.dilation[1];
  p.flip = n.conv.mode == CUDNN_CONVOLUTION;
  p.math = CUDNN_DEFAULT_MATH;
  return p;
}

}  // namespace

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t descriptorType,
                                           cudnnBackendDescriptor_t* descriptor) {
  if (!descriptor) return CUDNN_STATUS_BAD_PARAM;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto* d = new Descriptor{};
  d->type = descriptorType;
  g_live.insert(d);
  *descriptor = d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t descriptor) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Descriptor* d = live(descriptor);
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  g_live.erase(d);
  delete d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t descriptor, cudnnBackendAttributeName_t attributeName,
                                       cudnnBackendAttributeType_t attributeType, int64_t elementCount,
                                       const void* arrayOfElements) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Descriptor* d = live(descriptor);
  const AttrSpec* spec = settable(attributeName);
  if (!d || d->finalized || !spec || spec->owner != d->type || spec->type != attributeType || elementCount < 1 ||
      !arrayOfElements)
    return CUDNN_STATUS_BAD_PARAM;
  if (attributeType == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    for (int64_t i = 0; i < elementCount; ++i) {
      const Descriptor* r = live(static_cast<const cudnnBackendDescriptor_t*>(arrayOfElements)[i]);
      if (!r) return CUDNN_STATUS_BAD_PARAM;
      if (!r->finalized) return CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED;
    }
  Attr a{attributeType, elementCount, {}};
  const auto* bytes = static_cast<const unsigned char*>(arrayOfElements);
  a.bytes.assign(bytes, bytes + element_size(attributeType) * (size_t)elementCount);
  d->attrs[(int)attributeName] = std::move(a);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t descriptor) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Descriptor* d = live(descriptor);
  if (!d || d->finalized) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t st = finalize(*d);
  d->finalized = st == CUDNN_STATUS_SUCCESS;
  return st;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const descriptor,
                                       cudnnBackendAttributeName_t attributeName,
                                       cudnnBackendAttributeType_t attributeType, int64_t requestedElementCount,
                                       int64_t* elementCount, void* arrayOfElements) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Descriptor* d = live(descriptor);
  if (!d || !elementCount || requestedElementCount < 0) return CUDNN_STATUS_BAD_PARAM;
  if (!d->finalized) return CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED;
  switch (attributeName) {
    case CUDNN_ATTR_ENGINEHEUR_RESULTS: {
      if (d->type != CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR || attributeType != CUDNN_TYPE_BACKEND_DESCRIPTOR)
        return CUDNN_STATUS_BAD_PARAM;
      const std::vector<EngineInfo> engines = engines_for(d->mode);
      if (requestedElementCount == 0) {  // the number available
        *elementCount = (int64_t)engines.size();
        return CUDNN_STATUS_SUCCESS;
      }
      if (!arrayOfElements) return CUDNN_STATUS_BAD_PARAM;
      const int64_t n = std::min<int64_t>(requestedElementCount, (int64_t)engines.size());
      for (int64_t i = 0; i < n; ++i) {  // the caller's engine-config descriptors are filled in
        Descriptor* cfg = live(static_cast<cudnnBackendDescriptor_t*>(arrayOfElements)[i]);
        if (!cfg || cfg->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) return CUDNN_STATUS_BAD_PARAM;
        cfg->node = d->node;
        cfg->engine = engines[(size_t)i];
        cfg->finalized = true;
      }
      *elementCount = n;
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINECFG_ENGINE: {
      if (d->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR || attributeType != CUDNN_TYPE_BACKEND_DESCRIPTOR ||
          requestedElementCount != 1 || !arrayOfElements)
        return CUDNN_STATUS_BAD_PARAM;
      Descriptor* engine = live(*static_cast<cudnnBackendDescriptor_t*>(arrayOfElements));
      if (!engine || engine->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR) return CUDNN_STATUS_BAD_PARAM;
      engine->node = d->node;
      engine->engine = d->engine;
      engine->finalized = true;
      *elementCount = 1;
      return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
      if (d->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR || attributeType != CUDNN_TYPE_INT64)
        return CUDNN_STATUS_BAD_PARAM;
      return give(std::vector<int64_t>{d->engine.index}, requestedElementCount, elementCount, arrayOfElements);
    case CUDNN_ATTR_ENGINE_NUMERICAL_NOTE:
      if (d->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR || attributeType != CUDNN_TYPE_NUMERICAL_NOTE)
        return CUDNN_STATUS_BAD_PARAM;
      return give(d->engine.numerical, requestedElementCount, elementCount, arrayOfElements);
    case CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE:
      if (d->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR || attributeType != CUDNN_TYPE_BEHAVIOR_NOTE)
        return CUDNN_STATUS_BAD_PARAM;
      return give(d->engine.behavior, requestedElementCount, elementCount, arrayOfElements);
    case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE:
      if (d->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || attributeType != CUDNN_TYPE_INT64)
        return CUDNN_STATUS_BAD_PARAM;
      return give(std::vector<int64_t>{(int64_t)d->workspace}, requestedElementCount, elementCount,
                  arrayOfElements);
    default:
      return CUDNN_STATUS_NOT_SUPPORTED;  // not modelled
  }
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan,
                                  cudnnBackendDescriptor_t variantPack) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Descriptor* plan = live(executionPlan);
  const Descriptor* pack = live(variantPack);
  if (!handle || !plan || !pack || plan->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR ||
      pack->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
    return CUDNN_STATUS_BAD_PARAM;
  if (!plan->finalized || !pack->finalized) return CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED;
  const NodeInfo node = plan->node;
  const Attr& uids = *find(*pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
  const Attr& ptrs = *find(*pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
  void* data[3] = {nullptr, nullptr, nullptr};  // x, w, y of the node
  const TensorInfo* tensors[3] = {&node.x, &node.w, &node.y};
  for (int64_t i = 0; i < uids.count; ++i) {
    const int64_t uid = value<int64_t>(uids, i);
    void* p = value<void*>(ptrs, i);
    const TensorInfo* t = tensor_with_uid(node, uid);
    if (!t) continue;  // a tensor of no node here: ignored
    if (!p || (uintptr_t)p % (uintptr_t)t->alignment != 0) return CUDNN_STATUS_BAD_PARAM;
    for (int k = 0; k < 3; ++k)
      if (tensors[k] == t) data[k] = p;
  }
  if (!data[0] || !data[1] || !data[2]) return CUDNN_STATUS_BAD_PARAM;  // a tensor of the node has no pointer
  const Attr* ws_attr = find(*pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE);
  void* ws = ws_attr ? value<void*>(*ws_attr) : nullptr;
  const size_t need = plan->workspace;
  // a workspace the plan needs, in device memory at least that large (an undersized one would be overrun)
  if (need > 0 && (!ws || cuda_emu::device_bytes_from(ws) < need)) return CUDNN_STATUS_BAD_PARAM;

  const emu_conv::Problem p = problem_of(node);
  const emu_conv::Array4 xa = array_of(node.x), wa = array_of(node.w), ya = array_of(node.y);
  const float alpha = node.alpha, beta = ignores_beta() ? 0.f : node.beta;
  void *x = data[0], *w = data[1], *y = data[2];
  cuda_emu::enqueue(handle->stream, [=] {
    if (cuda_emu::count_only()) return;
    if (ws && need) std::memset(ws, 0xFF, need);  // as the device would: the workspace is the plan's to use
    switch (node.pass) {
      case emu_conv::kForward:
        emu_conv::scatter(emu_conv::forward(p, emu_conv::gather(x, xa), emu_conv::gather(w, wa)), ya, &alpha, &beta, y);
        break;
      case emu_conv::kBackwardData:
        emu_conv::scatter(emu_conv::backward_data(p, emu_conv::gather(y, ya), emu_conv::gather(w, wa)), xa, &alpha,
                          &beta, x);
        break;
      default:
        emu_conv::scatter(emu_conv::backward_filter(p, emu_conv::gather(x, xa), emu_conv::gather(y, ya)), wa, &alpha,
                          &beta, w);
    }
  });
  return CUDNN_STATUS_SUCCESS;
}
