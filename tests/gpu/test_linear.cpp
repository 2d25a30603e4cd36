// CudaBackend's linear layer (src/cuda/cuda_backend.cpp: two cuBLAS GEMMs for y and dx, one for dW, and the
// bias kernels) against its CPU twin, cpu::linear_forward / linear_backward run in double, at odd sizes, in
// fp32 and bf16. The weight sits at a non-zero offset of the compute copy and the bias at another offset of
// the fp32 parameters, as in an encoder's flat buffers, so a wrong offset, transpose or leading dimension
// fails. Contracts checked besides the values: dW is written (its buffer starts as NaN), db is accumulated
// onto what the fp32 gradient buffer held, and both offsets are reported ready for the all-reduce.
//
// Tolerances, relative to each output's sum of |terms| (the reference run on |inputs|): fp32 1e-5 (fp32
// accumulation of a few hundred products, CUBLAS_COMPUTE_32F, no TF32); bf16 1e-2 (inputs rounded to bf16 on
// the host so the reference sees the same values; the output is rounded to bf16, 2^-9 of it at most).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../../src/cuda/cuda_backend.h"
#include "../../src/cuda/device_buffer.h"
#include "gpu_test.h"
#include "moco/bf16_host.h"
#include "moco/host_layout.h"
#include "moco/cpu_ops.h"
#include "moco/registry.h"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

std::vector<float> values(size_t n, uint64_t stream, bool bf16) {
  std::vector<float> v = normal_floats(n, 515, stream);
  if (bf16)
    for (auto& x : v) x = bf16_value(bf16_bits(x));
  return v;
}

