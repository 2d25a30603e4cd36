// The emulated cuDNN graph API (emu_cudnn_graph.cpp) refuses what cuDNN refuses, so that the graph-API
// convolution tests (tests/gpu/test_convolution.cpp) check src/cuda/conv_graph.cpp's use of it; and
// conv_graph.cpp keeps exactly the engines its header promises, shown on the emulator's made-up engines
// (their numbers and notes are listed at the top of emu_cudnn_graph.cpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../../src/cuda/conv_graph.h"
#include "include/cuda_runtime.h"
#include "include/cudnn.h"

using namespace moco;

namespace {

class Handle {
 public:
  Handle() { EXPECT_EQ(cudnnCreate(&h_), CUDNN_STATUS_SUCCESS); }
  ~Handle() { cudnnDestroy(h_); }
  cudnnHandle_t get() const { return h_; }

 private:
  cudnnHandle_t h_ = nullptr;
};

class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) {
    EXPECT_EQ(cudnnBackendCreateDescriptor(type, &d_), CUDNN_STATUS_SUCCESS);
  }
  ~Desc() { cudnnBackendDestroyDescriptor(d_); }
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// Sets one attribute unless an earlier call of the chain failed: `st` keeps the first failure.
void chain(cudnnStatus_t& st, const Desc& d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
           int64_t count, const void* values) {
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendSetAttribute(d.get(), name, type, count, values);
}

