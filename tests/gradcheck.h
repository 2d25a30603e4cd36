// Central finite differences in double: the oracle for every CPU backward.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "moco/rng.h"

namespace moco::test {

inline std::vector<double> random_vector(size_t n, uint64_t stream, double scale = 1.0) {
  Rng rng(1234, stream);
  std::vector<double> v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

// `loss` evaluates a scalar from the current contents of `x`; `analytic` is the gradient the backward gave.
// Each element of x is nudged by +-h and the central difference is compared with the analytic value.
inline void expect_gradient_matches(const char* what, std::vector<double>& x, const std::function<double()>& loss,
                                    const std::vector<double>& analytic, double h = 1e-6, double rtol = 1e-5,
                                    double atol = 1e-7) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2 * h);
    const double tol = atol + rtol * std::max(std::fabs(numeric), std::fabs(analytic[i]));
    if (std::fabs(numeric - analytic[i]) > tol && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " vs numeric " << numeric;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << x.size() << " elements disagree";
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace moco::test
