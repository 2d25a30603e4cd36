#include "moco/features.h"

namespace moco {

Tensor CpuFeatures::features(const Tensor& x) {
  const bool was_train = enc_.is_train();
  enc_.set_train(false);  // BN with its running statistics
  Tensor f = enc_.features(x);  // (N, D)
  enc_.set_train(was_train);
  return f;
}

}  // namespace moco
