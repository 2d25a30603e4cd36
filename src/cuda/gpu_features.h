// Backbone (or head) features on the GPU for evaluation (FeatureExtractor, include/moco/features.h): a copy
// of a host encoder's weights and BN statistics on the device, the same layers bound to the CUDA backend, BN
// in eval mode. Views cross as host 8-bit (N, H, W, 3), normalised on the device (fp32 (N, 3, H, W) ones are taken
// too); features come back as host fp32 (N, D).
#pragma once
#include <memory>

#include "moco/features.h"

namespace moco::cuda {

// act: the compute dtype (DType::BF16 or DType::F32). The host encoder's weights are copied now; later
// changes to them are not seen.
std::unique_ptr<FeatureExtractor> make_gpu_features(const Encoder& host, DType act);

}  // namespace moco::cuda
