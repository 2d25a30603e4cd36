// Stand-in for <nccl.h> in the emulated kernel tests: only what src/cuda/check.h names.
#pragma once

enum ncclResult_t { ncclSuccess = 0 };
inline const char* ncclGetErrorString(ncclResult_t) { return "no error"; }
