// The cuDNN calls of the emulated tests (include/cudnn.h): descriptors as plain host objects, and the three
// convolution passes computed on the host from cuDNN's documented definitions,
//   forward          y  = alpha * sum_{c,r,s} x[n, c, oh*u - pad_h + r*dil_h, ow*v - pad_w + s*dil_w] * w[k, c, r, s]
//                                                                                                      + beta * y
//   backward data    dx = alpha * (the adjoint of forward in x, applied to dy)                       + beta * dx
//   backward filter  dw = alpha * (the adjoint of forward in w, applied to dy, with x fixed)         + beta * dw
// (CUDNN_CONVOLUTION uses w[k, c, R-1-r, S-1-s] instead: the filter flipped), accumulated in double and
// rounded to the output type once, the output not read when beta is 0. The code shares nothing with the
// project's CPU convolutions, so a test that compares the two checks the cuDNN path's descriptors, layouts,
// pointers and algorithm/workspace bookkeeping against an independent computation.
//
// The algorithms are fiction with a purpose: each pass "has" three (include/cudnn.h says why), with fixed
// relative costs chosen so that the fastest candidate of the backward passes is non-deterministic and the
// fastest deterministic candidate of every pass needs a workspace. Workspace sizes follow what the algorithm
// would hold (an index table, an im2col buffer, FFT tiles), so they grow with the shape as real ones do.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "include/cuda_bf16.h"
#include "include/cuda_runtime.h"
#include "include/cudnn.h"
#include "emu_conv_math.h"
#include "emu_runtime.h"
#include "emu_streams.h"

struct cudnnTensorStruct {
  bool set = false;  // cudnnSetTensor4dDescriptor has succeeded on it
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int k = 0, c = 0, r = 0, s = 0;  // output channels, input channels, tap rows, tap columns
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;  // cuDNN's default for a new descriptor
};