// Host floats into device memory of dtype `dt` at element `at` of `dst`.
void upload(void* dst, int64_t at, const std::vector<float>& v, DType dt) {
  if (dt == DType::F32) {
    MOCO_CUDA_CHECK(cudaMemcpy(static_cast<float*>(dst) + at, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  } else {
    std::vector<uint16_t> bits(v.size());
    for (size_t i = 0; i < v.size(); ++i) bits[i] = bf16_bits(v[i]);
    MOCO_CUDA_CHECK(cudaMemcpy(static_cast<uint16_t*>(dst) + at, bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
  }
}
std::vector<float> download(const void* src, int64_t at, size_t n, DType dt) {
  std::vector<float> v(n);
  if (dt == DType::F32) {
    MOCO_CUDA_CHECK(cudaMemcpy(v.data(), static_cast<const float*>(src) + at, n * 4, cudaMemcpyDeviceToHost));
  } else {
    std::vector<uint16_t> bits(n);
    MOCO_CUDA_CHECK(cudaMemcpy(bits.data(), static_cast<const uint16_t*>(src) + at, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) v[i] = bf16_value(bits[i]);
  }
  return v;
}

::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& ref,
                                 const std::vector<double>& mag, double rel, const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs((double)got[i] - ref[i]) <= rel * mag[i] + 1e-30))
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << got[i] << ", reference " << ref[i]
                                           << " (sum of |terms| " << mag[i] << ", relative tolerance " << rel << ")";
  return ::testing::AssertionSuccess();
}

void check_linear(DType act, int64_t n, int64_t in, int64_t out, uint64_t seed) {
  const bool bf16 = act == DType::BF16;
  const double rel = bf16 ? 1e-2 : 1e-5;
  const std::string name = std::string(dtype_name(act)) + " n=" + std::to_string(n) + " in=" + std::to_string(in) +
                           " out=" + std::to_string(out);
  const std::vector<float> x = values((size_t)(n * in), 4 * seed, bf16);       // (N, in)
  const std::vector<float> w = values((size_t)(out * in), 4 * seed + 1, bf16);  // (out, in)
  const std::vector<float> b = values((size_t)out, 4 * seed + 2, false);        // (out), fp32 master
  const std::vector<float> dy = values((size_t)(n * out), 4 * seed + 3, bf16);  // (N, out)
  const float db_before = 0.5f;  // what the fp32 gradient buffer holds: db must be added to it

  // the reference in double, and on magnitudes (each output's sum of |terms|)
  std::vector<double> ref_y((size_t)(n * out)), mag_y((size_t)(n * out)), ref_dx((size_t)(n * in)),
      mag_dx((size_t)(n * in)), ref_dw((size_t)(out * in), 0.0), mag_dw((size_t)(out * in), 0.0),
      ref_db((size_t)out, db_before), mag_db((size_t)out, std::fabs(db_before));
  {
    const auto xd = widened(x, false), wd = widened(w, false), bd = widened(b, false), dyd = widened(dy, false);
    const auto xa = widened(x, true), wa = widened(w, true), ba = widened(b, true), dya = widened(dy, true);
    cpu::linear_forward<double>(n, in, out, xd.data(), wd.data(), bd.data(), ref_y.data());
    cpu::linear_forward<double>(n, in, out, xa.data(), wa.data(), ba.data(), mag_y.data());
    cpu::linear_backward<double>(n, in, out, xd.data(), wd.data(), dyd.data(), ref_dx.data(), ref_dw.data(),
                                 ref_db.data());
    cpu::linear_backward<double>(n, in, out, xa.data(), wa.data(), dya.data(), mag_dx.data(), mag_dw.data(),
                                 mag_db.data());
  }

  // flat buffers as an encoder has them: the weight at w_off, the bias at b_off (multiples of 8 elements)
  const int64_t w_off = 8, b_off = w_off + (out * in + 7) / 8 * 8, size = b_off + out;
  const size_t elem = bf16 ? 2 : 4;
  DeviceBuffer<float> params((size_t)size, "params"), grads((size_t)size, "grads");  // fp32
  DeviceBuffer<char> compute((size_t)size * elem, "compute"), compute_grads((size_t)size * elem, "compute grads");
  compute_grads.fill_bytes(0xFF);  // NaN: dW must be written, not added
  upload(params.get(), b_off, b, DType::F32);
  upload(grads.get(), b_off, std::vector<float>((size_t)out, db_before), DType::F32);
  upload(compute.get(), w_off, w, act);
  WeightsView view;
  view.params = params.get();
  view.grads = grads.get();
  view.compute = compute.get();
  view.compute_grads = compute_grads.get();

  cudaStream_t stream = nullptr;
  MOCO_CUDA_CHECK(cudaStreamCreate(&stream));
  {
    cuda::CudaBackend backend(act, stream);
    std::vector<int64_t> ready;
    backend.on_gradient_ready([&](int64_t off) { ready.push_back(off); });
    Tensor xt = backend.empty({n, in}, act), dyt = backend.empty({n, out}, act);
    upload(xt.raw(), 0, x, act);
    upload(dyt.raw(), 0, dy, act);
    const Tensor y = backend.linear_forward(view, w_off, b_off, in, out, xt);
    const Tensor dx = backend.linear_backward(view, w_off, b_off, in, out, xt, dyt);
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(within(download(y.raw(), 0, (size_t)(n * out), act), ref_y, mag_y, rel, name + " y"));
    EXPECT_TRUE(within(download(dx.raw(), 0, (size_t)(n * in), act), ref_dx, mag_dx, rel, name + " dx"));
    EXPECT_TRUE(within(download(compute_grads.get(), w_off, (size_t)(out * in), act), ref_dw, mag_dw, rel,
                       name + " dW"));
    EXPECT_TRUE(within(download(grads.get(), b_off, (size_t)out, DType::F32), ref_db, mag_db, 1e-5, name + " db"));
    EXPECT_EQ(ready, (std::vector<int64_t>{w_off, b_off})) << name;
  }
  MOCO_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace

TEST(GpuLinear, ForwardAndBackwardMatchCpuAtOddSizes) {
  MOCO_REQUIRE_GPU();
  struct Size { int64_t n, in, out; };
  const Size sizes[] = {{7, 37, 13}, {1, 5, 3}, {33, 64, 129}, {32, 2048, 128}};
  uint64_t seed = 1;
  for (DType act : {DType::F32, DType::BF16})
    for (const Size& s : sizes) check_linear(act, s.n, s.in, s.out, seed++);
}
