// Float convolutions through oneDNN (Debian's libdnnl), the library PyTorch's CPU convolutions use: its JIT
// kernels work on blocked layouts (nChw16c on AVX-512) and are 2-3x faster than im2col + GEMM on the narrow
// layers of small models (bench/results/2026-11-25-cpu-onednn-conv.md). Tensors stay (N, C, H, W) and
// (Co, Ci, kh, kw) at the interface; each call reorders in and out of the layouts oneDNN picked.
//
// The im2col path (conv.cpp) stays the reference: doubles always take it (the finite-difference checks),
// MOCO_CONV=im2col forces it for floats, and tests/test_conv_float_vs_double.cpp holds this file to it.
//
// Primitives are built once per shape and cached, with their reordered buffers. oneDNN runs on OpenMP here;
// its team is sized to cpu_threads() so that MOCO_THREADS bounds both pools. Summation orders are fixed for
// a given shape and thread count, so runs repeat bit for bit (resume stays exact).
#include "conv_onednn.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include <dnnl.hpp>

#include "moco/error.h"
#include "moco/parallel.h"

namespace moco::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

struct Cached {
  std::mutex busy;  // held for a whole call: the buffers below are shared by every call of this shape
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  std::vector<float> dw_scratch;  // (Co, Ci, kh, kw): the weight gradient before it is added into dw
  // Operands in oneDNN's layouts, allocated on first use and kept: reallocating activation-sized buffers on
  // every call would fault in fresh pages each time.
  memory fwd_x, fwd_w, fwd_y, bd_dy, bd_w, bd_dx, bw_x, bw_dy, bw_dw;
};

struct Runtime {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::mutex mu;  // the cache; calls themselves come from one thread (the layers)
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>,
           std::unique_ptr<Cached>>
      cache;
  // Which thread calls, and what else set the team size (an OpenMP build of OpenBLAS, told to use one
  // thread), is not ours to know: each call sets the team to cpu_threads() for the calling thread.
};

Runtime& runtime() {
  static Runtime r;
  return r;
}

memory::dims dims4(int64_t a, int64_t b, int64_t c, int64_t d) { return {a, b, c, d}; }

Cached& cached(const ConvShape& s) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto key = std::make_tuple(s.n, s.ci, s.h, s.w, s.co, s.kh, s.kw, s.stride, s.pad);
  auto it = rt.cache.find(key);
  if (it != rt.cache.end()) return *it->second;
  const memory::dims x = dims4(s.n, s.ci, s.h, s.w), w = dims4(s.co, s.ci, s.kh, s.kw),
                     y = dims4(s.n, s.co, s.ho(), s.wo()), strides = {s.stride, s.stride}, pad = {s.pad, s.pad};
  const auto any = [](const memory::dims& d) { return memory::desc(d, memory::data_type::f32, Tag::any); };
  auto e = std::make_unique<Cached>();
  e->fwd_pd = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                      any(x), any(w), any(y), strides, pad, pad),
      rt.engine);
  e->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
      dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, any(x), any(w), any(y), strides,
                                            pad, pad),
      rt.engine, e->fwd_pd);
  e->bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, any(x), any(w), any(y),
                                               strides, pad, pad),
      rt.engine, e->fwd_pd);
  e->fwd = dnnl::convolution_forward(e->fwd_pd);
  e->bwd_data = dnnl::convolution_backward_data(e->bwd_data_pd);
  e->bwd_weights = dnnl::convolution_backward_weights(e->bwd_weights_pd);
  e->dw_scratch.resize((size_t)(s.co * s.ci * s.kh * s.kw));
  return *rt.cache.emplace(key, std::move(e)).first->second;
}

// The caller's plain `user` memory as an input in layout `want`: itself when the layouts agree, else
// reordered into `slot`.
memory input(const memory& user, const memory::desc& want, memory& slot, dnnl::stream& st) {
  if (user.get_desc() == want) return user;
  if (!slot) slot = memory(want, user.get_engine());
  dnnl::reorder(user, slot).execute(st, const_cast<memory&>(user), slot);
  return slot;
}

// Where a result in layout `want` is written: the caller's `user` memory when the layouts agree, else `slot`
// (then landed in `user` by land()).
memory output(const memory& user, const memory::desc& want, memory& slot) {
  if (user.get_desc() == want) return user;
  if (!slot) slot = memory(want, user.get_engine());
  return slot;
}

void land(const memory& got, memory& user, dnnl::stream& st) {
  if (got != user) dnnl::reorder(got, user).execute(st, const_cast<memory&>(got), user);
}

memory plain(const memory::dims& d, Tag tag, const dnnl::engine& eng, const void* data) {
  return memory({d, memory::data_type::f32, tag}, eng, const_cast<void*>(data));
}

