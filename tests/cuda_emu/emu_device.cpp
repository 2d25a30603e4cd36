// The device discovery of include/moco/cuda_runtime.h for the emulated kernel tests: the emulator is the one
// device, so the gpu tests' MOCO_REQUIRE_GPU() lets their bodies run.
#include <string>

#include "moco/cuda_runtime.h"

namespace moco::cuda {

int device_count() { return 1; }
std::string no_device_reason() { return ""; }
std::string device_description(int) { return "CUDA kernel emulator on the CPU (tests/cuda_emu)"; }

}  // namespace moco::cuda
