// The flat-buffer kernels against their CPU twins, odd sizes included (the float4 tail path); and the
// benchmarks' L2 flush read, which must leave the buffer it reads as it was and refuse a misaligned one.
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "flat_update.cuh"
#include "gpu_test.h"
#include "l2_flush.cuh"
#include "moco/host_layout.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;

static std::vector<float> random_floats(size_t n, uint64_t stream) { return normal_floats(n, 99, stream); }

TEST(GpuFlatUpdate, MomentumUpdateAndSgdMatchCpu) {
  MOCO_REQUIRE_GPU();
  for (int64_t n : {1, 3, 4, 1027, 262144 + 5}) {
    auto q = random_floats(n, 1), k = random_floats(n, 2), g = random_floats(n, 3), b = random_floats(n, 4);
    cuda::DeviceBuffer<float> dq(q, "theta_q"), dk(k, "theta_k"), dg(g, "grad"), db(b, "momentum buffer");
    kernels::momentum_update(n, 0.999, dq.get(), dk.get(), nullptr);
    kernels::sgd_momentum_step(n, 0.03f, 0.9f, 1e-4f, dq.get(), dg.get(), db.get(), nullptr);
    cpu::momentum_update<float>(n, 0.999, q.data(), k.data());
    cpu::sgd_momentum_step<float>(n, 0.03f, 0.9f, 1e-4f, q.data(), g.data(), b.data());
    const std::vector<float> k2 = dk.download(), q2 = dq.download(), b2 = db.download();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(k2[i], k[i]) << "n=" << n << " i=" << i << ": each product rounded, then the sum, on both";
      ASSERT_NEAR(q2[i], q[i], 1e-6f * (1 + std::fabs(q[i]))) << "n=" << n << " i=" << i;
      ASSERT_NEAR(b2[i], b[i], 1e-6f * (1 + std::fabs(b[i]))) << "n=" << n << " i=" << i;
    }
  }
}

TEST(GpuL2FlushRead, ReadsWithoutWritingAndRefusesBadSizes) {
  MOCO_REQUIRE_GPU();
  const size_t words = 4 * 1031;  // (1031 x 16 B): not a multiple of the grid's stride
  std::vector<uint32_t> host(words);
  for (size_t i = 0; i < words; ++i) host[i] = (uint32_t)(i * 2654435761u + 12345u);
  cuda::DeviceBuffer<uint32_t> buf(host, "flush buffer");
  kernels::l2_flush_read(buf.get(), words * 4, nullptr);
  EXPECT_EQ(buf.download(), host);
  EXPECT_THROW(kernels::l2_flush_read(buf.get(), words * 4 - 4, nullptr), std::exception) << "not a multiple of 16";
  EXPECT_THROW(kernels::l2_flush_read(buf.get() + 1, 16, nullptr), std::exception) << "not 16-byte aligned";
}
