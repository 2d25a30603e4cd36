// SGD with momentum and weight decay over a flat parameter buffer (PyTorch semantics), and the MoCo
// learning-rate schedules.
#pragma once
#include <cstdint>
#include <vector>

namespace moco {

struct SgdConfig {
  float momentum = 0.9f;
  float weight_decay = 1e-4f;  // applied to every parameter, BN and biases included, as in the authors' code
};

class Sgd {
 public:
  Sgd(int64_t n, const SgdConfig& cfg) : cfg_(cfg), momentum_buffer_((size_t)n, 0.f) {}
  void step(float* params, const float* grads, float lr);
  std::vector<float>& momentum_buffer() { return momentum_buffer_; }  // (n)
  const std::vector<float>& momentum_buffer() const { return momentum_buffer_; }
  const SgdConfig& config() const { return cfg_; }

 private:
  SgdConfig cfg_;
  std::vector<float> momentum_buffer_;
};

// lr for an epoch: cosine, base * 0.5 * (1 + cos(pi * epoch / epochs)), or step decay x0.1 at each milestone.
float learning_rate(float base_lr, int epoch, int epochs, bool cosine, const std::vector<int>& milestones);

}  // namespace moco
