// Convolutions through cuDNN, channels-last, in fp32 or bf16 (fp32 accumulation), by its legacy API or its
// graph API (ConvApi below), chosen per shape by measurement.
//
// Layouts: x (N, H, W, Ci), w (Co, kh, kw, Ci) (cuDNN's NHWC filter layout), y (N, Ho, Wo, Co); every
// pointer is device memory of the given dtype (DType::F32 or DType::BF16). No bias (ResNet's convs have none).
//
// For each distinct shape (ConvShape plus dtype) the algorithms of the three passes are chosen once, by
// measuring them (cuDNN's find), and cached: the first step pays for the search, later steps only look the
// plan up. The workspace is one device buffer as large as the largest chosen algorithm needs; it grows only
// while new shapes arrive (the warm-up), and `frozen()` turns a later growth into an error.
//
// fp32 uses plain FMA math (no TF32), so it can be held tightly against the CPU reference; bf16 uses tensor
// cores. Among the measured algorithms the fastest deterministic one is taken, so a step is reproducible.
//
// CPU reference: cpu::conv2d_forward / cpu::conv2d_backward (NCHW, (Co, Ci, kh, kw) weights).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "moco/cpu_ops.h"
#include "moco/tensor.h"
#include <cuda_runtime.h>

namespace moco::cuda {

// Which of cuDNN's two APIs runs each shape's passes, chosen per shape and pass on its first call:
//   legacy  the legacy API's fastest deterministic algorithm (cudnnFind); no graph API at all;
//   graph   the fastest qualifying engine of cuDNN's graph API (conv_graph.h: deterministic, not compiled at
//           run time, fp32 accumulation, no TF32 in fp32), timed by the caller on its own buffers;
//   auto    the default: both timed the same way on the caller's buffers, and the graph engine kept unless
//           the legacy algorithm is more than kGraphMargin faster; anything the graph API refuses leaves the
//           legacy algorithm in place.
// Why auto prefers the graph API: on an H200 the legacy API costs the host about 0.1 ms a call, so a MoCo v2
// step at batch 32 waited on the host (26 ms to issue, 1194 img/s) where the graph API issues it in 5 ms
// (2543 img/s); at batch 256, where the device bounds the step, the two ran the same kernels in the same
// time (bench/results/2026-11-26-h200-run4.md).
// In every mode a legacy algorithm is chosen too: a call whose pointers are not 16-byte aligned (the graph
// plans are built for aligned data) runs it instead.
enum class ConvApi { kLegacy, kGraph, kAuto };
constexpr double kGraphMargin = 0.03;
// MOCO_CONV_API: auto (unset), legacy or graph; any other value throws naming it.
ConvApi conv_api_from_env();
const char* conv_api_name(ConvApi api);

// How a stride-2 convolution with at most 4 input channels (the ResNet stem) runs its forward and filter
// gradient, chosen per shape and pass on its first call:
//   direct          as it is: cuDNN on the 3-channel input;
//   space_to_depth  as the stride-1 convolution with a kernel of half the size over a 2x2 space-to-depth
//                   input of 16 channels (kernels/stem_space_to_depth.cuh): the same products, summed in
//                   another order. The transformed input and filter live in the workspace;
//   auto            the default: both timed on the caller's buffers, and space-to-depth kept when it is more
//                   than kStemMargin faster, transforms included.
// Why: with 3 input channels cuDNN's kernels ran the ResNet-50 stem at about 34 TFLOP/s on an H200 (a fifth
// of its 1x1s), 1.8 ms of each encoder's forward at batch 256; 16 channels fill a tensor-core k-slice.
// The data gradient always runs directly (training never asks for the image's gradient).
enum class StemForm { kDirect, kSpaceToDepth, kAuto };
constexpr double kStemMargin = 0.03;
// MOCO_STEM_FORM: auto (unset), direct or space_to_depth; any other value throws naming it.
StemForm stem_form_from_env();
const char* stem_form_name(StemForm form);
// Whether a shape has a space-to-depth form: stride 2, 1 to 4 input channels, a kernel wider than 1.
bool space_to_depth_fits(const cpu::ConvShape& s);
// That form's shape: (N, Ho + kh2 - 1, Wo + kw2 - 1, 16) input, kernel (kh2, kw2) = half the kernel rounded
// up, stride 1, no padding; the same output (N, Ho, Wo, Co).
cpu::ConvShape space_to_depth_shape(const cpu::ConvShape& s);

class Convolutions {
 public:
  // All work is issued on `stream`.
  explicit Convolutions(cudaStream_t stream, ConvApi api = conv_api_from_env(),
                        StemForm stem = stem_form_from_env());
  ConvApi api() const { return api_; }
  StemForm stem_form() const { return stem_; }
  ~Convolutions();
  Convolutions(const Convolutions&) = delete;
  Convolutions& operator=(const Convolutions&) = delete;

  // y = conv(x, w)                                    (overwrites y)
  void forward(const cpu::ConvShape& s, DType dtype, const void* x, const void* w, void* y);
  // dx = conv_transpose(dy, w)                        (overwrites dx)
  // dx += conv_transpose(dy, w)  with add             (cuDNN's beta 1: fp32 sum, rounded once; its own plan)
  void backward_data(const cpu::ConvShape& s, DType dtype, const void* dy, const void* w, void* dx,
                     bool add = false);
  // dw = correlation of x and dy                      (overwrites dw)
  void backward_filter(const cpu::ConvShape& s, DType dtype, const void* x, const void* dy, void* dw);

  // How the host waits for the stream before a search or a workspace growth (both need the queued work
  // done): cudaStreamSynchronize by default. GPU ranks pass their communicator's bounded wait, so that a
  // collective stuck on a dead peer during the warm-up ends in the watchdog's error, not a hang here.
  void set_host_wait(std::function<void()> wait);

  // The chosen plans as text, one line per shape and pass (see plans()'s first line), and such text given
  // back: a shape and pass it names then runs that legacy algorithm (and graph engine) without a search.
  // Searches pick by timing, so two processes may choose differently and round differently; a resumed run
  // given its predecessor's plans computes exactly as it would have. The stem form is part of a pass's plan
  // (a trailing space_to_depth; given plans without it run the stem directly, as they were made), and the
  // space-to-depth shape has plans of its own. A plan this machine refuses is reported on stderr and searched
  // again; malformed text throws, naming the line.
  std::string plans() const;
  void use_plans(const std::string& text);

  // After warm-up: a shape that needs more workspace than already allocated throws instead of growing.
  void freeze() { frozen_ = true; }
  bool frozen() const { return frozen_; }
  size_t workspace_bytes() const;
  // (shape, dtype) pairs with a plan; the adding backward data is not counted apart, a space-to-depth shape is
  int cached_shapes() const;
  // One line per cached shape and pass: the shape, the chosen algorithm or graph engine, its measured time
  // and workspace, and, when the graph API or the stem's space-to-depth form was considered, what it offered.
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ConvApi api_;
  StemForm stem_;
  bool frozen_ = false;
};

}  // namespace moco::cuda
