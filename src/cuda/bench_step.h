// `moco bench --device cuda`: whole MoCo steps on one GPU with synthetic images already on the device.
#pragma once
#include <cstdint>

#include "moco/moco.h"
#include "moco/run_log.h"

namespace moco::cuda {

struct StepBenchOptions {
  MocoConfig moco;
  int64_t batch = 256, image_size = 224;
  int steps = 20, warmup = 5;  // the allocation caches are frozen after the warm-up steps
  DType compute = DType::BF16;
  bool conv_report = false;  // also print each convolution's chosen plan and what was timed to choose it
  bool op_times = false;     // also print the device's time per kind of op (OpClock)
};

// Prints the configuration, img/s, the median milliseconds of each phase, and device memory by category,
// and returns the same numbers as the GPU's fields of `moco bench`'s JSON record (the caller adds the
// configuration's).
JsonRecord run_step_bench(const StepBenchOptions& o);

}  // namespace moco::cuda
