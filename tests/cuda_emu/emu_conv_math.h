// The emulated cuDNN's convolution arithmetic, shared by its legacy API (emu_cudnn.cpp) and its graph API
// (emu_cudnn_graph.cpp): one convolution problem, strided 4-d arrays of fp32 or bf16, and the three passes
// computed in double from cuDNN's documented definitions (emu_cudnn.cpp says how).
#pragma once
#include <cstddef>
#include <vector>

#include "include/cudnn.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;  // where convolutions are queued (emu_streams.h)
};

namespace emu_conv {

enum Pass { kForward, kBackwardData, kBackwardFilter };

// One convolution, checked: what the passes compute with.
struct Problem {
  cudnnDataType_t type;
  size_t elem;         // bytes per element of x, w and y
  int n, c, h, w;      // x (and dx): images, input channels, rows, columns
  int k, r, s;         // the filter: output channels, tap rows, tap columns
  int ho, wo;          // y (and dy): rows, columns
  int pad_h, pad_w, u, v, dil_h, dil_w;
  bool flip;           // CUDNN_CONVOLUTION: the filter's taps are applied mirrored
  cudnnMathType_t math;
  cudnnTensorFormat_t x_format, w_format, y_format;  // the legacy API's layouts (the graph API gives strides)
};

// A 4-d array in memory: logical sizes (outer, channels, rows, columns), i.e. (N, C, H, W) for a tensor and
// (K, C, R, S) for a filter, and the element stride of each.
struct Array4 {
  int d0, d1, d2, d3;
  long long s0, s1, s2, s3;
  cudnnDataType_t type;
  long long count() const { return (long long)d0 * d1 * d2 * d3; }
};

size_t element_bytes(cudnnDataType_t t);

// cuDNN's output size of one spatial dimension: 1 + (in + 2 * pad - ((filter - 1) * dilation + 1)) / stride,
// or -1 when the dilated filter does not fit in the padded input.
int output_dim(int in, int pad, int filter, int dilation, int stride);

// The array as dense doubles, (outer, rows, columns, channels) with channels innermost.
std::vector<double> gather(const void* src, const Array4& a);
// dst = alpha * acc + beta * dst (float scaling factors), dst not read when beta is 0.
void scatter(const std::vector<double>& acc, const Array4& a, const void* alpha, const void* beta, void* dst);

// The passes on dense arrays: x (N, H, W, C), w (K, R, S, C), y (N, Ho, Wo, K).
std::vector<double> forward(const Problem& p, const std::vector<double>& x, const std::vector<double>& w);
std::vector<double> backward_data(const Problem& p, const std::vector<double>& dy, const std::vector<double>& w);
std::vector<double> backward_filter(const Problem& p, const std::vector<double>& x, const std::vector<double>& dy);

}  // namespace emu_conv
