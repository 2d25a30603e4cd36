// `moco bench`: whole MoCo steps on synthetic images, timed. The same configuration runs in the PyTorch twin
// (tools/torch_twin.py bench) so that a speed claim is a ratio measured side by side (bench/).
// `moco bench --data DIR` times the data path instead: what the loader delivers from the user's own images
// (decode and two augmented views per image), so they can see how many --workers a step rate needs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <vector>

#include "moco/args.h"
#include "moco/commands.h"
#include "moco/loader.h"
#include "moco/open_dataset.h"
#include "moco/parallel.h"
#include "moco/rng.h"
#include "moco/run_log.h"
#include "moco/step_timing.h"
#include "moco/train.h"

#ifdef MOCO_HAVE_CUDA
#include "../cuda/bench_step.h"
#endif

namespace moco {

namespace {

// Images per second from the loader over `steps` batches after `warmup` batches, for each worker count: the
// whole views the CPU step takes, and the crops GPU training takes (the GPU applies the rest of each view).
int bench_data(const std::string& data, const std::string& recipe_name, int image_size, int64_t batch,
               const std::vector<int>& workers, int warmup, int steps) {
  std::unique_ptr<Dataset> ds = open_dataset(data, "train");
  const AugmentRecipe recipe = recipe_from_name(recipe_name, image_size);
  std::printf("moco bench --data: %s, %lld images; recipe %s at %d px, 2 views per image, batch %lld\n",
              ds->name().c_str(), (long long)ds->size(), recipe_name.c_str(), recipe.size, (long long)batch);
  for (int w : workers) {
    for (bool crops : {false, true}) {
      LoaderConfig c;
      c.batch = batch;
      c.workers = w;
      if (crops) c.view_dtype = DType::U8, c.stages_on_device = true;
      Loader loader(*ds, recipe, c);
      MOCO_CHECK(loader.steps_per_epoch() >= warmup + steps, ds->name(), " has ", loader.steps_per_epoch(),
                 " batches of ", batch, ", fewer than --warmup ", warmup, " + --steps ", steps,
                 "; lower them or --batch-size");
      loader.start_epoch(0);
      Batch b;
      for (int i = 0; i < warmup; ++i) loader.next(b);
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) loader.next(b);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double ips = (double)(batch * steps) / s;
      std::printf("workers %3d, %-40s %8.1f images/s  (%.1f per worker)%s\n", w,
                  crops ? "crops (GPU training, --device cuda):" : "whole views (the CPU step):", ips, ips / w,
                  loader.skipped() ? "  (some images could not be decoded; see above)" : "");
    }
  }
  return 0;
}

// One configuration's step on the CPU: prints the text lines and returns the CPU's fields of the record.
JsonRecord bench_cpu_step(const TrainOptions& o, int warmup, int steps) {
  SingleCommunicator comm;
  MocoConfig mc = moco_config(run_config(o));
  mc.recompute_bn_relu = o.recompute_bn_relu;
  Moco moco(mc, comm);
  moco.init();
  const int64_t n = o.batch_size, s = o.image_size;
  Tensor xq = Tensor::empty({n, 3, s, s}, DType::F32), xk = Tensor::empty({n, 3, s, s}, DType::F32);  // (N, 3, S, S)
  Rng rng(1, 2);
  for (int64_t i = 0; i < xq.numel(); ++i) {
    xq.data<float>()[i] = (float)rng.normal();
    xk.data<float>()[i] = xq.data<float>()[i] + 0.3f * (float)rng.normal();
  }
  const StepTiming t = time_steps(warmup, steps, [&] { return moco.step(xq, xk, 0.03f); });
  std::printf("moco bench: %s, batch %lld at %lld px, K %lld, device cpu, %d threads\n",
              moco.encoder_q().config().describe().c_str(), (long long)n, (long long)s, (long long)o.moco_k,
              cpu_threads());
  print_step_timing(t, n);
  // memory by category: fp32 buffers; the key encoder keeps no activations (it runs without a tape)
  const double mib = 1.0 / (1 << 20);
  const double params = (double)(moco.encoder_q().params().size() + moco.encoder_k().params().size() +
                                 moco.encoder_q().stats().size() + moco.encoder_k().stats().size()) * 4 * mib;
  const double grads = (double)moco.encoder_q().grads().size() * 4 * mib;
  const double optim = (double)moco.optimizer().momentum_buffer().size() * 4 * mib;
  const double acts = (double)t.activation_bytes * mib, queue = (double)moco.queue().keys().size() * 4 * mib;
  std::printf("memory MiB: parameters %.1f (both encoders, BN statistics included)  gradients %.1f  optimizer %.1f"
              "  activations %.1f (saved for backward)  queue %.1f\n", params, grads, optim, acts, queue);
  JsonRecord r;
  r.add("threads", cpu_threads()).add("precision", "fp32");
  add_step_timing(r, t, n);
  r.add("parameters_mib", params)
      .add("gradients_mib", grads)
      .add("optimizer_mib", optim)
      .add("saved_for_backward_mib", acts)
      .add("queue_mib", queue);
  return r;
}

// "2026-11-27T05:40:12Z"
std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  Args a("moco bench", "Time whole MoCo steps (query forward+backward, key forward, loss, update) on synthetic input.");
  a.option("-a,--arch", "resnet50", "resnet18 | resnet34 | resnet50 | resnet101 | resnet152");
  a.option("--width", "64", "channels of the stem and layer1");
  a.option("--stem", "auto", "imagenet | small | auto (small when --image-size <= 64)");
  a.option("--image-size", "224", "input size in pixels");
  a.list("-b,--batch-size", "256", "images per step; several values (-b 32 64 128 256) time each in turn");
  a.list("--moco-k", "65536", "queue size; several values time each with every batch size");
  a.option("--moco-dim", "128", "feature dimension");
  a.flag("--mlp", "v2 MLP head");
  a.flag("--recompute-bn-relu", "rebuild the inner BN+ReLU outputs in backward instead of keeping them (moco train)");
  a.option("--bn-splits", "auto", "BN groups (auto: 8 on the cpu, 1 on a GPU, where each GPU is one BN group)");
  a.option("--steps", "10", "timed steps");
  a.option("--warmup", "2", "untimed steps first");
  a.option("--device", "cpu", "cpu | cuda");
  a.option("--precision", "bf16", "cuda only: bf16 (activations and conv weights; fp32 masters) | fp32");
  a.flag("--conv-report", "cuda only: print each convolution's cuDNN plan and the times it was chosen by");
  a.flag("--op-times", "cuda only: print the device's time per kind of op (conv, bn, ...) in a step");
  a.option("--jsonl", "", "also append each configuration's numbers to FILE as one JSON object per line");
  a.option("--data", "", "time the data path on this ImageFolder (or 'fashion-mnist') instead of the step");
  a.option("--recipe", "v2", "with --data: augmentation recipe (v1 | v2 | small)");
  a.option("-j,--workers", "0", "with --data: loader threads (0: 1 and then one per core)");
  if (!a.parse(argc, argv, 2)) return 0;
  const std::vector<int64_t> batches = a.integers("--batch-size", 1, 1 << 20);
  const std::vector<int64_t> queues = a.integers("--moco-k", 1, 1ll << 32);
  MOCO_CHECK(!batches.empty() && !queues.empty(), "--batch-size and --moco-k need at least one value each");
  if (!a.str("--data").empty()) {
    MOCO_CHECK(batches.size() == 1, "--data times one --batch-size, got ", batches.size());
    MOCO_CHECK(a.str("--jsonl").empty(), "--jsonl records whole steps; --data prints the loader's rates only");
    const int cores = cpu_threads();
    const int w = (int)a.integer("--workers", 0, 4096);
    const std::string data = a.str("--data") == "fashion-mnist" ? "" : a.str("--data");
    return bench_data(data, a.str("--recipe"), (int)a.integer("--image-size", 8, 4096), batches[0],
                      w > 0 ? std::vector<int>{w} : cores > 1 ? std::vector<int>{1, cores} : std::vector<int>{1},
                      (int)a.integer("--warmup", 0, 1 << 20), (int)a.integer("--steps", 1, 1 << 20));
  }
  const std::string device = a.str("--device"), precision = a.str("--precision");
  MOCO_CHECK(device == "cpu" || device == "cuda", "--device ", device, ": expected cpu or cuda");
  MOCO_CHECK(precision == "bf16" || precision == "fp32", "--precision ", precision, ": expected bf16 or fp32");
#ifndef MOCO_HAVE_CUDA
  MOCO_CHECK(device != "cuda", "--device cuda: this build has no CUDA backend; build where nvcc is installed (see README)");
#endif
  TrainOptions o;
  o.arch = a.str("--arch");
  o.width = (int)a.integer("--width", 1, 4096);
  o.stem = a.str("--stem");
  o.image_size = (int)a.integer("--image-size", 8, 4096);
  o.moco_dim = (int)a.integer("--moco-dim", 1, 1 << 16);
  o.mlp = a.on("--mlp");
  o.recompute_bn_relu = a.on("--recompute-bn-relu");
  o.bn_splits = a.str("--bn-splits") == "auto" ? (device == "cuda" ? 1 : 8) : (int)a.integer("--bn-splits", 1, 1 << 16);
  o.recipe = "none";
  const int steps = (int)a.integer("--steps", 1, 1 << 20), warmup = (int)a.integer("--warmup", 0, 1 << 20);
  // every configuration is checked before the first one runs: a sweep does not stop half-way on a typo
  for (int64_t b : batches) {
    MOCO_CHECK(b % o.bn_splits == 0, "--batch-size ", b, " does not split into --bn-splits ", o.bn_splits, " groups");
    for (int64_t k : queues)
      MOCO_CHECK(k >= b, "--moco-k ", k, " is smaller than --batch-size ", b, ": the queue must hold a batch of keys");
  }
  std::unique_ptr<MetricsLog> jsonl;
  if (!a.str("--jsonl").empty()) jsonl = std::make_unique<MetricsLog>(a.str("--jsonl"), MetricsLog::AppendAll{});

