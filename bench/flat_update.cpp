// The flat-buffer updates over ResNet-50-sized buffers (28M floats, MoCo v2 with its MLP head):
// momentum_update (reads theta_q, theta_k, writes theta_k: 12 B/element) and sgd_momentum_step (reads
// param, grad, buf, writes param, buf: 20 B/element). Both are memory-bound, so the measure is the fraction
// of the device's copy bandwidth. Checks both kernels against the CPU first and refuses to time wrong ones.
//   build/bench_flat_update
#include <cmath>
#include <cstdio>
#include <vector>

#include "flat_update.cuh"
#include "gpu_bench.h"
#include "moco/host_layout.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

static std::vector<float> random_floats(size_t n, uint64_t stream) { return normal_floats(n, 17, stream); }

// Both kernels against cpu::momentum_update / cpu::sgd_momentum_step at a size with a float4 tail.
static bool correct() {
  const int64_t n = 4099;
  auto q = random_floats(n, 1), k = random_floats(n, 2), g = random_floats(n, 3), b = random_floats(n, 4);
  DeviceBuffer<float> dq(q, "theta_q"), dk(k, "theta_k"), dg(g, "grad"), db(b, "momentum buffer");
  kernels::momentum_update(n, 0.999, dq.get(), dk.get(), nullptr);
  kernels::sgd_momentum_step(n, 0.03f, 0.9f, 1e-4f, dq.get(), dg.get(), db.get(), nullptr);
  cpu::momentum_update<float>(n, 0.999, q.data(), k.data());
  cpu::sgd_momentum_step<float>(n, 0.03f, 0.9f, 1e-4f, q.data(), g.data(), b.data());
  const auto k2 = dk.download(), q2 = dq.download(), b2 = db.download();
  struct Pair { const std::vector<float>& got; const std::vector<float>& ref; const char* what; };
  for (const Pair& p : {Pair{k2, k, "momentum_update"}, Pair{q2, q, "sgd param"}, Pair{b2, b, "sgd buffer"}})
    for (int64_t i = 0; i < n; ++i)
      if (!(std::fabs(p.got[i] - p.ref[i]) <= 1e-6f * (1 + std::fabs(p.ref[i])))) {
        std::printf("%s differs from the CPU at %lld: %g vs %g; refusing to time it\n", p.what, (long long)i,
                    p.got[i], p.ref[i]);
        return false;
      }
  return true;
}

int main() {
  return bench::run(correct, [&](bench::Timer& timer, double copy_gbs) {
    const int64_t n = 28000000;  // (n) fp32 each
    DeviceBuffer<float> q(random_floats(n, 5), "theta_q"), k(random_floats(n, 6), "theta_k");
    DeviceBuffer<float> g(random_floats(n, 7), "grad"), b(random_floats(n, 8), "momentum buffer");
    const double ema_ms = timer.median_ms([&] { kernels::momentum_update(n, 0.999, q.get(), k.get(), nullptr); });
    const double sgd_ms = timer.median_ms(
        [&] { kernels::sgd_momentum_step(n, 0.03f, 0.9f, 1e-4f, q.get(), g.get(), b.get(), nullptr); });
    struct Line { const char* name; double ms; int bytes_per; };
    for (const Line& l : {Line{"momentum_update", ema_ms, 12}, Line{"sgd_momentum_step", sgd_ms, 20}}) {
      const double gbs = (double)n * l.bytes_per / (l.ms * 1e-3) / 1e9;
      std::printf("%-18s n=%lld: %8.4f ms  %6.0f GB/s (%d B/elem)  %.2f of copy\n", l.name, (long long)n, l.ms, gbs,
                  l.bytes_per, gbs / copy_gbs);
    }
  });
}
