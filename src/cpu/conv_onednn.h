// Float convolutions through oneDNN (conv_onednn.cpp), used by conv2d_forward<float> / conv2d_backward<float>
// when the build has oneDNN (MOCO_HAVE_ONEDNN) and MOCO_CONV is not "im2col". Internal to src/cpu.
#pragma once
#include "moco/cpu_ops.h"

namespace moco::cpu {

bool onednn_conv_enabled();  // false when MOCO_CONV=im2col asks for the reference path
void onednn_conv_forward(const ConvShape& s, const float* x, const float* w, float* y);
// dx (nullable) is overwritten, dw (nullable) accumulated, as conv2d_backward.
void onednn_conv_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw);

}  // namespace moco::cpu
