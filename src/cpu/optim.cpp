#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T> void momentum_update(int64_t n, double m, const T* theta_q, T* theta_k) {
  const T keep = (T)m, take = (T)(1.0 - m);
  for (int64_t i = 0; i < n; ++i) theta_k[i] = theta_k[i] * keep + theta_q[i] * take;
}

template <class T>
void sgd_momentum_step(int64_t n, T lr, T momentum, T weight_decay, T* param, const T* grad, T* buf) {
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i] + weight_decay * param[i];
    buf[i] = momentum * buf[i] + d;
    param[i] -= lr * buf[i];
  }
}

template void momentum_update<float>(int64_t, double, const float*, float*);
template void momentum_update<double>(int64_t, double, const double*, double*);
template void sgd_momentum_step<float>(int64_t, float, float, float, float*, const float*, float*);
template void sgd_momentum_step<double>(int64_t, double, double, double, double*, const double*, double*);

}  // namespace moco::cpu
