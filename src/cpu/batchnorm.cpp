// BatchNorm2d exactly as torch keeps it: biased variance to normalise, unbiased variance into the running
// estimate, running = (1 - momentum) * running + momentum * batch. Statistics are accumulated in double
// whatever T is, so the float path is not the weak link when compared with PyTorch. Channels are independent
// and run in parallel (parallel.h); each channel's sums run in the same order on whichever thread.
#include <cmath>
#include <vector>

#include "moco/cpu_ops.h"
#include "moco/error.h"
#include "moco/parallel.h"

namespace moco::cpu {

namespace {

// Sums over one (H*W) plane in double, each over four interleaved partial sums: a single running sum is a
// chain of dependent adds that neither pipelines nor vectorises. The order is fixed by the plane size alone.
template <class T>
double plane_sum(const T* p, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += (double)p[i + k];
  for (; i < n; ++i) s[0] += (double)p[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

template <class T>
double plane_sq_dev(const T* p, int64_t n, double mean) {  // sum (p - mean)^2
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += ((double)p[i + k] - mean) * ((double)p[i + k] - mean);
  for (; i < n; ++i) s[0] += ((double)p[i] - mean) * ((double)p[i] - mean);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// sum dy and sum dy * (x - mean) * invstd over one plane
template <class T>
void plane_dy_sums(const T* x, const T* dy, int64_t n, double mean, double invstd, double& sum_dy, double& sum_dy_xhat) {
  double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) {
      a[k] += dy[i + k];
      b[k] += dy[i + k] * ((double)x[i + k] - mean) * invstd;
    }
  for (; i < n; ++i) {
    a[0] += dy[i];
    b[0] += dy[i] * ((double)x[i] - mean) * invstd;
  }
  sum_dy += (a[0] + a[1]) + (a[2] + a[3]);
  sum_dy_xhat += (b[0] + b[1]) + (b[2] + b[3]);
}

}  // namespace

template <class T>
void batchnorm_train_forward(const BNShape& s, const T* x, const T* gamma, const T* beta, T eps, T momentum, T* y,
                             T* save_mean, T* save_invstd, T* running_mean, T* running_var, int64_t* num_batches_tracked) {
  MOCO_CHECK(s.groups >= 1 && s.n % s.groups == 0, "batchnorm: batch ", s.n, " does not split into ", s.groups, " groups");
  const int64_t per = s.n / s.groups;  // samples per group
  const double count = (double)(per * s.hw);
  std::vector<double> mean_sum(s.c, 0.0), var_sum(s.c, 0.0);  // over groups, for the running update
  parallel_range(s.c, 4, [&](int64_t c0, int64_t c1) {
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0, sq = 0;
      for (int64_t n = g * per; n < (g + 1) * per; ++n) sum += plane_sum(x + (n * s.c + c) * s.hw, s.hw);
      double mean = sum / count;
      for (int64_t n = g * per; n < (g + 1) * per; ++n) sq += plane_sq_dev(x + (n * s.c + c) * s.hw, s.hw, mean);
      double var = sq / count;
      double invstd = 1.0 / std::sqrt(var + (double)eps);
      save_mean[g * s.c + c] = (T)mean;
      save_invstd[g * s.c + c] = (T)invstd;
      mean_sum[c] += mean;
      var_sum[c] += count > 1 ? sq / (count - 1) : var;
      double a = (double)gamma[c] * invstd, b = (double)beta[c] - mean * a;
      for (int64_t n = g * per; n < (g + 1) * per; ++n) {
        const T* p = x + (n * s.c + c) * s.hw;
        T* q = y + (n * s.c + c) * s.hw;
        for (int64_t i = 0; i < s.hw; ++i) q[i] = (T)((double)p[i] * a + b);
      }
    }
  });
  if (running_mean && running_var)
    for (int64_t c = 0; c < s.c; ++c) {
      running_mean[c] = (T)((1.0 - momentum) * running_mean[c] + momentum * (mean_sum[c] / s.groups));
      running_var[c] = (T)((1.0 - momentum) * running_var[c] + momentum * (var_sum[c] / s.groups));
    }
  if (num_batches_tracked) ++*num_batches_tracked;
}

template <class T>
void batchnorm_train_backward(const BNShape& s, const T* x, const T* gamma, const T* save_mean, const T* save_invstd,
                              const T* dy, T* dx, T* dgamma, T* dbeta) {
  const int64_t per = s.n / s.groups;
  const double count = (double)(per * s.hw);
  std::vector<double> dg(s.c, 0.0), db(s.c, 0.0);
  parallel_range(s.c, 4, [&](int64_t c0, int64_t c1) {
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t c = c0; c < c1; ++c) {
      const double mean = save_mean[g * s.c + c], invstd = save_invstd[g * s.c + c];
      double sum_dy = 0, sum_dy_xhat = 0;
      for (int64_t n = g * per; n < (g + 1) * per; ++n)
        plane_dy_sums(x + (n * s.c + c) * s.hw, dy + (n * s.c + c) * s.hw, s.hw, mean, invstd, sum_dy, sum_dy_xhat);
      dg[c] += sum_dy_xhat;
      db[c] += sum_dy;
      // dx = gamma * invstd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))
      const double k = (double)gamma[c] * invstd / count;
      for (int64_t n = g * per; n < (g + 1) * per; ++n) {
        const T* px = x + (n * s.c + c) * s.hw;
        const T* pd = dy + (n * s.c + c) * s.hw;
        T* q = dx + (n * s.c + c) * s.hw;
        for (int64_t i = 0; i < s.hw; ++i) {
          double xhat = ((double)px[i] - mean) * invstd;
          q[i] = (T)(k * (count * pd[i] - sum_dy - xhat * sum_dy_xhat));
        }
      }
    }
  });
  for (int64_t c = 0; c < s.c; ++c) {
    if (dgamma) dgamma[c] += (T)dg[c];
    if (dbeta) dbeta[c] += (T)db[c];
  }
}

template <class T>
void batchnorm_eval_forward(const BNShape& s, const T* x, const T* gamma, const T* beta, const T* running_mean,
                            const T* running_var, T eps, T* y) {
  parallel_range(s.c, 4, [&](int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    double invstd = 1.0 / std::sqrt((double)running_var[c] + (double)eps);
    double a = (double)gamma[c] * invstd, b = (double)beta[c] - (double)running_mean[c] * a;
    for (int64_t n = 0; n < s.n; ++n) {
      const T* p = x + (n * s.c + c) * s.hw;
      T* q = y + (n * s.c + c) * s.hw;
      for (int64_t i = 0; i < s.hw; ++i) q[i] = (T)((double)p[i] * a + b);
    }
  }
  });
}

