#include "eval_target.h"

#include <cstdio>

#include "moco/pretrained.h"

#ifdef MOCO_HAVE_CUDA
#include "../cuda/gpu_features.h"
#include "moco/cuda_runtime.h"
#endif

namespace moco {

void declare_eval_options(Args& a, const char* what_is_evaluated, const char* batch_help) {
  a.positional("DATA", "ImageFolder root with train/ and val/; omitted: the checkpoint's data (with --pretrained: "
               "Fashion-MNIST)");
  a.option("--checkpoint", "", std::string("training checkpoint whose query backbone is ") + what_is_evaluated);
  a.option("--pretrained", "", std::string("instead: safetensors file of a ResNet backbone under torchvision's names "
           "(moco export, torchvision's weights, tools/convert_moco_checkpoint.py) to be ") + what_is_evaluated);
  a.flag("--random-init", "use the checkpoint's network at its initialisation (its config and seed) instead");
  a.option("--seed", "", "seed of the subsets drawn and of the probe's init (default: the checkpoint's; 0 with "
           "--pretrained)");
  a.option("-b,--batch-size", "256", batch_help);
  a.option("-j,--workers", "2", "data loading threads");
  a.option("--image-size", "", "eval size (default: the checkpoint's; with --pretrained 224, or 32 for the small stem)");
  a.option("--device", "auto", "where the backbone (and the probe) run: cpu | cuda | auto (cuda when a GPU is usable)");
  a.option("--precision", "bf16", "on the GPU: bf16 | fp32");
}

// The backbone on the device asked for; --device auto falls back to the CPU, saying why.
static std::unique_ptr<FeatureExtractor> open_features(Encoder& enc, const std::string& device,
                                                       const std::string& precision) {
  MOCO_CHECK(device == "cpu" || device == "cuda" || device == "auto", "--device ", device,
             ": expected cpu, cuda or auto");
  MOCO_CHECK(precision == "bf16" || precision == "fp32", "--precision ", precision, ": expected bf16 or fp32");
  if (device == "cpu") return std::make_unique<CpuFeatures>(enc);
#ifdef MOCO_HAVE_CUDA
  const std::string reason = cuda::no_device_reason();
  if (reason.empty()) return cuda::make_gpu_features(enc, precision == "fp32" ? DType::F32 : DType::BF16);
  MOCO_CHECK(device == "auto", "--device cuda: ", reason);
  std::fprintf(stderr, "cuda: %s; the backbone runs on the cpu\n", reason.c_str());
#else
  MOCO_CHECK(device == "auto", "--device cuda: this build has no CUDA backend; build where nvcc is installed");
#endif
  return std::make_unique<CpuFeatures>(enc);
}

EvalTarget open_eval_target(const Args& a, const char* command) {
  EvalTarget t;
  const std::string checkpoint = a.str("--checkpoint"), pretrained = a.str("--pretrained");
  MOCO_CHECK(checkpoint.empty() != pretrained.empty(), command,
             checkpoint.empty() ? " needs --checkpoint PATH (a file written by moco train) or --pretrained "
                                  "FILE.safetensors (a ResNet backbone under torchvision's names)"
                                : " takes --checkpoint or --pretrained, not both");
  t.random_init = a.on("--random-init");
  MOCO_CHECK(pretrained.empty() || !t.random_init, "--random-init rebuilds a checkpoint's network at its seed; with "
             "--pretrained there is no seed to rebuild from: give --checkpoint instead");
  int default_size = 0;
  if (!pretrained.empty()) {
    t.source = pretrained;
    int head = 0;
    t.weights = load_pretrained_backbone(pretrained, &head);
    t.backbone = t.weights.get();
    default_size = t.backbone->config().small_stem ? 32 : 224;
    std::fprintf(stderr, "pretrained: %s from %s%s\n", t.backbone->config().describe().c_str(), pretrained.c_str(),
                 head ? (", its " + std::to_string(head) + " fc.* tensors left aside").c_str() : "");
  } else {
    t.source = checkpoint;
    t.model = std::make_unique<CheckpointModel>(checkpoint, t.random_init);
    t.backbone = &t.model->query_encoder();
    default_size = t.model->image_size();
  }
  t.seed = a.has("--seed") ? (uint64_t)a.integer("--seed", 0, INT64_MAX) : t.model ? t.model->seed() : 0;
  t.image_size = a.has("--image-size") ? (int)a.integer("--image-size", 8, 4096) : default_size;
  t.batch_size = a.integer("--batch-size", 1, 1 << 20);
  t.workers = (int)a.integer("--workers", 1, 256);
  t.data = t.model ? t.model->data(a.str("DATA")) : a.str("DATA");
  t.train = open_dataset(t.data, "train");
  t.test = open_dataset(t.data, "test");
  t.features = open_features(*t.backbone, a.str("--device"), a.str("--precision"));
  return t;
}

}  // namespace moco
