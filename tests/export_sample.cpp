// Writes a full-width torchvision-shaped export for tools/check_export.py to load into torchvision:
//   <out>/resnet<depth>.safetensors     backbone only (no fc), BN statistics and counters set to
//                                       non-default values so that a wrong mapping shows in the outputs
//   <out>/resnet<depth>_io.safetensors  "input" (N, 3, H, W) and "features" (N, C): our eval-mode backbone
//                                       output for that input, computed after re-importing the export
//   <out>/resnet<depth>_cls.safetensors     that backbone with a 10-class fc as a linear probe keeps it
//   <out>/resnet<depth>_cls_io.safetensors  "input" and "outputs" (N, 10): features . W^T + b, by plain loops
// usage: moco_export_sample <out_dir> [depth=50] [seed=1]
//
// The other direction: `moco_export_sample --check-pretrained FILE IO TOL` loads FILE as `--pretrained` does
// (moco/pretrained.h: the network inferred from the tensors) and computes its eval-mode backbone output for
// IO's "input"; exit 0 when every value is within TOL (relative to the largest) of IO's "features", which
// PyTorch computed (tests/tools_export.sh, mode authors).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <string>
#include <vector>

#include "moco/export.h"
#include "moco/features.h"
#include "moco/pretrained.h"
#include "moco/rng.h"
#include "moco/safetensors.h"

using namespace moco;

static int check_pretrained(const std::string& path, const std::string& io, double tol) {
  int head = 0;
  std::unique_ptr<Encoder> backbone = load_pretrained_backbone(path, &head);
  const SafeTensorsFile ref = read_safetensors(io);
  const SafeTensor* in = ref.find("input");
  const SafeTensor* want = ref.find("features");
  MOCO_CHECK(in && want && in->dtype == "F32" && want->dtype == "F32", io, ": expected F32 'input' and 'features'");
  Tensor x = Tensor::empty(in->shape, DType::F32);  // (N, 3, H, W)
  std::memcpy(x.raw(), in->bytes.data(), in->bytes.size());
  CpuFeatures fx(*backbone);
  const Tensor got = fx.features(x, FeatureLayer::Backbone);  // (N, D)
  MOCO_CHECK(got.shape() == want->shape, "features ", shape_str(got.shape()), ", PyTorch's ", shape_str(want->shape));
  const float* w = reinterpret_cast<const float*>(want->bytes.data());
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    diff = std::max(diff, (double)std::fabs(got.data<float>()[i] - w[i]));
    scale = std::max(scale, (double)std::fabs(w[i]));
  }
  std::printf("%s as --pretrained: %s (%d fc.* tensors left aside); features %s, max |moco - torch| = %.3g of "
              "max |torch| = %.3g (relative %.3g, tolerance %g)\n", path.c_str(), backbone->config().describe().c_str(),
              head, shape_str(got.shape()).c_str(), diff, scale, diff / scale, tol);
  return diff <= tol * scale ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    if (argc == 5 && std::string(argv[1]) == "--check-pretrained")
      return check_pretrained(argv[2], argv[3], std::atof(argv[4]));
    MOCO_CHECK(argc >= 2, "usage: moco_export_sample <out_dir> [depth=50] [seed=1]");
    const std::string out = argv[1];
    const int depth = argc > 2 ? std::atoi(argv[2]) : 50;
    const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;

    ResNetConfig cfg;
    cfg.depth = depth;
    cfg.head = Head::Mlp;  // exported without it: the MoCo v2 head must not leak into the backbone file
    Encoder trained(cfg, false);
    trained.init(seed);
    Rng rng(seed, 7);
    for (const RegistryEntry& e : trained.registry().entries()) {
      if (e.slot == Slot::Stat) {  // mean around 0, var around 1, both per channel
        const bool var = e.name.find("running_var") != std::string::npos;
        for (int64_t j = 0; j < e.numel(); ++j)
          trained.stats()[e.offset + j] = var ? (float)rng.uniform(0.5, 1.5) : (float)rng.uniform(-0.2, 0.2);
      } else if (e.slot == Slot::Count) {
        trained.counts()[e.offset] = 1000 + e.offset;
      } else if (e.shape.size() == 1 && !is_head_tensor(e.name)) {  // BN affine: weight around 1, bias around 0
        const bool weight = e.name.size() > 7 && e.name.compare(e.name.size() - 7, 7, ".weight") == 0;
        for (int64_t j = 0; j < e.numel(); ++j)
          trained.params()[e.offset + j] = weight ? (float)rng.uniform(0.5, 1.5) : (float)rng.uniform(-0.2, 0.2);
      }
    }
    const std::string path = out + "/resnet" + std::to_string(depth) + ".safetensors";
    export_encoder(trained, path, /*include_head=*/false);

    // A backbone-only encoder loaded from the file, so the reference features also exercise import.
    ResNetConfig bcfg = cfg;
    bcfg.head = Head::None;
    Encoder backbone(bcfg, false);
    ImportReport r = import_encoder(backbone, path, /*strict=*/true);
    backbone.set_train(false);
    Tensor x = Tensor::empty({2, 3, 64, 64}, DType::F32);  // (N, 3, H, W)
    Rng xr(seed, 11);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)xr.normal();
    Tensor y = backbone.forward(x, nullptr);  // (N, feature_dim)
    const std::string io = out + "/resnet" + std::to_string(depth) + "_io.safetensors";
    write_safetensors(io, {{"input", "F32", x.shape(), x.raw()}, {"features", "F32", y.shape(), y.raw()}});
    std::printf("wrote %s (%zu tensors, %lld parameters) and %s (features %s)\n", path.c_str(), r.loaded.size(),
                (long long)backbone.registry().parameter_count(), io.c_str(), shape_str(y.shape()).c_str());

    // A classifier: the probe's flat [weight (classes, D), bias (classes)] as the fc, and its outputs
    const int64_t classes = 10, d = y.size(1), n = y.size(0);
    std::vector<float> fc((size_t)(classes * d + classes));
    for (float& v : fc) v = (float)(0.05 * xr.normal());
    const std::string cls = out + "/resnet" + std::to_string(depth) + "_cls.safetensors";
    export_classifier(backbone, fc, cls);
    Tensor logits = Tensor::empty({n, classes}, DType::F32);  // (N, classes)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < classes; ++c) {
        double acc = fc[(size_t)(classes * d + c)];
        for (int64_t k = 0; k < d; ++k) acc += (double)y.data<float>()[i * d + k] * fc[(size_t)(c * d + k)];
        logits.data<float>()[i * classes + c] = (float)acc;
      }
    const std::string cls_io = out + "/resnet" + std::to_string(depth) + "_cls_io.safetensors";
    write_safetensors(cls_io, {{"input", "F32", x.shape(), x.raw()}, {"outputs", "F32", logits.shape(), logits.raw()}});
    std::printf("wrote %s and %s (outputs %s)\n", cls.c_str(), cls_io.c_str(), shape_str(logits.shape()).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moco_export_sample: error: %s\n", e.what());
    return 2;
  }
}