template <class T>
void batchnorm_eval_backward(const BNShape& s, const T* x, const T* gamma, const T* running_mean,
                             const T* running_var, T eps, const T* dy, T* dx, T* dgamma, T* dbeta) {
  for (int64_t c = 0; c < s.c; ++c) {
    double invstd = 1.0 / std::sqrt((double)running_var[c] + (double)eps);
    double dg = 0, db = 0;
    for (int64_t n = 0; n < s.n; ++n) {
      const T* px = x + (n * s.c + c) * s.hw;
      const T* pd = dy + (n * s.c + c) * s.hw;
      T* q = dx + (n * s.c + c) * s.hw;
      for (int64_t i = 0; i < s.hw; ++i) {
        dg += pd[i] * ((double)px[i] - running_mean[c]) * invstd;
        db += pd[i];
        q[i] = (T)(pd[i] * (double)gamma[c] * invstd);
      }
    }
    if (dgamma) dgamma[c] += (T)dg;
    if (dbeta) dbeta[c] += (T)db;
  }
}

#define MOCO_INSTANTIATE_BN(T)                                                                                   \
  template void batchnorm_train_forward<T>(const BNShape&, const T*, const T*, const T*, T, T, T*, T*, T*, T*, T*, \
                                           int64_t*);                                                            \
  template void batchnorm_train_backward<T>(const BNShape&, const T*, const T*, const T*, const T*, const T*, T*, \
                                            T*, T*);                                                             \
  template void batchnorm_eval_forward<T>(const BNShape&, const T*, const T*, const T*, const T*, const T*, T, T*); \
  template void batchnorm_eval_backward<T>(const BNShape&, const T*, const T*, const T*, const T*, T, const T*, T*, \
                                           T*, T*);
MOCO_INSTANTIATE_BN(float)
MOCO_INSTANTIATE_BN(double)

}  // namespace moco::cpu
