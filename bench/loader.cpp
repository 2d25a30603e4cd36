// What the data path delivers: images per second from `Loader` (JPEG decode, then two MoCo v2 views at
// 224 px each, as `moco train` asks for) with 1 worker and with one worker per core, on an ImageFolder of
// synthetic ImageNet-like JPEGs (500 x 375, quality 90) written to a temporary folder. It says how many CPU
// cores per GPU it takes to keep a given step rate fed. Three forms of the batches are timed: normalised
// fp32 views (the CPU step's), 8-bit views, and 8-bit crops with their stages' decisions (what GPU training
// takes; the GPU applies the stages). Checks, while timing, that every batch is full and has the right shape
// and dtype, and that fp32 views hold finite values (8-bit ones have no other state).
//   build/bench_loader [images [folder]]   (default 256 images in a temporary folder, removed at the end;
//                                         a folder given here is kept, for bench/loader_vs_torchvision.sh)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "moco/augment.h"
#include "moco/data.h"
#include "moco/loader.h"
#include "synthetic_jpeg.h"

using namespace moco;
namespace fs = std::filesystem;

namespace {

// root/<class>/<i>.JPEG, `count` files over two classes; each picture shifted so the files differ.
void write_folder(const fs::path& root, int count) {
  fs::remove_all(root);
  const Image base = bench::photo(500 + 64, 375);
  for (int i = 0; i < count; ++i) {
    const fs::path dir = root / (i % 2 ? "n02" : "n01");
    fs::create_directories(dir);
    Image img;
    img.w = 500;
    img.h = 375;
    img.pixels.resize((size_t)img.w * img.h * 3);  // (H, W, 3): a window of the base picture
    const int dx = i % 64;
    for (int y = 0; y < img.h; ++y)
      for (int x = 0; x < img.w * 3; ++x)
        img.pixels[(size_t)y * img.w * 3 + x] = base.pixels[(size_t)y * base.w * 3 + (size_t)dx * 3 + x];
    const std::vector<uint8_t> jpg = bench::encode_jpeg(img, 90, false);
    std::ofstream(dir / (std::to_string(i) + ".JPEG"), std::ios::binary)
        .write(reinterpret_cast<const char*>(jpg.data()), (std::streamsize)jpg.size());
  }
}

// What the loader hands over: normalised fp32 views (the CPU step's), 8-bit views, or 8-bit crops whose
// stages the GPU applies (GPU training).
enum class Form { F32, U8, Crops };
const char* form_name(Form f) { return f == Form::F32 ? "f32" : f == Form::U8 ? "u8" : "crops"; }

// Images per second over `epochs` epochs of the data set with `workers` threads, batches in form `form`;
// false if a batch is wrong.
bool run(const Dataset& data, int workers, int epochs, Form form, double& img_per_s) {
  const DType views = form == Form::F32 ? DType::F32 : DType::U8;
  LoaderConfig c;
  c.batch = 32;
  c.workers = workers;  // prefetch stays at its default, as in `moco train`
  c.view_dtype = views;
  c.stages_on_device = form == Form::Crops;
  Loader loader(data, recipe_from_name("v2", 224), c);
  const Shape want = views == DType::U8 ? Shape{32, 224, 224, 3} : Shape{32, 3, 224, 224};
  int64_t images = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int e = 0; e < epochs; ++e) {
    loader.start_epoch(e);
    for (Batch b; loader.next(b);) {
      if (b.views.size() != 2 || b.views[0].shape() != want || b.views[1].dtype() != views) return false;
      if (form == Form::Crops && (b.params.size() != 2 || b.params[1].size() != 32)) return false;
      if (views == DType::F32) {
        const float* v = b.views[1].data<float>();
        for (int64_t i = 0; i < b.views[1].numel(); i += 997)
          if (!std::isfinite(v[i])) return false;
      }
      images += 32;
    }
  }
  img_per_s = (double)images / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return images == (int64_t)epochs * loader.steps_per_epoch() * 32 && loader.skipped() == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::atoi(argv[1]) : 256;
  if (count < 64) {
    std::fprintf(stderr, "bench_loader: images %d, expected at least 64\n", count);
    return 2;
  }
  const bool keep = argc > 2;
  const fs::path root =
      keep ? fs::path(argv[2]) : fs::temp_directory_path() / ("moco-bench-loader-" + std::to_string(::getpid()));
  write_folder(root, count);
  ImageFolderDataset data(root.string());
  const int cores = (int)std::max(1u, std::thread::hardware_concurrency());
  std::printf("loader: %lld JPEGs of 500x375 (q90, 4:2:0), recipe v2 at 224 px, 2 views per image, batch 32\n"
              "views: f32 = normalised (3, S, S), the CPU step's; u8 = 8-bit (S, S, 3); crops = 8-bit crops whose\n"
              "jitter, grayscale, blur and flip the GPU applies, what GPU training copies\n",
              (long long)data.size());
  int status = 0;
  for (int workers : {1, cores}) {
    for (Form form : {Form::F32, Form::U8, Form::Crops}) {
      double ips = 0;
      if (!run(data, workers, 2, form, ips)) {
        std::printf("a batch was incomplete, misshapen or not finite: refusing to report a rate\n");
        status = 1;
        break;
      }
      std::printf("workers %2d %5s: %7.1f images/s  (%6.1f per worker; %.2f ms per image per worker)\n", workers,
                  form_name(form), ips, ips / workers, 1000.0 * workers / ips);
    }
    if (workers == cores || status) break;
  }
  if (!keep) fs::remove_all(root);
  return status;
}
