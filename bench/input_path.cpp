// The views' path into the network, in the two forms a batch can take: normalised fp32 (N, 3, S, S), as a
// CPU-style loader makes it, against the 8-bit (N, S, S, 3) views `moco train` hands the GPU step. For each:
//   - the copy of one view batch from page-locked host memory (cudaMemcpy host to device);
//   - its conversion into the network's bf16 channels-last input: nchw_to_nhwc (fp32 -> bf16 transpose)
//     against image_to_nhwc (uint8 -> normalised bf16, kernels/image_normalize.cu);
//   - the key shuffle's row gather on one GPU (kernels/row_gather.cu) over rows of fp32 and of uint8 images;
//   - the augmentation stages training runs on the device (GpuViewStages: v2 jitter, grayscale, blur, flip) on
//     a batch of 8-bit crops, every stage drawn on, with the blur at its widest (sigma 2, 13 taps).
// The conversions and gathers are memory-bound: GB/s and the fraction of the device's copy bandwidth; the
// host copy is reported in GB/s. The last line is the ratio of the fp32 path to the 8-bit one, per view batch.
// Checks image_to_nhwc and the byte gather against plain loops, and the stages against their CPU twin
// (apply_view_stages_u8), first, and refuses to time wrong ones.
//   build/bench_input_path      (batch 256 at 224 px, MoCo v2's per-GPU batch of the authors' 8-GPU run x 8)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../src/cuda/pinned_host.h"
#include "../src/cuda/view_stages.h"
#include "gpu_bench.h"
#include "image_normalize.cuh"
#include "moco/augment.h"
#include "moco/rng.h"
#include "nhwc_ops.cuh"
#include "row_gather.cuh"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

// Every v2 stage on, the blur at sigma 2: the worst case of the device stages.
ViewParams every_stage(int i) {
  ViewParams p;
  p.jitter = true;
  for (int k = 0; k < 4; ++k) p.jitter_params.order[k] = (k + i) % 4;
  p.jitter_params.brightness = 1.2f, p.jitter_params.contrast = 0.8f, p.jitter_params.saturation = 1.3f;
  p.jitter_params.hue = 0.05f;
  p.gray = i % 2 == 0, p.blur = true, p.sigma = 2.f, p.flip = true;
  return p;
}

// GpuViewStages against apply_view_stages_u8 on 4 noise crops at 17 px.
bool stages_correct() {
  const AugmentRecipe rec = recipe_from_name("v2", 17);
  const int64_t n = 4, per = 17 * 17 * 3;
  std::vector<uint8_t> in((size_t)(n * per));
  Rng r(3, 5);
  for (auto& b : in) b = (uint8_t)r.below(256);
  std::vector<ViewParams> params;
  for (int i = 0; i < n; ++i) params.push_back(every_stage(i));
  DeviceBuffer<uint8_t> views(in, "crops");
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());
  cuda::GpuViewStages stages(rec, nullptr);
  stages.apply(Tensor::wrap(views.get(), {n, 17, 17, 3}, DType::U8, Device::CUDA), params);
  const std::vector<uint8_t> got = views.download();
  std::vector<uint8_t> want((size_t)per);
  for (int64_t i = 0; i < n; ++i) {
    apply_view_stages_u8(rec, params[(size_t)i], in.data() + i * per, want.data());
    for (int64_t e = 0; e < per; ++e)
      if (got[(size_t)(i * per + e)] != want[(size_t)e]) {
        std::printf("view stages: crop %lld value %lld is %d, the CPU's %d; refusing to time them\n", (long long)i,
                    (long long)e, got[(size_t)(i * per + e)], want[(size_t)e]);
        return false;
      }
  }
  return true;
}

// image_to_nhwc<bf16> against the CPU's normalize_to_chw (ToTensor + Normalize) rounded to bf16, and the
// byte gather against memcpy rows, on odd sizes.
bool correct() {
  const int64_t n = 3, h = 5, w = 7, total = n * h * w * 3;
  std::vector<uint8_t> img((size_t)total);  // (N, H, W, 3)
  Rng r(8, 9);
  for (auto& b : img) b = (uint8_t)r.below(256);
  DeviceBuffer<uint8_t> gimg(img, "images");
  DeviceBuffer<uint16_t> out((size_t)total, "bf16 input");  // (N, H, W, 3)
  out.poison();
  kernels::image_to_nhwc(n, h, w, gimg.get(), reinterpret_cast<__nv_bfloat16*>(out.get()), nullptr);
  const std::vector<uint16_t> got = out.download();
  std::vector<float> cpu((size_t)total);  // (N, 3, H, W)
  for (int64_t i = 0; i < n; ++i)
    normalize_to_chw(img.data() + i * h * w * 3, (int)h, (int)w, cpu.data() + i * h * w * 3);
  for (int64_t i = 0; i < total; ++i) {
    const int64_t image = i / (h * w * 3), pixel = i / 3 % (h * w), ch = i % 3;
    const uint16_t want = bf16_bits(cpu[(size_t)((image * 3 + ch) * h * w + pixel)]);
    if (got[(size_t)i] != want) {
      std::printf("image_to_nhwc differs from the host at %lld: %04x vs %04x; refusing to time it\n", (long long)i,
                  got[(size_t)i], want);
      return false;
    }
  }
  const int64_t rows = 6, row_bytes = 35;  // odd: the single-byte path
  const std::vector<int64_t> index = {4, 0, 5, 5, 2, 1};
  DeviceBuffer<uint8_t> src(std::vector<uint8_t>(img.begin(), img.begin() + rows * row_bytes), "rows");
  DeviceBuffer<int64_t> didx(index, "index");
  DeviceBuffer<uint8_t> dst((size_t)(rows * row_bytes), "gathered");
  dst.poison();
  kernels::gather_rows(src.get(), didx.get(), rows, row_bytes, dst.get(), nullptr);
  const std::vector<uint8_t> gathered = dst.download();
  for (int64_t i = 0; i < rows; ++i)
    if (std::memcmp(&gathered[(size_t)(i * row_bytes)], &img[(size_t)(index[(size_t)i] * row_bytes)], (size_t)row_bytes)) {
      std::printf("gather_rows: row %lld is not source row %lld; refusing to time it\n", (long long)i,
                  (long long)index[(size_t)i]);
      return false;
    }
  return stages_correct();
}

}  // namespace

