// The linear probe's classifier (SPEC 5): a fc layer y = x W^T + b on frozen backbone features, trained by
// SGD with momentum, and its top-1 count. One interface so that run_lincls reads the same whichever device
// trains it: the CPU (cpu::linear_*, cpu::softmax_xent, Sgd) or the GPU (src/cuda/gpu_linear_probe.h, cuBLAS
// and kernels/softmax_xent.cu), the CPU one being the GPU one's reference.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "moco/optim.h"
#include "moco/tensor.h"

namespace moco {

struct TopHits {
  int64_t top1 = 0, top5 = 0;
};

class LinearProbe {
 public:
  virtual ~LinearProbe() = default;
  // One SGD step on features (N, D) fp32 on the host and their labels (N) in [0, classes); returns the
  // batch's mean cross-entropy before the step.
  virtual double train_step(const Tensor& features, const std::vector<int>& labels, float lr) = 0;
  // Rows whose label's logit is beaten by fewer than 1 (top1) / 5 (top5) others; beaten: strictly greater, or
  // equal at a lower class, so top-1 is "the argmax (the first of equal maxima) is the label".
  virtual TopHits count_correct(const Tensor& features, const std::vector<int>& labels) = 0;
  // The parameters as one flat buffer [weight (classes, D), bias (classes)], copied to the host.
  virtual std::vector<float> parameters() const = 0;
  // The SGD momentum, laid out as parameters(), copied to the host.
  virtual std::vector<float> momentum() const = 0;
  // Both at once, as a checkpoint kept them (a resumed probe); each must hold classes * D + classes values.
  virtual void set_state(const std::vector<float>& params, const std::vector<float>& momentum) = 0;
};

// `initial`: [weight (classes, D), bias (classes)]; the probe starts from it with zero momentum.
std::unique_ptr<LinearProbe> make_cpu_linear_probe(int64_t dim, int64_t classes, std::vector<float> initial,
                                                   const SgdConfig& sgd);

// Checks shared by every probe: `initial` holds classes * D + classes parameters; a batch is features (N, D)
// fp32 on the host and N labels in [0, classes).
void check_probe_parameters(const std::vector<float>& initial, int64_t dim, int64_t classes);
void check_probe_batch(const Tensor& features, const std::vector<int>& labels, int64_t dim, int64_t classes);

}  // namespace moco
