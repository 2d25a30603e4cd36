// The CUDA device runtime seen from host code: device discovery and description.
// Everything here compiles only with the CUDA backend (MOCO_HAVE_CUDA).
#pragma once
#include <string>

namespace moco::cuda {

// Number of usable CUDA devices; 0 (never an exception) when there is no driver or no GPU.
int device_count();
// Why no device can be used ("no CUDA driver", "0 devices", ...), or "" when one can.
std::string no_device_reason();
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB".
std::string device_description(int device);
// The CUDA libraries this process runs with and those it was built against: "CUDA runtime 13.0 (driver
// 13.0), cuDNN 9.19.0, NCCL 2.28.3; built against CUDA 13.0, cuDNN 9.19.0, NCCL 2.28.3". A pip wheel's
// cuDNN or NCCL found first on the library path shows here.
std::string library_versions();

}  // namespace moco::cuda