int main() {
  return bench::run(correct, [&](bench::Timer& timer, double copy_gbs) {
    const int64_t n = 256, s = 224, values = n * 3 * s * s;  // one view batch
    const size_t f32_bytes = (size_t)values * sizeof(float), u8_bytes = (size_t)values;
    cuda::PinnedBuffer host_f32, host_u8;
    std::memset(host_f32.reserve(f32_bytes), 0, f32_bytes);
    std::memset(host_u8.reserve(u8_bytes), 0x5A, u8_bytes);
    DeviceBuffer<float> dev_f32((size_t)values, "fp32 views");         // (N, 3, S, S)
    DeviceBuffer<uint8_t> dev_u8((size_t)values, "8-bit views");       // (N, S, S, 3)
    DeviceBuffer<uint16_t> input((size_t)values, "bf16 input");        // (N, S, S, 3)
    DeviceBuffer<float> shuffled_f32((size_t)values, "shuffled fp32");  // (N, 3*S*S)
    DeviceBuffer<uint8_t> shuffled_u8((size_t)values, "shuffled u8");   // (N, S*S*3)
    dev_f32.fill_bytes(0);
    dev_u8.fill_bytes(0x5A);
    std::vector<int64_t> perm((size_t)n);
    for (int64_t i = 0; i < n; ++i) perm[(size_t)i] = (i * 97) % n;  // 97 is prime to 256: a permutation
    DeviceBuffer<int64_t> dperm(perm, "permutation");
    auto* bf16 = reinterpret_cast<__nv_bfloat16*>(input.get());

    const double up_f32 = timer.median_ms([&] {
      MOCO_CUDA_CHECK(cudaMemcpyAsync(dev_f32.get(), host_f32.reserve(f32_bytes), f32_bytes, cudaMemcpyHostToDevice, nullptr));
    });
    const double up_u8 = timer.median_ms([&] {
      MOCO_CUDA_CHECK(cudaMemcpyAsync(dev_u8.get(), host_u8.reserve(u8_bytes), u8_bytes, cudaMemcpyHostToDevice, nullptr));
    });
    const double conv_f32 = timer.median_ms([&] { kernels::nchw_to_nhwc(n, 3, s * s, dev_f32.get(), bf16, nullptr); });
    const double conv_u8 = timer.median_ms([&] { kernels::image_to_nhwc(n, s, s, dev_u8.get(), bf16, nullptr); });
    const double gather_f32 = timer.median_ms([&] {
      kernels::gather_rows(dev_f32.get(), dperm.get(), n, 3 * s * s * (int64_t)sizeof(float), shuffled_f32.get(), nullptr);
    });
    const double gather_u8 = timer.median_ms(
        [&] { kernels::gather_rows(dev_u8.get(), dperm.get(), n, 3 * s * s, shuffled_u8.get(), nullptr); });

    std::printf("one view batch: %lld images at %lld px; fp32 %.1f MB, 8-bit %.1f MB\n", (long long)n, (long long)s,
                f32_bytes / 1e6, u8_bytes / 1e6);
    auto gbs = [](double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; };
    std::printf("%-34s %8.3f ms  %7.1f GB/s\n", "host->device copy, fp32 views", up_f32, gbs((double)f32_bytes, up_f32));
    std::printf("%-34s %8.3f ms  %7.1f GB/s\n", "host->device copy, 8-bit views", up_u8, gbs((double)u8_bytes, up_u8));
    struct Line { const char* name; double ms, bytes; };
    const double out_bytes = (double)values * 2;  // bf16 input written
    for (const Line& l : {Line{"nchw_to_nhwc fp32 -> bf16", conv_f32, (double)f32_bytes + out_bytes},
                          Line{"image_to_nhwc u8 -> bf16", conv_u8, (double)u8_bytes + out_bytes},
                          Line{"gather_rows fp32 images", gather_f32, 2.0 * (double)f32_bytes},
                          Line{"gather_rows 8-bit images", gather_u8, 2.0 * (double)u8_bytes}}) {
      const double g = gbs(l.bytes, l.ms);
      std::printf("%-34s %8.3f ms  %7.1f GB/s  %.2f of copy\n", l.name, l.ms, g, g / copy_gbs);
    }
    std::vector<ViewParams> params;
    for (int i = 0; i < n; ++i) params.push_back(every_stage(i));
    cuda::GpuViewStages stages(recipe_from_name("v2", (int)s), nullptr);
    const Tensor crops = Tensor::wrap(dev_u8.get(), {n, s, s, 3}, DType::U8, Device::CUDA);
    const double stages_ms = timer.median_ms([&] { stages.apply(crops, params); });
    std::printf("%-34s %8.3f ms  (every v2 stage on, blur sigma 2: the worst case)\n", "view stages on the device",
                stages_ms);
    const double path_f32 = up_f32 + conv_f32, path_u8 = up_u8 + conv_u8;
    std::printf("copy + conversion per view batch: fp32 %.3f ms, 8-bit %.3f ms: %.2fx less time with 8-bit views\n",
                path_f32, path_u8, path_f32 / path_u8);
  });
}
