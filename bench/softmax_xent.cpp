// Softmax cross-entropy with label 0 over MoCo logits (N, 1+K) at N=256, K=65536: loss + dlogits (reads the
// logits, writes dlogits: 8 B/element at least) and loss only (4 B/element), in both forms of the kernel (a
// row per cluster of blocks, held in registers; a row per block, read twice) side by side, each with every
// launch of the loss's reduce this device runs (after the rows kernel, or as its programmatic dependent). Memory-bound, so
// the measure is the fraction of the device's copy bandwidth, and of a copy of the same bytes (at 67 MB a
// kernel's start and end weigh). Checks each form against the CPU first (N=37, K=20010, a row over a cluster
// of 3 blocks) and refuses to time a wrong one.
//   build/bench_softmax_xent
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_bench.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"
#include "softmax_xent.cuh"

using namespace moco;
using cuda::DeviceBuffer;

// Logits shaped like MoCo's: negatives are dot products of unit vectors in 128-d (std ~ 1/sqrt(128)) over T,
// the positive higher; some rows put a few negatives above it so the hit counts are not trivial.
static std::vector<float> moco_like_logits(int64_t n, int64_t m, uint64_t stream) {
  const float inv_t = 1.f / 0.07f;
  Rng r(23, stream);
  std::vector<float> z((size_t)(n * m));  // (N, 1+K)
  for (auto& v : z) v = (float)(r.normal() * 0.088 * inv_t);
  for (int64_t i = 0; i < n; ++i) z[i * m] = (float)((0.3 + 0.1 * r.normal()) * inv_t);
  return z;
}

// The forms this device runs at the step's width (the row per cluster needs sm_90).
static std::vector<kernels::SoftmaxXentForm> forms() {
  std::vector<kernels::SoftmaxXentForm> f{kernels::SoftmaxXentForm::RowPerBlock};
  if (kernels::softmax_xent_cluster_form_fits(1 + 65536)) f.push_back(kernels::SoftmaxXentForm::RowPerCluster);
  return f;
}

// The reduce launches (softmax_xent.cuh) this device runs; Auto takes the last of them.
static std::vector<kernels::SoftmaxXentReduce> reduce_launches() {
  std::vector<kernels::SoftmaxXentReduce> r{kernels::SoftmaxXentReduce::AfterRows};
  if (kernels::softmax_xent_dependent_reduce_runs()) r.push_back(kernels::SoftmaxXentReduce::Dependent);
  return r;
}

static bool correct_form(kernels::SoftmaxXentForm form, kernels::SoftmaxXentReduce launch) {
  const std::string form_name =
      std::string(kernels::softmax_xent_form_name(form)) + ", reduce " + kernels::softmax_xent_reduce_name(launch);
  const int64_t n = 37, m = 1 + 20010;
  const auto z = moco_like_logits(n, m, 1);
  std::vector<float> ref_d((size_t)(n * m));
  const double ref_loss = cpu::softmax_xent_label0<float>(n, m, z.data(), ref_d.data());
  const int64_t ref_h1 = cpu::count_label0_in_topk<float>(n, m, z.data(), 1);
  const int64_t ref_h5 = cpu::count_label0_in_topk<float>(n, m, z.data(), 5);
  DeviceBuffer<float> dz(z, "logits"), dd((size_t)(n * m), "dlogits"), loss(1, "loss");
  DeviceBuffer<int64_t> hits(2, "hits");
  DeviceBuffer<double> ws((kernels::softmax_xent_workspace_bytes(n) + 7) / 8, "workspace");
  dd.poison();
  loss.poison();
  hits.poison();
  kernels::softmax_xent_label0(n, m, dz.get(), dd.get(), loss.get(), hits.get(), ws.get(), nullptr, form, launch);
  const auto d = dd.download();
  const double l = loss.download()[0];
  const auto h = hits.download();
  if (!(std::fabs(l - ref_loss) <= 1e-5 * (1 + std::fabs(ref_loss))) || h[0] != ref_h1 || h[1] != ref_h5) {
    std::printf("softmax_xent_label0 %s: loss %.8g hits %lld/%lld, CPU %.8g hits %lld/%lld; refusing to time it\n",
                form_name.c_str(), l, (long long)h[0], (long long)h[1], ref_loss, (long long)ref_h1, (long long)ref_h5);
    return false;
  }
  for (int64_t i = 0; i < n * m; ++i) {
    const double scale = std::fabs(ref_d[i]) + (i % m == 0 ? 1.0 / n : 0.0);
    if (!(std::fabs(d[i] - ref_d[i]) <= 1e-5 * scale + 1e-30)) {
      std::printf("softmax_xent_label0 %s: dlogits[%lld] = %g, CPU %g; refusing to time it\n", form_name.c_str(),
                  (long long)i, d[i], ref_d[i]);
      return false;
    }
  }
  return true;
}

