// `moco bench`: whole MoCo steps on synthetic images, timed. The same configuration runs in the PyTorch twin
// (tools/torch_twin.py bench) so that a speed claim is a ratio measured side by side (bench/).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "moco/args.h"
#include "moco/commands.h"
#include "moco/rng.h"
#include "moco/train.h"

namespace moco {

int cmd_bench(int argc, char** argv) {
  Args a("moco bench", "Time whole MoCo steps (query forward+backward, key forward, loss, update) on synthetic input.");
  a.option("-a,--arch", "resnet50", "resnet18 | resnet34 | resnet50");
  a.option("--width", "64", "channels of the stem and layer1");
  a.option("--stem", "auto", "imagenet | small | auto (small when --image-size <= 64)");
  a.option("--image-size", "224", "input size in pixels");
  a.option("-b,--batch-size", "256", "images per step");
  a.option("--moco-k", "65536", "queue size");
  a.option("--moco-dim", "128", "feature dimension");
  a.flag("--mlp", "v2 MLP head");
  a.option("--bn-splits", "8", "BN groups");
  a.option("--steps", "10", "timed steps");
  a.option("--warmup", "2", "untimed steps first");
  a.option("--device", "cpu", "cpu (the CUDA step is not in this build)");
  if (!a.parse(argc, argv, 2)) return 0;
  MOCO_CHECK(a.str("--device") == "cpu", "--device ", a.str("--device"), ": this build benchmarks the CPU step only");
  TrainOptions o;
  o.arch = a.str("--arch");
  o.width = (int)a.integer("--width", 1, 4096);
  o.stem = a.str("--stem");
  o.image_size = (int)a.integer("--image-size", 8, 4096);
  o.batch_size = a.integer("--batch-size", 1, 1 << 20);
  o.moco_k = a.integer("--moco-k", o.batch_size, 1ll << 32);
  o.moco_dim = (int)a.integer("--moco-dim", 1, 1 << 16);
  o.mlp = a.on("--mlp");
  o.bn_splits = (int)a.integer("--bn-splits", 1, 1 << 16);
  o.recipe = "none";
  const int steps = (int)a.integer("--steps", 1, 1 << 20), warmup = (int)a.integer("--warmup", 0, 1 << 20);
  MOCO_CHECK(o.batch_size % o.bn_splits == 0, "--batch-size ", o.batch_size, " does not split into --bn-splits ",
             o.bn_splits, " groups");

  SingleCommunicator comm;
  Moco moco(moco_config(run_config(o)), comm);
  moco.init();
  const int64_t n = o.batch_size, s = o.image_size;
  Tensor xq = Tensor::empty({n, 3, s, s}, DType::F32), xk = Tensor::empty({n, 3, s, s}, DType::F32);  // (N, 3, S, S)
  Rng rng(1, 2);
  for (int64_t i = 0; i < xq.numel(); ++i) {
    xq.data<float>()[i] = (float)rng.normal();
    xk.data<float>()[i] = xq.data<float>()[i] + 0.3f * (float)rng.normal();
  }
  std::vector<double> ms;
  for (int i = 0; i < warmup + steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    moco.step(xq, xk, 0.03f);
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("moco bench: %s, batch %lld at %lld px, K %lld, device cpu\n",
              moco.encoder_q().config().describe().c_str(), (long long)n, (long long)s, (long long)o.moco_k);
  std::printf("step_ms_median %.1f  step_ms_min %.1f  img_per_s %.1f  (%d timed steps)\n", median, ms.front(),
              (double)n * 1000.0 / median, steps);
  return 0;
}

}  // namespace moco
