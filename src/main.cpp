// The `moco` program: subcommands only; each lives in its own source file under src/cli/.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "moco/commands.h"
#include "moco/error.h"
#include "moco/parallel.h"
#include "moco/version.h"
#ifdef MOCO_HAVE_CUDA
#include "cuda/convolution.h"
#include "cuda/softmax_form.h"
#include "moco/cuda_runtime.h"
#endif

static void print_usage() {
  std::printf(
      "moco %s: MoCo self-supervised pretraining engine (CPU path%s)\n\n"
      "usage: moco <command> [options]      (moco <command> --help lists a command's options)\n\n"
      "commands:\n"
      "  train [DATA]   MoCo v1/v2 pretraining; without DATA: Fashion-MNIST, small-image recipe\n"
      "  knn [DATA]     kNN top-1 of a checkpoint (or of its random initialisation, or of --pretrained weights)\n"
      "  lincls [DATA]  linear probe on the frozen backbone of a checkpoint (or of --pretrained weights)\n"
      "  export         backbone (and head), or backbone and probe, as safetensors with torchvision names\n"
      "  bench          time whole MoCo steps on synthetic input\n"
      "  info           build, CUDA libraries (run and built against), devices, convolution API\n"
      "  version        the version (also --version)\n"
      "  help           this text\n",
      moco::kVersion, moco::kHaveCuda ? " + CUDA backend" : "");
}

int main(int argc, char** argv) {
  // A step allocates the same large activation buffers every time. Keep freed memory in the heap instead of
  // returning it to the kernel, so each step does not page-fault its buffers in again (1.5x on the CPU path).
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  try {
    (void)moco::cpu_threads();  // reads MOCO_THREADS once, here, where a bad value is reported
    const std::string cmd = argc > 1 ? argv[1] : "help";
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      print_usage();
      return 0;
    }
    if (cmd == "version" || cmd == "--version") {
      std::printf("moco %s (%s)\n", moco::kVersion, moco::kHaveCuda ? "CPU path + CUDA backend" : "CPU path");
      return 0;
    }
    if (cmd == "info") {
      std::printf("moco %s\ncuda backend compiled: %s\n", moco::kVersion, moco::kHaveCuda ? "yes" : "no");
#ifdef MOCO_HAVE_CUDA
      std::printf("libraries: %s\n", moco::cuda::library_versions().c_str());
      const std::string why = moco::cuda::no_device_reason();
      if (!why.empty()) std::printf("devices: %s\n", why.c_str());
      for (int d = 0; why.empty() && d < moco::cuda::device_count(); ++d)
        std::printf("device %d: %s\n", d, moco::cuda::device_description(d).c_str());
      std::printf("convolutions: cuDNN %s API (MOCO_CONV_API: legacy, graph or auto)\n",
                  moco::cuda::conv_api_name(moco::cuda::conv_api_from_env()));
      std::printf("softmax cross-entropy: %s form (MOCO_SOFTMAX_FORM: block, cluster or auto)\n",
                  moco::kernels::softmax_xent_form_name(moco::cuda::softmax_form_from_env()));
#endif
      return 0;
    }
    if (cmd == "train") return moco::cmd_train(argc, argv);
    if (cmd == "knn") return moco::cmd_knn(argc, argv);
    if (cmd == "lincls") return moco::cmd_lincls(argc, argv);
    if (cmd == "export") return moco::cmd_export(argc, argv);
    if (cmd == "bench") return moco::cmd_bench(argc, argv);
    moco::fail("unknown command '", cmd, "'; expected one of: train, knn, lincls, export, bench, info, version, help");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nmoco: error: %s\n", e.what());
    return 2;
  }
}