static bool correct() {
  for (const kernels::SoftmaxXentForm form : forms())
    for (const kernels::SoftmaxXentReduce launch : reduce_launches())
      if (!correct_form(form, launch)) return false;
  return true;
}

int main() {
  return bench::run(correct, [&](bench::Timer& timer, double copy_gbs) {
    const int64_t n = 256, k = 65536, m = 1 + k;
    DeviceBuffer<float> z(moco_like_logits(n, m, 2), "logits"), d((size_t)(n * m), "dlogits");  // (N, 1+K) each
    DeviceBuffer<float> loss(1, "loss");
    DeviceBuffer<int64_t> hits(2, "hits");
    DeviceBuffer<double> ws((kernels::softmax_xent_workspace_bytes(n) + 7) / 8, "workspace");
    const double elems = (double)n * m;
    struct Line { const char* name; double ms; int bytes_per; };
    using kernels::SoftmaxXentReduce;
    const std::vector<SoftmaxXentReduce> launches = reduce_launches();
    std::printf("reduce launch auto takes here: %s\n", kernels::softmax_xent_reduce_name(launches.back()));
    double in_place_ms[2] = {0, 0};  // (forms) as the step runs it, with auto's reduce launch
    for (const kernels::SoftmaxXentForm form : forms()) {
      const char* form_name = kernels::softmax_xent_form_name(form);
      for (const SoftmaxXentReduce launch : launches) {
        const auto run = [&](const float* logits, float* dlogits) {
          kernels::softmax_xent_label0(n, m, logits, dlogits, loss.get(), hits.get(), ws.get(), nullptr, form,
                                       launch);
        };
        const double both_ms = timer.median_ms([&] { run(z.get(), d.get()); });
        const double loss_ms = timer.median_ms([&] { run(z.get(), nullptr); });
        // as the step runs it: dlogits over the logits (the values drift from call to call; the traffic does
        // not)
        const double place_ms = timer.median_ms([&] { run(d.get(), d.get()); });
        in_place_ms[form == kernels::SoftmaxXentForm::RowPerCluster] = place_ms;  // the last launch: auto's
        for (const Line& l : {Line{"loss+dlogits", both_ms, 8}, Line{"in place", place_ms, 8},
                              Line{"loss only", loss_ms, 4}}) {
          const double gbs = elems * l.bytes_per / (l.ms * 1e-3) / 1e9;
          std::printf("softmax_xent_label0 %-15s %-12s N=%lld K=%lld: %8.4f ms  %6.0f GB/s (%d B/elem)  %.2f of "
                      "copy  (reduce %s)\n", form_name, l.name, (long long)n, (long long)k, l.ms, gbs,
                      l.bytes_per, gbs / copy_gbs, kernels::softmax_xent_reduce_name(launch));
        }
      }
    }
    // The same bytes as a plain copy (67 MB read, 67 MB written): at this size a kernel's start and end weigh,
    // and the 512 MiB copy above does not show them (a cudaMemcpy of these bytes reached 0.98 of its rate on an
    // H100, with the clean flush of gpu_bench.h).
    const size_t bytes = (size_t)(n * m) * sizeof(float);
    const double copy_ms = timer.median_ms([&] {
      MOCO_CUDA_CHECK(cudaMemcpyAsync(d.get(), z.get(), bytes, cudaMemcpyDeviceToDevice, nullptr));
    });
    std::printf("copy of the same bytes (cudaMemcpy D2D %.0f MB): %8.4f ms, %.2f of the 512 MiB copy's bandwidth; "
                "row per block in place at %.2f of it\n", bytes / 1e6, copy_ms,
                2.0 * (double)bytes / (copy_ms * 1e-3) / 1e9 / copy_gbs, copy_ms / in_place_ms[0]);
    if (in_place_ms[1] > 0)
      std::printf("softmax_xent_label0 in place: row per cluster %.2fx the speed of row per block\n",
                  in_place_ms[0] / in_place_ms[1]);
  });
}