size_t cudnnGetVersion() { return CUDNN_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_INVALID_VALUE: return "CUDNN_STATUS_INVALID_VALUE";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED: return "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED";
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE: return "CUDNN_STATUS_NOT_SUPPORTED_SHAPE";
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT: return "CUDNN_STATUS_NOT_SUPPORTED_LAYOUT";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
      return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED:
      return "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

// ---- handle

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* streamId) {
  if (!handle || !streamId) return CUDNN_STATUS_BAD_PARAM;
  *streamId = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- descriptors

namespace {

// Which descriptor arguments the fake computes with; the rest of cuDNN's menu is refused as unsupported
// (not as a bad parameter: a real cuDNN would take it).
cudnnStatus_t check_type_and_format(cudnnDataType_t type, cudnnTensorFormat_t format) {
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW_VECT_C)
    return CUDNN_STATUS_BAD_PARAM;
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_NOT_SUPPORTED;
  switch (type) {
    case CUDNN_DATA_FLOAT:
    case CUDNN_DATA_BFLOAT16: return CUDNN_STATUS_SUCCESS;
    case CUDNN_DATA_DOUBLE:
    case CUDNN_DATA_HALF:
    case CUDNN_DATA_INT8:
    case CUDNN_DATA_INT32:
    case CUDNN_DATA_UINT8:
    case CUDNN_DATA_INT64: return CUDNN_STATUS_NOT_SUPPORTED;
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// cuDNN's 4-d descriptors are limited to 2^31 - 1 elements.
bool fits_int(int a, int b, int c, int d) { return (long long)a * b * c * d <= INT_MAX; }

}  // namespace

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* tensorDesc) {
  if (!tensorDesc) return CUDNN_STATUS_BAD_PARAM;
  *tensorDesc = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
  delete tensorDesc;  // cuDNN accepts NULL here
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w) {
  if (!tensorDesc || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_type_and_format(dataType, format)) return st;
  if (!fits_int(n, c, h, w)) return CUDNN_STATUS_NOT_SUPPORTED;
  *tensorDesc = cudnnTensorStruct{true, format, dataType, n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* filterDesc) {
  if (!filterDesc) return CUDNN_STATUS_BAD_PARAM;
  *filterDesc = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
  delete filterDesc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (!filterDesc || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check_type_and_format(dataType, format)) return st;
  if (!fits_int(k, c, h, w)) return CUDNN_STATUS_NOT_SUPPORTED;
  *filterDesc = cudnnFilterStruct{true, format, dataType, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* convDesc) {
  if (!convDesc) return CUDNN_STATUS_BAD_PARAM;
  *convDesc = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
  delete convDesc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc, int pad_h, int pad_w, int u,
                                              int v, int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
  // The documented BAD_PARAM cases: a negative pad, a non-positive stride or dilation, an unknown mode.
  if (!convDesc || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
  // fp32 accumulation is what both supported data types use (bf16 data with FLOAT compute is cuDNN's
  // "pseudo-bf16" configuration); any other compute type is beyond the fake.
  if (computeType != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  const cudnnMathType_t math = convDesc->math;  // the math type is set separately and survives this call
  *convDesc = cudnnConvolutionStruct{true, pad_h, pad_w, u, v, dilation_h, dilation_w, mode, computeType, math};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc, cudnnMathType_t mathType) {
  if (!convDesc) return CUDNN_STATUS_BAD_PARAM;
  switch (mathType) {
    case CUDNN_DEFAULT_MATH:
    case CUDNN_TENSOR_OP_MATH:
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
    case CUDNN_FMA_MATH: convDesc->math = mathType; return CUDNN_STATUS_SUCCESS;
  }
  return CUDNN_STATUS_BAD_PARAM;
}
cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc, cudnnMathType_t* mathType) {
  if (!convDesc || !mathType) return CUDNN_STATUS_BAD_PARAM;
  *mathType = convDesc->math;
  return CUDNN_STATUS_SUCCESS;
}

namespace emu_conv {

int output_dim(int in, int pad, int filter, int dilation, int stride) {
  const long long span = (long long)in + 2LL * pad - ((long long)(filter - 1) * dilation + 1);
  return span < 0 ? -1 : (int)(1 + span / stride);
}

}  // namespace emu_conv

using namespace emu_conv;

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t inputTensorDesc,
                                                    const cudnnFilterDescriptor_t filterDesc, int* n, int* c, int* h,
                                                    int* w) {
  if (!convDesc || !inputTensorDesc || !filterDesc || !n || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM;
  const cudnnConvolutionStruct& cv = *convDesc;
  const cudnnTensorStruct& x = *inputTensorDesc;
  const cudnnFilterStruct& f = *filterDesc;
  if (!cv.set || !x.set || !f.set || x.c != f.c) return CUDNN_STATUS_BAD_PARAM;
  const int oh = output_dim(x.h, cv.pad_h, f.r, cv.dil_h, cv.u), ow = output_dim(x.w, cv.pad_w, f.s, cv.dil_w, cv.v);
  if (oh < 1 || ow < 1) return CUDNN_STATUS_BAD_PARAM;
  *n = x.n;
  *c = f.k;
  *h = oh;
  *w = ow;
  return CUDNN_STATUS_SUCCESS;
}

// ---- the convolution passes

namespace emu_conv {


size_t element_bytes(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT ? sizeof(float) : sizeof(__nv_bfloat16); }

// The descriptors must describe one convolution: x's channels are the filter's, y has the output size
// cudnnGetConvolution2dForwardOutputDim gives, and the three share one data type.
cudnnStatus_t make_problem(const cudnnTensorStruct* x, const cudnnFilterStruct* f, const cudnnConvolutionStruct* cv,
                           const cudnnTensorStruct* y, Problem* p) {
  if (!x || !f || !cv || !y || !x->set || !f->set || !cv->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
  if (x->type != f->type || x->type != y->type || x->c != f->c) return CUDNN_STATUS_BAD_PARAM;
  const int ho = output_dim(x->h, cv->pad_h, f->r, cv->dil_h, cv->u);
  const int wo = output_dim(x->w, cv->pad_w, f->s, cv->dil_w, cv->v);
  if (ho < 1 || wo < 1 || y->n != x->n || y->c != f->k || y->h != ho || y->w != wo) return CUDNN_STATUS_BAD_PARAM;
  Problem& q = *p;
  q.type = x->type;
  q.elem = element_bytes(x->type);
  q.n = x->n, q.c = x->c, q.h = x->h, q.w = x->w;
  q.k = f->k, q.r = f->r, q.s = f->s;
  q.ho = ho, q.wo = wo;
  q.pad_h = cv->pad_h, q.pad_w = cv->pad_w, q.u = cv->u, q.v = cv->v, q.dil_h = cv->dil_h, q.dil_w = cv->dil_w;
  q.flip = cv->mode == CUDNN_CONVOLUTION;
  q.math = cv->math;
  q.x_format = x->format, q.w_format = f->format, q.y_format = y->format;
  return CUDNN_STATUS_SUCCESS;
}

Array4 array4(cudnnTensorFormat_t format, cudnnDataType_t type, int d0, int d1, int d2, int d3) {
  Array4 a{d0, d1, d2, d3, 0, 0, 0, 0, type};
  if (format == CUDNN_TENSOR_NHWC) {  // (outer, rows, columns, channels) in memory
    a.s1 = 1;
    a.s3 = d1;
    a.s2 = (long long)d3 * d1;
    a.s0 = (long long)d2 * d3 * d1;
  } else {  // NCHW: (outer, channels, rows, columns)
    a.s3 = 1;
    a.s2 = d3;
    a.s1 = (long long)d2 * d3;
    a.s0 = (long long)d1 * d2 * d3;
  }
  return a;
}
Array4 x_array(const Problem& p) { return array4(p.x_format, p.type, p.n, p.c, p.h, p.w); }
Array4 w_array(const Problem& p) { return array4(p.w_format, p.type, p.k, p.c, p.r, p.s); }
Array4 y_array(const Problem& p) { return array4(p.y_format, p.type, p.n, p.k, p.ho, p.wo); }

// double -> bf16 with one rounding: a plain double -> float -> bf16 would round twice and can land one ulp
// off at a tie. Rounding to float towards zero and making an inexact result odd (round to odd) keeps the
// information the second rounding needs, so that one is then the only real rounding.
__nv_bfloat16 to_bf16(double d) {
  float f = (float)d;
  if (std::isfinite(f) && (double)f != d) {
    if (std::fabs((double)f) > std::fabs(d)) f = std::nextafter(f, 0.f);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits |= 1u;
    std::memcpy(&f, &bits, 4);
  }
  return __float2bfloat16_rn(f);
}

inline double load(const float* p) { return *p; }
inline double load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
inline void store(float* p, double v) { *p = (float)v; }
inline void store(__nv_bfloat16* p, double v) { *p = to_bf16(v); }

// Reads the array into a dense buffer of doubles, (outer, rows, columns, channels) with channels innermost,
// whatever its format, so the passes' inner loops run over contiguous channels.
template <class T>
void gather_as(const T* src, const Array4& a, double* dst) {
  for (int i0 = 0; i0 < a.d0; ++i0)
    for (int i2 = 0; i2 < a.d2; ++i2)
      for (int i3 = 0; i3 < a.d3; ++i3) {
        const T* p = src + i0 * a.s0 + i2 * a.s2 + i3 * a.s3;
        for (int i1 = 0; i1 < a.d1; ++i1) *dst++ = load(p + i1 * a.s1);
      }
}
std::vector<double> gather(const void* src, const Array4& a) {
  std::vector<double> out((size_t)a.count());  // (d0, d2, d3, d1)
  if (a.type == CUDNN_DATA_FLOAT)
    gather_as(static_cast<const float*>(src), a, out.data());
  else
    gather_as(static_cast<const __nv_bfloat16*>(src), a, out.data());
  return out;
}

// dst = alpha * acc + beta * dst, element by element, acc dense as gather() leaves it; dst is not read
// when beta is 0 (cuDNN's rule, so an uninitialised output cannot leak NaNs into the result).
template <class T>
void scatter_as(const double* acc, const Array4& a, double alpha, double beta, T* dst) {
  for (int i0 = 0; i0 < a.d0; ++i0)
    for (int i2 = 0; i2 < a.d2; ++i2)
      for (int i3 = 0; i3 < a.d3; ++i3) {
        T* p = dst + i0 * a.s0 + i2 * a.s2 + i3 * a.s3;
        for (int i1 = 0; i1 < a.d1; ++i1) {
          T* q = p + i1 * a.s1;
          const double v = *acc++ * alpha;
          store(q, beta == 0 ? v : v + beta * load(q));
        }
      }
}
void scatter(const std::vector<double>& acc, const Array4& a, const void* alpha, const void* beta, void* dst) {
  // float scaling factors for float and bf16 data (cuDNN's rule: double only for double data)
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  if (a.type == CUDNN_DATA_FLOAT)
    scatter_as(acc.data(), a, al, be, static_cast<float*>(dst));
  else
    scatter_as(acc.data(), a, al, be, static_cast<__nv_bfloat16*>(dst));
}

// The input pixel tap (r, s) of output pixel (oh, ow) reads, and the filter tap that multiplies it.
inline int in_row(const Problem& p, int oh, int r) { return oh * p.u - p.pad_h + r * p.dil_h; }
inline int in_col(const Problem& p, int ow, int s) { return ow * p.v - p.pad_w + s * p.dil_w; }
inline int tap_row(const Problem& p, int r) { return p.flip ? p.r - 1 - r : r; }
inline int tap_col(const Problem& p, int s) { return p.flip ? p.s - 1 - s : s; }

// x (N, H, W, C), w (K, R, S, C) dense -> y (N, Ho, Wo, K) dense.
std::vector<double> forward(const Problem& p, const std::vector<double>& x, const std::vector<double>& w) {
  std::vector<double> y((size_t)p.n * p.ho * p.wo * p.k, 0.0);  // (N, Ho, Wo, K)
  double* out = y.data();
  for (int n = 0; n < p.n; ++n)
    for (int oh = 0; oh < p.ho; ++oh)
      for (int ow = 0; ow < p.wo; ++ow)
        for (int k = 0; k < p.k; ++k) {
          double acc = 0;
          for (int r = 0; r < p.r; ++r) {
            const int ih = in_row(p, oh, r);
            if (ih < 0 || ih >= p.h) continue;
            for (int s = 0; s < p.s; ++s) {
              const int iw = in_col(p, ow, s);
              if (iw < 0 || iw >= p.w) continue;
              const double* xp = &x[(((size_t)n * p.h + ih) * p.w + iw) * p.c];
              const double* wp = &w[(((size_t)k * p.r + tap_row(p, r)) * p.s + tap_col(p, s)) * p.c];
              for (int c = 0; c < p.c; ++c) acc += xp[c] * wp[c];
            }
          }
          *out++ = acc;
        }
  return y;
}

// dy (N, Ho, Wo, K), w (K, R, S, C) dense -> dx (N, H, W, C) dense: every product forward() forms is sent
// back to the input pixel it read, which is the adjoint by construction.
std::vector<double> backward_data(const Problem& p, const std::vector<double>& dy, const std::vector<double>& w) {
  std::vector<double> dx((size_t)p.n * p.h * p.w * p.c, 0.0);  // (N, H, W, C)
  for (int n = 0; n < p.n; ++n)
    for (int oh = 0; oh < p.ho; ++oh)
      for (int ow = 0; ow < p.wo; ++ow) {
        const double* dyp = &dy[(((size_t)n * p.ho + oh) * p.wo + ow) * p.k];
        for (int r = 0; r < p.r; ++r) {
          const int ih = in_row(p, oh, r);
          if (ih < 0 || ih >= p.h) continue;
          for (int s = 0; s < p.s; ++s) {
            const int iw = in_col(p, ow, s);
            if (iw < 0 || iw >= p.w) continue;
            double* dxp = &dx[(((size_t)n * p.h + ih) * p.w + iw) * p.c];
            for (int k = 0; k < p.k; ++k) {
              const double g = dyp[k];
              const double* wp = &w[(((size_t)k * p.r + tap_row(p, r)) * p.s + tap_col(p, s)) * p.c];
              for (int c = 0; c < p.c; ++c) dxp[c] += g * wp[c];
            }
          }
        }
      }
  return dx;
}

// x (N, H, W, C), dy (N, Ho, Wo, K) dense -> dw (K, R, S, C) dense: every product forward() forms is sent
// back to the filter tap it used.
std::vector<double> backward_filter(const Problem& p, const std::vector<double>& x, const std::vector<double>& dy) {
  std::vector<double> dw((size_t)p.k * p.r * p.s * p.c, 0.0);  // (K, R, S, C)
  for (int n = 0; n < p.n; ++n)
    for (int oh = 0; oh < p.ho; ++oh)
      for (int ow = 0; ow < p.wo; ++ow) {
        const double* dyp = &dy[(((size_t)n * p.ho + oh) * p.wo + ow) * p.k];
        for (int r = 0; r < p.r; ++r) {
          const int ih = in_row(p, oh, r);
          if (ih < 0 || ih >= p.h) continue;
          for (int s = 0; s < p.s; ++s) {
            const int iw = in_col(p, ow, s);
            if (iw < 0 || iw >= p.w) continue;
            const double* xp = &x[(((size_t)n * p.h + ih) * p.w + iw) * p.c];
            for (int k = 0; k < p.k; ++k) {
              const double g = dyp[k];
              double* dwp = &dw[(((size_t)k * p.r + tap_row(p, r)) * p.s + tap_col(p, s)) * p.c];
              for (int c = 0; c < p.c; ++c) dwp[c] += g * xp[c];
            }
          }
        }
      }
  return dw;
}

}  // namespace emu_conv

namespace {

// ---- the algorithms the fake "has"

// One candidate: its cost relative to the pass's reference algorithm, and whether it is deterministic.
struct AlgoSpec {
  int algo;
  double cost;
  cudnnDeterminism_t determinism;
};
// Forward: the fastest one needs a workspace (its index table); the one without a workspace is slower.
const AlgoSpec kForwardAlgos[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, 1.0, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 1.25, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, 1.5, CUDNN_DETERMINISTIC},
};
// Backward passes: ALGO_0 (atomic adds, as cuDNN documents it) is the fastest but non-deterministic, so a
// caller that prefers determinism must pass it over for ALGO_1, which needs a workspace.
const AlgoSpec kBackwardDataAlgos[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, 0.9, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, 1.0, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, 1.6, CUDNN_DETERMINISTIC},
};
const AlgoSpec kBackwardFilterAlgos[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, 0.9, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, 1.0, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, 1.6, CUDNN_DETERMINISTIC},
};

int algo_count(Pass pass) {
  return pass == kForward        ? (int)CUDNN_CONVOLUTION_FWD_ALGO_COUNT
         : pass == kBackwardData ? (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                                 : (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}
const AlgoSpec* spec(Pass pass, int algo) {
  const AlgoSpec* first = pass == kForward ? kForwardAlgos : pass == kBackwardData ? kBackwardDataAlgos
                                                                                   : kBackwardFilterAlgos;
  for (int i = 0; i < 3; ++i)
    if (first[i].algo == algo) return &first[i];
  return nullptr;
}

// FFT tiles: 32 x 32 complex fp32 values per plane, for the planes of dy, w and the result.
size_t fft_tiling_bytes(const Problem& p) {
  return (size_t)32 * 32 * 8 * ((size_t)p.n * p.k + (size_t)p.k * p.c + (size_t)p.n * p.c);
}

// The workspace `algo` needs for the problem: CUDNN_STATUS_BAD_PARAM for a value that is no algorithm of
// the pass, CUDNN_STATUS_NOT_SUPPORTED for one the fake does not have (or that cannot take this problem).
cudnnStatus_t workspace_need(Pass pass, int algo, const Problem& p, size_t* bytes) {
  if (algo < 0 || algo >= algo_count(pass)) return CUDNN_STATUS_BAD_PARAM;
  if (!spec(pass, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  const size_t taps = (size_t)p.r * p.s, out_pixels = (size_t)p.ho * p.wo;
  const bool fft = (pass == kBackwardData && algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING) ||
                   (pass == kBackwardFilter && algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING);
  if (fft && (p.dil_h != 1 || p.dil_w != 1)) return CUDNN_STATUS_NOT_SUPPORTED;  // FFT needs undilated taps
  if (fft) {
    *bytes = fft_tiling_bytes(p);
  } else if (pass == kForward) {
    switch (algo) {
      case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:  // one int32 input offset per output pixel and tap
        *bytes = sizeof(int32_t) * out_pixels * taps;
        break;
      case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:  // the im2col matrix (N * Ho * Wo, R * S * C) of x
        *bytes = p.elem * p.n * out_pixels * taps * p.c;
        break;
      default: *bytes = 0;
    }
  } else if (pass == kBackwardData) {
    // ALGO_1: the filter rotated to (C, R, S, K), in fp32
    *bytes = algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ? sizeof(float) * p.k * taps * p.c : 0;
  } else {
    // ALGO_1: the im2col matrix of x, as the forward GEMM holds it
    *bytes = algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ? p.elem * p.n * out_pixels * taps * p.c : 0;
  }
  return CUDNN_STATUS_SUCCESS;
}

// The "measured" time in ms: a made-up throughput over the multiply-adds, plus a launch overhead, scaled by
// the algorithm's cost; fixed, so that a search picks the same algorithm on every run.
float fake_ms(const Problem& p, double cost) {
  const double macs = (double)p.n * p.ho * p.wo * p.k * p.c * p.r * p.s;
  return (float)((0.005 + macs * 1e-7) * cost);
}

// What an algorithm does to its workspace: writes all of it. A caller that sized it too small, or handed
// over memory still in use, sees the damage.
void scribble(void* p, size_t bytes) {
  if (p && bytes) std::memset(p, 0xFF, bytes);
}

// The checks every run of a pass makes at the call: the algorithm exists here and the workspace is as large
// as it needs. *need is what the run will scribble over, as the real kernels would use it.
cudnnStatus_t prepare(Pass pass, int algo, const Problem& p, void* ws, size_t ws_bytes, size_t* need) {
  if (const cudnnStatus_t st = workspace_need(pass, algo, p, need)) return st;
  if (ws_bytes < *need || (*need > 0 && !ws)) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

// Checks a run of a pass (prepare) and queues it on the handle's stream. The descriptors (in p) and the scaling
// factors are read at the call, as cuDNN reads them; the data and the workspace when it runs.
cudnnStatus_t queue_run(cudnnHandle_t handle, Pass pass, int algo, const Problem& p, void* ws, size_t ws_bytes,
                        const void* alpha, const void* beta, std::function<void(const float*, const float*)> run) {
  size_t need = 0;
  if (const cudnnStatus_t st = prepare(pass, algo, p, ws, ws_bytes, &need)) return st;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  cuda_emu::enqueue(handle->stream, [=] {
    if (cuda_emu::count_only()) return;
    scribble(ws, need);
    run(&al, &be);
  });
  return CUDNN_STATUS_SUCCESS;
}

// The find calls: every algorithm of the pass, the ones that ran (status SUCCESS) first by time, then those
// whose workspace did not fit (CUDNN_STATUS_ALLOC_FAILED, as cuDNN reports them), then those the fake does
// not have (NOT_SUPPORTED); the first requestedAlgoCount of them. The output is left holding garbage
// (0xFF bytes: NaN in fp32 and bf16), as cuDNN documents: the caller must compute it again.
// MOCO_EMU_CUDNN_FIND=fail: every candidate of a search fails at run time (CUDNN_STATUS_EXECUTION_FAILED),
// after the search has written over its output as a real one does; so the tests reach the callers' handling
// of a search that leaves no usable algorithm.
bool searches_fail() {
  const char* v = std::getenv("MOCO_EMU_CUDNN_FIND");
  return v && std::strcmp(v, "fail") == 0;
}

template <class Perf, class Algo>
cudnnStatus_t find(Pass pass, const Problem& p, void* out, size_t out_bytes, int requested, int* returned,
                   Perf* perf, void* ws, size_t ws_bytes) {
  if (requested <= 0 || !returned || !perf) return CUDNN_STATUS_BAD_PARAM;
  cuda_emu::sync_device();  // the find calls block the host; they run after the work queued before them
  if (!ws) ws_bytes = 0;  // no buffer: only algorithms without a workspace can run
  std::vector<Perf> all;
  size_t used = 0;  // the most workspace any algorithm that ran wrote
  for (int a = 0; a < algo_count(pass); ++a) {
    Perf r{};
    r.algo = (Algo)a;
    r.mathType = p.math;
    r.time = -1.f;
    r.determinism = CUDNN_NON_DETERMINISTIC;
    size_t need = 0;
    if (workspace_need(pass, a, p, &need) != CUDNN_STATUS_SUCCESS) {
      r.status = CUDNN_STATUS_NOT_SUPPORTED;
    } else {
      const AlgoSpec& s = *spec(pass, a);
      r.memory = need;
      r.determinism = s.determinism;
      if (need > ws_bytes) {
        r.status = CUDNN_STATUS_ALLOC_FAILED;
      } else if (searches_fail()) {
        r.status = CUDNN_STATUS_EXECUTION_FAILED;
        used = std::max(used, need);
      } else {
        r.status = CUDNN_STATUS_SUCCESS;
        r.time = fake_ms(p, s.cost);
        used = std::max(used, need);
      }
    }
    all.push_back(r);
  }
  auto rank = [](cudnnStatus_t st) { return st == CUDNN_STATUS_SUCCESS ? 0 : st == CUDNN_STATUS_ALLOC_FAILED ? 1 : 2; };
  std::stable_sort(all.begin(), all.end(), [&](const Perf& a, const Perf& b) {
    if (rank(a.status) != rank(b.status)) return rank(a.status) < rank(b.status);
    return a.status == CUDNN_STATUS_SUCCESS && a.time < b.time;
  });
  const int count = std::min(requested, (int)all.size());
  std::copy(all.begin(), all.begin() + count, perf);
  *returned = count;
  scribble(ws, used);
  scribble(out, out_bytes);
  return CUDNN_STATUS_SUCCESS;
}

size_t array_bytes(const Array4& a) { return (size_t)a.count() * element_bytes(a.type); }

}  // namespace

// ---- forward

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                     const void* x, const cudnnFilterDescriptor_t wDesc,
                                                     const void* w, const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t yDesc, void* y,
                                                     const int requestedAlgoCount, int* returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t* perfResults, void* workSpace,
                                                     size_t workSpaceSizeInBytes) {
  Problem p;
  if (!handle || !x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(xDesc, wDesc, convDesc, yDesc, &p)) return st;
  return find<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      kForward, p, y, array_bytes(y_array(p)), requestedAlgoCount, returnedAlgoCount, perfResults, workSpace,
      workSpaceSizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes) {
  Problem p;
  if (!handle || !sizeInBytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(xDesc, wDesc, convDesc, yDesc, &p)) return st;
  return workspace_need(kForward, algo, p, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void* x, const cudnnFilterDescriptor_t wDesc, const void* w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
                                      const cudnnTensorDescriptor_t yDesc, void* y) {
  Problem p;
  if (!handle || !alpha || !beta || !x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(xDesc, wDesc, convDesc, yDesc, &p)) return st;
  return queue_run(handle, kForward, algo, p, workSpace, workSpaceSizeInBytes, alpha, beta,
                   [=](const float* al, const float* be) {
    scatter(forward(p, gather(x, x_array(p)), gather(w, w_array(p))), y_array(p), al, be, y);
  });
}

// ---- backward data

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnTensorDescriptor_t dyDesc,
    const void* dy, const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc, void* dx,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdDataAlgoPerf_t* perfResults,
    void* workSpace, size_t workSpaceSizeInBytes) {
  Problem p;
  if (!handle || !w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(dxDesc, wDesc, convDesc, dyDesc, &p)) return st;
  return find<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      kBackwardData, p, dx, array_bytes(x_array(p)), requestedAlgoCount, returnedAlgoCount, perfResults, workSpace,
      workSpaceSizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                           const cudnnTensorDescriptor_t dyDesc,
                                                           const cudnnConvolutionDescriptor_t convDesc,
                                                           const cudnnTensorDescriptor_t dxDesc,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes) {
  Problem p;
  if (!handle || !sizeInBytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(dxDesc, wDesc, convDesc, dyDesc, &p)) return st;
  return workspace_need(kBackwardData, algo, p, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           const cudnnFilterDescriptor_t wDesc, const void* w,
                                           const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workSpace,
                                           size_t workSpaceSizeInBytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxDesc, void* dx) {
  Problem p;
  if (!handle || !alpha || !beta || !w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(dxDesc, wDesc, convDesc, dyDesc, &p)) return st;
  return queue_run(handle, kBackwardData, algo, p, workSpace, workSpaceSizeInBytes, alpha, beta,
                   [=](const float* al, const float* be) {
    scatter(backward_data(p, gather(dy, y_array(p)), gather(w, w_array(p))), x_array(p), al, be, dx);
  });
}

// ---- backward filter

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  if (!handle || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void* x, const cudnnTensorDescriptor_t dyDesc,
    const void* y, const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t dwDesc, void* dw,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdFilterAlgoPerf_t* perfResults,
    void* workSpace, size_t workSpaceSizeInBytes) {
  Problem p;
  if (!handle || !x || !y || !dw) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(xDesc, dwDesc, convDesc, dyDesc, &p)) return st;
  return find<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      kBackwardFilter, p, dw, array_bytes(w_array(p)), requestedAlgoCount, returnedAlgoCount, perfResults, workSpace,
      workSpaceSizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle,
                                                             const cudnnTensorDescriptor_t xDesc,
                                                             const cudnnTensorDescriptor_t dyDesc,
                                                             const cudnnConvolutionDescriptor_t convDesc,
                                                             const cudnnFilterDescriptor_t gradDesc,
                                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                                             size_t* sizeInBytes) {
  Problem p;
  if (!handle || !sizeInBytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(xDesc, gradDesc, convDesc, dyDesc, &p)) return st;
  return workspace_need(kBackwardFilter, algo, p, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void* x,
                                             const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace,
                                             size_t workSpaceSizeInBytes, const void* beta,
                                             const cudnnFilterDescriptor_t dwDesc, void* dw) {
  Problem p;
  if (!handle || !alpha || !beta || !x || !dy || !dw) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = make_problem(xDesc, dwDesc, convDesc, dyDesc, &p)) return st;
  return queue_run(handle, kBackwardFilter, algo, p, workSpace, workSpaceSizeInBytes, alpha, beta,
                   [=](const float* al, const float* be) {
    scatter(backward_filter(p, gather(x, x_array(p)), gather(dy, y_array(p))), w_array(p), al, be, dw);
  });
}
