// Stand-in for <cudnn.h> in the emulated kernel tests: only what src/cuda/check.h names. No convolution is
// emulated; the cuDNN paths run on a GPU only.
#pragma once

enum cudnnStatus_t { CUDNN_STATUS_SUCCESS = 0 };
inline const char* cudnnGetErrorString(cudnnStatus_t) { return "CUDNN_STATUS_SUCCESS"; }
