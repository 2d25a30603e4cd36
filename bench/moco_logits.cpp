// The MoCo logits at N=256, K=65536, C=128 (MoCo v2, one H100's batch): forward in fp32 and with bf16
// inputs, and the fp32 backward (dq). Each is one cuBLAS GEMM that reads/writes the logits in place
// (offset pointer, ld = 1 + K) plus a small column-0 kernel, so the measure is the fraction of the time
// cuBLAS takes for the same GEMM shape into a plain, aligned buffer (ld = K): 1.00 means the in-place layout
// and the l_pos kernel cost nothing. Checks all three against the CPU first (N=37, C=128, K=4099) and
// refuses to time a wrong one.
//   build/bench_moco_logits
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "../src/cuda/blas_handle.h"
#include "gpu_bench.h"
#include "moco/cpu_ops.h"
#include "moco/rng.h"
#include "moco_logits.cuh"

using namespace moco;
using cuda::DeviceBuffer;

constexpr float kInvT = 1.f / 0.07f;

// (rows, c) standard normal rows, L2-normalised like MoCo's features.
static std::vector<float> unit_rows(int64_t rows, int64_t c, uint64_t stream) {
  Rng r(29, stream);
  std::vector<float> v((size_t)(rows * c));
  for (int64_t i = 0; i < rows; ++i) {
    double sq = 0;
    for (int64_t j = 0; j < c; ++j) {
      v[i * c + j] = (float)r.normal();
      sq += (double)v[i * c + j] * v[i * c + j];
    }
    for (int64_t j = 0; j < c; ++j) v[i * c + j] = (float)(v[i * c + j] / std::sqrt(sq));
  }
  return v;
}
static std::vector<float> abs_of(std::vector<float> v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}
static const __nv_bfloat16* bf(const DeviceBuffer<uint16_t>& b) { return reinterpret_cast<const __nv_bfloat16*>(b.get()); }

// |got - ref| <= rel * mag elementwise (mag: the reference run on |inputs|, the sum of |terms|).
static bool close(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<float>& mag,
                  double rel, const char* what) {
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs((double)got[i] - ref[i]) <= rel * mag[i] + 1e-30)) {
      std::printf("%s differs from the CPU at %zu: %g vs %g; refusing to time it\n", what, i, got[i], ref[i]);
      return false;
    }
  return true;
}

// Same tolerances as tests/gpu/test_moco_kernels.cpp: 1e-5 of the sum of |terms| in fp32, 1e-4 for bf16.
static bool correct(cublasHandle_t blas) {
  const int64_t n = 37, c = 128, k = 4099, m = 1 + k;
  const auto q = unit_rows(n, c, 1), key = unit_rows(n, c, 2), queue = unit_rows(k, c, 3);
  std::vector<float> ref((size_t)(n * m)), mag((size_t)(n * m));  // (N, 1+K)
  DeviceBuffer<float> logits((size_t)(n * m), "logits");

  {  // fp32 forward
    DeviceBuffer<float> dq(q, "q"), dkey(key, "key"), dqueue(queue, "queue");
    logits.poison();
    kernels::moco_logits_forward(blas, n, c, k, dq.get(), dkey.get(), dqueue.get(), kInvT, logits.get(), nullptr);
    cpu::moco_logits_forward<float>(n, c, k, q.data(), key.data(), queue.data(), kInvT, ref.data());
    cpu::moco_logits_forward<float>(n, c, k, abs_of(q).data(), abs_of(key).data(), abs_of(queue).data(), kInvT,
                                    mag.data());
    if (!close(logits.download(), ref, mag, 1e-5, "moco_logits_forward (fp32)")) return false;
  }
  {  // bf16 forward, against the CPU on the same rounded values
    const auto qb = bf16_bits(q), keyb = bf16_bits(key), queueb = bf16_bits(queue);
    DeviceBuffer<uint16_t> dq(qb, "q bf16"), dkey(keyb, "key bf16"), dqueue(queueb, "queue bf16");
    logits.poison();
    kernels::moco_logits_forward_bf16(blas, n, c, k, bf(dq), bf(dkey), bf(dqueue), kInvT, logits.get(), nullptr);
    cpu::moco_logits_forward<float>(n, c, k, bf16_values(qb).data(), bf16_values(keyb).data(), bf16_values(queueb).data(), kInvT,
                                    ref.data());
    if (!close(logits.download(), ref, mag, 1e-4, "moco_logits_forward_bf16")) return false;
  }
  {  // fp32 backward
    std::vector<float> dl = unit_rows(n, m, 4);  // (N, 1+K), any values
    DeviceBuffer<float> ddl(dl, "dlogits"), dkey(key, "key"), dqueue(queue, "queue"), dq((size_t)(n * c), "dq");
    dq.poison();
    kernels::moco_logits_backward(blas, n, c, k, ddl.get(), dkey.get(), dqueue.get(), kInvT, dq.get(), nullptr);
    std::vector<float> r((size_t)(n * c)), a((size_t)(n * c));  // (N, C)
    cpu::moco_logits_backward<float>(n, c, k, dl.data(), key.data(), queue.data(), kInvT, r.data());
    cpu::moco_logits_backward<float>(n, c, k, abs_of(dl).data(), abs_of(key).data(), abs_of(queue).data(), kInvT,
                                     a.data());
    if (!close(dq.download(), r, a, 1e-5, "moco_logits_backward")) return false;
  }
  return true;
}