// Read on every call, not once per process (a getenv costs nothing beside a convolution), so that a test can
// take the reference path for its own scope only (test::ScopedEnv).
bool forced_im2col() {
  const char* v = std::getenv("MOCO_CONV");
  return v && std::strcmp(v, "im2col") == 0;
}

// One call on one shape: its cache entry, held for the whole call, the OpenMP team sized for the calling
// thread, and the caller's x and w as plain oneDNN memories.
struct Call {
  Runtime& rt;
  Cached& c;
  std::lock_guard<std::mutex> hold;
  memory xu, wu;
  Call(const ConvShape& s, const float* x, const float* w)
      : rt(runtime()),
        c(cached(s)),
        hold(c.busy),
        xu(plain(dims4(s.n, s.ci, s.h, s.w), Tag::nchw, rt.engine, x)),       // (N, Ci, H, W)
        wu(plain(dims4(s.co, s.ci, s.kh, s.kw), Tag::oihw, rt.engine, w)) {  // (Co, Ci, kh, kw)
    omp_set_num_threads(cpu_threads());
  }
};

}  // namespace

bool onednn_conv_enabled() { return !forced_im2col(); }

void onednn_conv_forward(const ConvShape& s, const float* x, const float* w, float* y) {
  Call call(s, x, w);
  Runtime& rt = call.rt;
  Cached& c = call.c;
  const memory &xu = call.xu, &wu = call.wu;
  memory yu = plain(dims4(s.n, s.co, s.ho(), s.wo()), Tag::nchw, rt.engine, y);    // (N, Co, Ho, Wo)
  memory xi = input(xu, c.fwd_pd.src_desc(), c.fwd_x, rt.stream);
  memory wi = input(wu, c.fwd_pd.weights_desc(), c.fwd_w, rt.stream);
  memory yi = output(yu, c.fwd_pd.dst_desc(), c.fwd_y);
  c.fwd.execute(rt.stream, {{DNNL_ARG_SRC, xi}, {DNNL_ARG_WEIGHTS, wi}, {DNNL_ARG_DST, yi}});
  land(yi, yu, rt.stream);
  rt.stream.wait();
}

void onednn_conv_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx,
                          float* dw) {
  Call call(s, x, w);
  Runtime& rt = call.rt;
  Cached& c = call.c;
  const memory &xu = call.xu, &wu = call.wu;
  memory dyu = plain(dims4(s.n, s.co, s.ho(), s.wo()), Tag::nchw, rt.engine, dy);  // (N, Co, Ho, Wo)
  memory dy_data;  // dy in the data gradient's layout, reused by the weight gradient when it wants the same
  if (dx) {
    memory dxu = plain(dims4(s.n, s.ci, s.h, s.w), Tag::nchw, rt.engine, dx);  // (N, Ci, H, W), overwritten
    dy_data = input(dyu, c.bwd_data_pd.diff_dst_desc(), c.bd_dy, rt.stream);
    memory wi = input(wu, c.bwd_data_pd.weights_desc(), c.bd_w, rt.stream);
    memory dxi = output(dxu, c.bwd_data_pd.diff_src_desc(), c.bd_dx);
    c.bwd_data.execute(rt.stream, {{DNNL_ARG_DIFF_DST, dy_data}, {DNNL_ARG_WEIGHTS, wi}, {DNNL_ARG_DIFF_SRC, dxi}});
    land(dxi, dxu, rt.stream);
  }
  if (dw) {  // accumulated: computed into the scratch, then added
    memory dwu = plain(dims4(s.co, s.ci, s.kh, s.kw), Tag::oihw, rt.engine, c.dw_scratch.data());
    memory xi = input(xu, c.bwd_weights_pd.src_desc(), c.bw_x, rt.stream);
    memory dyi = dy_data && dy_data.get_desc() == c.bwd_weights_pd.diff_dst_desc()
                     ? dy_data
                     : input(dyu, c.bwd_weights_pd.diff_dst_desc(), c.bw_dy, rt.stream);
    memory dwi = output(dwu, c.bwd_weights_pd.diff_weights_desc(), c.bw_dw);
    c.bwd_weights.execute(rt.stream, {{DNNL_ARG_SRC, xi}, {DNNL_ARG_DIFF_DST, dyi}, {DNNL_ARG_DIFF_WEIGHTS, dwi}});
    land(dwi, dwu, rt.stream);
  }
  rt.stream.wait();
  if (dw)
    for (size_t i = 0; i < c.dw_scratch.size(); ++i) dw[i] += c.dw_scratch[i];
}

}  // namespace moco::cpu