  for (int64_t k : queues)
    for (int64_t b : batches) {
      o.batch_size = b;
      o.moco_k = k;
      // the configuration first, then what the device measured
      JsonRecord r;
      r.add("bench", "moco_step").add("date", utc_now()).add("device", device);
      r.add("arch", o.arch).add("width", o.width).add("image_size", o.image_size).add("batch", b).add("k", k);
      r.add("dim", o.moco_dim).add("head", o.mlp ? "mlp" : "fc").add("bn_splits", o.bn_splits);
      r.add("recompute_bn_relu", o.recompute_bn_relu).add("steps", steps).add("warmup", warmup);
      JsonRecord measured;
      if (device == "cuda") {
#ifdef MOCO_HAVE_CUDA
        cuda::StepBenchOptions g;
        g.moco = moco_config(run_config(o));
        g.moco.recompute_bn_relu = o.recompute_bn_relu;
        g.batch = b, g.image_size = o.image_size, g.steps = steps, g.warmup = warmup;
        g.compute = precision == "bf16" ? DType::BF16 : DType::F32;
        g.conv_report = a.on("--conv-report");
        g.op_times = a.on("--op-times");
        measured = cuda::run_step_bench(g);
#endif
      } else {
        measured = bench_cpu_step(o, warmup, steps);
      }
      r.append(measured);
      std::printf("moco_bench_json %s\n", r.str().c_str());
      std::fflush(stdout);
      if (jsonl) jsonl->write(r);
    }
  return 0;
}

}  // namespace moco