static void print_line(const char* name, double flop, double ms, double ref_ms, double floor_ms) {
  std::printf("%-26s N=256 K=65536 C=128: %8.4f ms  %6.1f TFLOP/s | plain cuBLAS GEMM %8.4f ms %6.1f TFLOP/s | "
              "%.2f of cuBLAS | memory floor %.4f ms\n",
              name, ms, flop / (ms * 1e-3) / 1e12, ref_ms, flop / (ref_ms * 1e-3) / 1e12, ref_ms / ms, floor_ms);
}

int main() {
  std::unique_ptr<cuda::BlasHandle> blas;  // made once a device is known to exist
  return bench::run([&] { blas = std::make_unique<cuda::BlasHandle>(); return correct(blas->get()); },
                    [&](bench::Timer& timer, double copy_gbs) {
    const int64_t n = 256, k = 65536, c = 128, m = 1 + k;
    const double flop = 2.0 * n * k * c;
    // bytes over copy bandwidth (both count reads + writes): the GEMM cannot beat reading its inputs and
    // writing its output once
    auto floor_ms = [&](double bytes) { return bytes / (copy_gbs * 1e9) * 1e3; };

    const auto q = unit_rows(n, c, 5), key = unit_rows(n, c, 6), queue = unit_rows(k, c, 7);
    DeviceBuffer<float> dq(q, "q"), dkey(key, "key"), dqueue(queue, "queue");  // (N, C), (N, C), (K, C)
    DeviceBuffer<float> logits((size_t)(n * m), "logits");                     // (N, 1+K)
    DeviceBuffer<float> plain((size_t)(n * k), "plain GEMM output");           // (N, K)
    DeviceBuffer<uint16_t> bq(bf16_bits(q), "q bf16"), bkey(bf16_bits(key), "key bf16"), bqueue(bf16_bits(queue), "queue bf16");
    MOCO_CUBLAS_CHECK(cublasSetStream(blas->get(), nullptr));
    const float alpha = kInvT, beta = 0.f;

    auto plain_forward = [&](const void* a, const void* b, cudaDataType_t t) {
      MOCO_CUBLAS_CHECK(cublasGemmEx(blas->get(), CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)n, (int)c, &alpha, a, t,
                                     (int)c, b, t, (int)c, &beta, plain.get(), CUDA_R_32F, (int)k, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
    };
    const double f32_ms = timer.median_ms([&] {
      kernels::moco_logits_forward(blas->get(), n, c, k, dq.get(), dkey.get(), dqueue.get(), kInvT, logits.get(),
                                   nullptr);
    });
    const double f32_ref = timer.median_ms([&] { plain_forward(dqueue.get(), dq.get(), CUDA_R_32F); });
    print_line("moco_logits_forward fp32", flop, f32_ms, f32_ref, floor_ms(4.0 * (n * m + k * c + 2 * n * c)));

    const double b16_ms = timer.median_ms([&] {
      kernels::moco_logits_forward_bf16(blas->get(), n, c, k, bf(bq), bf(bkey), bf(bqueue), kInvT, logits.get(),
                                        nullptr);
    });
    const double b16_ref = timer.median_ms([&] { plain_forward(bqueue.get(), bq.get(), CUDA_R_16BF); });
    print_line("moco_logits_forward bf16", flop, b16_ms, b16_ref, floor_ms(4.0 * n * m + 2.0 * (k * c + 2 * n * c)));

    DeviceBuffer<float> dqo((size_t)(n * c), "dq");  // (N, C); the logits buffer serves as dlogits (finite values)
    const double bwd_ms = timer.median_ms([&] {
      kernels::moco_logits_backward(blas->get(), n, c, k, logits.get(), dkey.get(), dqueue.get(), kInvT, dqo.get(),
                                    nullptr);
    });
    const double bwd_ref = timer.median_ms([&] {
      MOCO_CUBLAS_CHECK(cublasGemmEx(blas->get(), CUBLAS_OP_N, CUBLAS_OP_N, (int)c, (int)n, (int)k, &alpha,
                                     dqueue.get(), CUDA_R_32F, (int)c, plain.get(), CUDA_R_32F, (int)k, &beta,
                                     dqo.get(), CUDA_R_32F, (int)c, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    print_line("moco_logits_backward fp32", flop, bwd_ms, bwd_ref, floor_ms(4.0 * (n * m + k * c + 2 * n * c)));

    // Where a gap to cuBLAS would come from: the forward GEMM alone into rows of 1+K floats from column 1 (the
    // in-place layout: only 4-byte aligned) against rows of K+4 from column 4 (16-byte aligned, a padded
    // layout the logits could take instead), both plain cuBLAS calls with the same shape.
    DeviceBuffer<float> padded((size_t)(n * (k + 4)), "padded logits");  // (N, K+4)
    auto offset_forward = [&](float* out, int64_t ld) {
      MOCO_CUBLAS_CHECK(cublasGemmEx(blas->get(), CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)n, (int)c, &alpha,
                                     dqueue.get(), CUDA_R_32F, (int)c, dq.get(), CUDA_R_32F, (int)c, &beta, out,
                                     CUDA_R_32F, (int)ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    };
    const double odd_ms = timer.median_ms([&] { offset_forward(logits.get() + 1, m); });
    const double pad_ms = timer.median_ms([&] { offset_forward(padded.get() + 4, k + 4); });
    std::printf("logits GEMM output alignment (fp32 forward, cuBLAS alone): rows of 1+K from column 1 %8.4f ms, "
                "rows of K+4 from column 4 %8.4f ms (%.2fx)\n", odd_ms, pad_ms, odd_ms / pad_ms);
  });
}
