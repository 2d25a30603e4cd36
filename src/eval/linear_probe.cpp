// The linear probe's classifier on the CPU: the reference of the GPU one (src/cuda/gpu_linear_probe.cpp).
#include "moco/linear_probe.h"

#include <algorithm>

#include "moco/cpu_ops.h"
#include "moco/error.h"

namespace moco {

void check_probe_parameters(const std::vector<float>& initial, int64_t dim, int64_t classes) {
  MOCO_CHECK((int64_t)initial.size() == classes * dim + classes, "linear probe: ", initial.size(),
             " initial parameters, expected ", classes * dim + classes, " (weight (", classes, ", ", dim,
             ") and bias)");
}

void check_probe_batch(const Tensor& features, const std::vector<int>& labels, int64_t dim, int64_t classes) {
  MOCO_CHECK(features.device() == Device::CPU && features.dtype() == DType::F32 && features.dim() == 2 &&
                 features.size(1) == dim,
             "linear probe: features ", dtype_name(features.dtype()), " ", shape_str(features.shape()), " on ",
             device_name(features.device()), ", expected fp32 (N, ", dim, ") on the host");
  MOCO_CHECK((int64_t)labels.size() == features.size(0), "linear probe: ", labels.size(), " labels for ",
             features.size(0), " feature rows");
  for (int y : labels)
    MOCO_CHECK(y >= 0 && y < classes, "linear probe: label ", y, " outside [0, ", classes, ")");
}

namespace {

class CpuLinearProbe final : public LinearProbe {
 public:
  CpuLinearProbe(int64_t dim, int64_t classes, std::vector<float> initial, const SgdConfig& sgd)
      : d_(dim), classes_(classes), fc_(std::move(initial)), grad_(fc_.size()), sgd_((int64_t)fc_.size(), sgd) {
    check_probe_parameters(fc_, dim, classes);
  }

  double train_step(const Tensor& features, const std::vector<int>& labels, float lr) override {
    const int64_t n = forward(features, labels);
    dlogits_.resize(logits_.size());
    const double loss = cpu::softmax_xent<float>(n, classes_, logits_.data(), labels64_.data(), dlogits_.data());
    std::fill(grad_.begin(), grad_.end(), 0.f);
    cpu::linear_backward<float>(n, d_, classes_, features.data<float>(), fc_.data(), dlogits_.data(), nullptr,
                                grad_.data(), grad_.data() + classes_ * d_);
    sgd_.step(fc_.data(), grad_.data(), lr);
    return loss;
  }

  TopHits count_correct(const Tensor& features, const std::vector<int>& labels) override {
    const int64_t n = forward(features, labels);
    TopHits hits;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits_.data() + i * classes_;
      const int y = labels[(size_t)i];
      int64_t beaten = 0;  // by a greater logit, or an equal one at a lower class
      for (int64_t j = 0; j < classes_; ++j) beaten += row[j] > row[y] || (row[j] == row[y] && j < y);
      hits.top1 += beaten < 1;
      hits.top5 += beaten < 5;
    }
    return hits;
  }

  std::vector<float> parameters() const override { return fc_; }
  std::vector<float> momentum() const override { return sgd_.momentum_buffer(); }
  void set_state(const std::vector<float>& params, const std::vector<float>& momentum) override {
    check_probe_parameters(params, d_, classes_);
    check_probe_parameters(momentum, d_, classes_);
    fc_ = params;
    sgd_.momentum_buffer() = momentum;
  }

 private:
  int64_t forward(const Tensor& features, const std::vector<int>& labels) {  // -> N; fills logits_, labels64_
    check_probe_batch(features, labels, d_, classes_);
    const int64_t n = features.size(0);
    logits_.resize((size_t)(n * classes_));
    labels64_.assign(labels.begin(), labels.end());
    cpu::linear_forward<float>(n, d_, classes_, features.data<float>(), fc_.data(), fc_.data() + classes_ * d_,
                               logits_.data());
    return n;
  }

  int64_t d_, classes_;
  std::vector<float> fc_, grad_;   // (classes * D + classes) each: [weight, bias]
  Sgd sgd_;                        // its momentum buffer: (classes * D + classes)
  std::vector<float> logits_, dlogits_;  // (N, classes) each, reused from batch to batch
  std::vector<int64_t> labels64_;  // (N)
};

}  // namespace

std::unique_ptr<LinearProbe> make_cpu_linear_probe(int64_t dim, int64_t classes, std::vector<float> initial,
                                                   const SgdConfig& sgd) {
  return std::make_unique<CpuLinearProbe>(dim, classes, std::move(initial), sgd);
}

}  // namespace moco
