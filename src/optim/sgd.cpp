#include <cmath>

#include "moco/cpu_ops.h"
#include "moco/optim.h"

namespace moco {

void Sgd::step(float* params, const float* grads, float lr) {
  cpu::sgd_momentum_step<float>((int64_t)momentum_buffer_.size(), lr, cfg_.momentum, cfg_.weight_decay, params, grads,
                                momentum_buffer_.data());
}

float learning_rate(float base_lr, int epoch, int epochs, bool cosine, const std::vector<int>& milestones) {
  if (cosine) return (float)(base_lr * 0.5 * (1.0 + std::cos(M_PI * (double)epoch / (double)epochs)));
  float lr = base_lr;
  for (int m : milestones) lr *= epoch >= m ? 0.1f : 1.f;
  return lr;
}

}  // namespace moco
