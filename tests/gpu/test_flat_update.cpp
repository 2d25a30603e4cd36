// The flat-buffer kernels against their CPU twins, odd sizes included (the float4 tail path).
#include <vector>

#include "flat_update.cuh"
#include "gpu_test.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;

static std::vector<float> random_floats(size_t n, uint64_t stream) {
  Rng r(99, stream);
  std::vector<float> v(n);
  for (auto& x : v) x = (float)r.normal();
  return v;
}

TEST(GpuFlatUpdate, MomentumUpdateAndSgdMatchCpu) {
  MOCO_REQUIRE_GPU();
  for (int64_t n : {1, 3, 4, 1027, 262144 + 5}) {
    auto q = random_floats(n, 1), k = random_floats(n, 2), g = random_floats(n, 3), b = random_floats(n, 4);
    Arena arena = cuda::device_arena();
    float* dq = (float*)arena.alloc(n * 4);
    float* dk = (float*)arena.alloc(n * 4);
    float* dg = (float*)arena.alloc(n * 4);
    float* db = (float*)arena.alloc(n * 4);
    cuda::copy_to_device(dq, q.data(), n * 4);
    cuda::copy_to_device(dk, k.data(), n * 4);
    cuda::copy_to_device(dg, g.data(), n * 4);
    cuda::copy_to_device(db, b.data(), n * 4);
    kernels::momentum_update(n, 0.999f, dq, dk, nullptr);
    kernels::sgd_momentum_step(n, 0.03f, 0.9f, 1e-4f, dq, dg, db, nullptr);
    cpu::momentum_update<float>(n, 0.999f, q.data(), k.data());
    cpu::sgd_momentum_step<float>(n, 0.03f, 0.9f, 1e-4f, q.data(), g.data(), b.data());
    std::vector<float> k2(n), q2(n), b2(n);
    cuda::copy_to_host(k2.data(), dk, n * 4);
    cuda::copy_to_host(q2.data(), dq, n * 4);
    cuda::copy_to_host(b2.data(), db, n * 4);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(k2[i], k[i], 1e-6f * (1 + std::fabs(k[i]))) << "n=" << n << " i=" << i;
      ASSERT_NEAR(q2[i], q[i], 1e-6f * (1 + std::fabs(q[i]))) << "n=" << n << " i=" << i;
      ASSERT_NEAR(b2[i], b[i], 1e-6f * (1 + std::fabs(b[i]))) << "n=" << n << " i=" << i;
    }
  }
}
