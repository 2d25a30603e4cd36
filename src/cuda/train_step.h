// The CUDA step of `moco train` (the DeviceStepFactory of train.h).
#pragma once
#include <memory>

#include "moco/train.h"

namespace moco::cuda {

// One GPU per process, chosen by the local rank; the step is GpuMoco in --precision, its communicator
// NCCL for several ranks (bootstrapped through `comm`) and the single-device one otherwise. With --device
// auto and no usable GPU it prints why and returns nullptr.
std::unique_ptr<DeviceStep> make_train_step(Moco& host, Communicator& comm, const TrainOptions& o,
                                            const AugmentRecipe& recipe);

}  // namespace moco::cuda