// A channels-last bf16 tensor of dims (n, c, h, w), finalized unless told not to.
cudnnStatus_t make_tensor(const Desc& t, int64_t uid, int64_t n, int64_t c, int64_t h, int64_t w,
                          bool finalize = true) {
  const cudnnDataType_t type = CUDNN_DATA_BFLOAT16;
  const int64_t dims[4] = {n, c, h, w}, strides[4] = {h * w * c, 1, w * c, c}, alignment = 16;
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  chain(st, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  chain(st, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  chain(st, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  chain(st, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  chain(st, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  if (!st && finalize) st = cudnnBackendFinalize(t.get());
  return st;
}

cudnnStatus_t make_convolution(const Desc& c, int64_t stride, int64_t pad) {
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const int64_t dims = 2, one[2] = {1, 1}, strides[2] = {stride, stride}, pads[2] = {pad, pad};
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  chain(st, c, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
  chain(st, c, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  chain(st, c, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  chain(st, c, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, one);
  chain(st, c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, strides);
  chain(st, c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pads);
  chain(st, c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pads);
  if (!st) st = cudnnBackendFinalize(c.get());
  return st;
}

cudnnStatus_t set_desc(const Desc& d, cudnnBackendAttributeName_t name, const Desc& value) {
  cudnnBackendDescriptor_t v = value.get();
  return cudnnBackendSetAttribute(d.get(), name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
}

std::vector<int64_t> engines(const cuda::GraphConvCandidates& c) {
  std::vector<int64_t> out;
  for (const auto& p : c.plans) out.push_back(p.engine);
  return out;
}

}  // namespace

TEST(EmulatedCudnnGraph, ConvGraphKeepsOnlyTheEnginesItPromises) {
  Handle h;
  const cpu::ConvShape plain{2, 8, 7, 7, 16, 3, 3, 1, 1}, strided{2, 8, 7, 7, 16, 3, 3, 2, 1};
  const size_t big = size_t(1) << 30;
  // bf16: the non-deterministic (11), run-time-compiled (13) and reduced-precision (14) engines are dropped
  cuda::GraphConvCandidates c = cuda::graph_conv_candidates(h.get(), plain, DType::BF16, cuda::kConvForward, big, 8);
  EXPECT_EQ(engines(c), (std::vector<int64_t>{12, 15, 16}));
  EXPECT_NE(c.dropped.find("engine 11: non-deterministic"), std::string::npos) << c.dropped;
  EXPECT_NE(c.dropped.find("engine 13: compiled at run time"), std::string::npos) << c.dropped;
  EXPECT_NE(c.dropped.find("engine 14: reduced-precision accumulation"), std::string::npos) << c.dropped;
  // fp32: the tensor-core engine (12) is TF32 and dropped too
  c = cuda::graph_conv_candidates(h.get(), plain, DType::F32, cuda::kConvBackwardData, big, 8);
  EXPECT_EQ(engines(c), (std::vector<int64_t>{15, 16}));
  EXPECT_NE(c.dropped.find("engine 12: TF32 in fp32"), std::string::npos) << c.dropped;
  // an engine whose plan does not finalize for the shape is dropped with cuDNN's status
  c = cuda::graph_conv_candidates(h.get(), strided, DType::BF16, cuda::kConvBackwardFilter, big, 8);
  EXPECT_EQ(engines(c), (std::vector<int64_t>{12, 16}));
  EXPECT_NE(c.dropped.find("engine 15: CUDNN_STATUS_NOT_SUPPORTED_SHAPE"), std::string::npos) << c.dropped;
  // fp32 and strided: mode A has nothing left (TF32, refused at finalization); the fallback mode's plain one
  c = cuda::graph_conv_candidates(h.get(), strided, DType::F32, cuda::kConvForward, big, 8);
  EXPECT_EQ(engines(c), (std::vector<int64_t>{16}));
  // the workspace limit and the count limit
  c = cuda::graph_conv_candidates(h.get(), plain, DType::BF16, cuda::kConvForward, 0, 8);
  EXPECT_EQ(engines(c), (std::vector<int64_t>{12, 16}));
  EXPECT_NE(c.dropped.find("engine 15: workspace above the limit"), std::string::npos) << c.dropped;
  c = cuda::graph_conv_candidates(h.get(), plain, DType::BF16, cuda::kConvForward, big, 1);
  EXPECT_EQ(engines(c), (std::vector<int64_t>{12}));
}

TEST(EmulatedCudnnGraph, AttributesHaveATypeAnOwnerAndAreFixedByFinalize) {
  Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t wrong = 9;
  EXPECT_EQ(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_INT64, 1, &wrong),
            CUDNN_STATUS_BAD_PARAM);  // a data type is CUDNN_TYPE_DATA_TYPE
  const int64_t two = 2;
  EXPECT_EQ(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &two),
            CUDNN_STATUS_BAD_PARAM);  // a convolution's attribute on a tensor
  EXPECT_EQ(cudnnBackendFinalize(t.get()), CUDNN_STATUS_BAD_PARAM);  // nothing set yet
  ASSERT_EQ(make_tensor(t, 1, 2, 8, 7, 7), CUDNN_STATUS_SUCCESS);
  const int64_t uid = 5;
  EXPECT_EQ(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid),
            CUDNN_STATUS_BAD_PARAM);  // finalized
  Desc u(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const cudnnDataType_t type = CUDNN_DATA_FLOAT;
  const int64_t dims[4] = {1, 2, 3, 4}, strides[3] = {24, 1, 8}, alignment = 2;
  ASSERT_EQ(cudnnBackendSetAttribute(u.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type), 0);
  ASSERT_EQ(cudnnBackendSetAttribute(u.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims), 0);
  ASSERT_EQ(cudnnBackendSetAttribute(u.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 3, strides), 0);
  ASSERT_EQ(cudnnBackendSetAttribute(u.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), 0);
  ASSERT_EQ(cudnnBackendSetAttribute(u.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment), 0);
  EXPECT_EQ(cudnnBackendFinalize(u.get()), CUDNN_STATUS_BAD_PARAM);  // 3 strides for 4 dims
}

TEST(EmulatedCudnnGraph, NodesTakeFinalizedDescriptorsOfAgreeingShapes) {
  Desc x(CUDNN_BACKEND_TENSOR_DESCRIPTOR), w(CUDNN_BACKEND_TENSOR_DESCRIPTOR), y(CUDNN_BACKEND_TENSOR_DESCRIPTOR),
      conv(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR), loose(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  ASSERT_EQ(make_tensor(x, 1, 2, 8, 7, 7), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(make_tensor(w, 2, 16, 8, 3, 3), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(make_tensor(y, 3, 2, 16, 4, 4), CUDNN_STATUS_SUCCESS);  // 7x7, 3x3 stride 1 pad 1 gives 7x7, not 4x4
  ASSERT_EQ(make_tensor(loose, 4, 2, 16, 7, 7, /*finalize=*/false), CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(make_convolution(conv, 1, 1), CUDNN_STATUS_SUCCESS);
  Desc op(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  EXPECT_EQ(set_desc(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, loose), CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED);
  const float one = 1.f, zero = 0.f;
  ASSERT_EQ(set_desc(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, x), 0);
  ASSERT_EQ(set_desc(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, w), 0);
  ASSERT_EQ(set_desc(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, y), 0);
  ASSERT_EQ(set_desc(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, conv), 0);
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  chain(st, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &one);
  chain(st, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero);
  ASSERT_EQ(st, CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnBackendFinalize(op.get()), CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH);
}

// Execution needs every tensor of the node by unique id, each pointer aligned as its tensor promised, and a
// workspace when the plan has one; conv_graph.cpp's own run gives all three.
TEST(EmulatedCudnnGraph, VariantPacksNameEveryTensorAlignedWithAWorkspace) {
  Handle h;
  const cpu::ConvShape s{1, 8, 5, 5, 8, 3, 3, 1, 1};
  const cuda::GraphConvCandidates c = cuda::graph_conv_candidates(h.get(), s, DType::BF16, cuda::kConvForward,
                                                                  size_t(1) << 30, 8);
  const cuda::GraphConvPlan* with_ws = nullptr;
  for (const auto& p : c.plans)
    if (p.workspace > 0) with_ws = &p;
  ASSERT_NE(with_ws, nullptr);
  void *x = nullptr, *w = nullptr, *y = nullptr, *ws = nullptr;
  ASSERT_EQ(cudaMalloc(&x, 200 * 2 + 16), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&w, 576 * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, 200 * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ws, with_ws->workspace), cudaSuccess);
  ASSERT_EQ(cudaMemset(x, 0, 200 * 2 + 16), cudaSuccess);
  ASSERT_EQ(cudaMemset(w, 0, 576 * 2), cudaSuccess);
  auto execute = [&](std::vector<int64_t> uids, std::vector<void*> ptrs, void* workspace) {
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    EXPECT_EQ(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                       (int64_t)uids.size(), uids.data()), 0);
    EXPECT_EQ(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                                       (int64_t)ptrs.size(), ptrs.data()), 0);
    EXPECT_EQ(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                       &workspace), 0);
    EXPECT_EQ(cudnnBackendFinalize(pack.get()), 0);
    return cudnnBackendExecute(h.get(), with_ws->plan.get(), pack.get());
  };
  // conv_graph.cpp's ids are x 1, w 2, y 3
  EXPECT_EQ(execute({1, 2}, {x, w}, ws), CUDNN_STATUS_BAD_PARAM);                                  // no y
  EXPECT_EQ(execute({1, 2, 3}, {static_cast<char*>(x) + 2, w, y}, ws), CUDNN_STATUS_BAD_PARAM);    // x misaligned
  EXPECT_EQ(execute({1, 2, 3}, {x, w, y}, nullptr), CUDNN_STATUS_BAD_PARAM);                        // no workspace
  void* small = nullptr;
  ASSERT_EQ(cudaMalloc(&small, 16), cudaSuccess);
  EXPECT_EQ(execute({1, 2, 3}, {x, w, y}, static_cast<char*>(small) + 8), CUDNN_STATUS_BAD_PARAM);  // too small
  cudaFree(small);
  EXPECT_EQ(execute({1, 2, 3}, {x, w, y}, ws), CUDNN_STATUS_SUCCESS);
  EXPECT_NO_THROW(cuda::run_graph_conv(h.get(), *with_ws, cuda::kConvForward, x, w, y, ws));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (void* p : {x, w, y, ws}) cudaFree(p);
}
