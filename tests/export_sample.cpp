// Writes a full-width torchvision-shaped export for tools/check_export.py to load into torchvision:
//   <out>/resnet<depth>.safetensors     backbone only (no fc), BN statistics and counters set to
//                                       non-default values so that a wrong mapping shows in the outputs
//   <out>/resnet<depth>_io.safetensors  "input" (N, 3, H, W) and "features" (N, C): our eval-mode backbone
//                                       output for that input, computed after re-importing the export
//   <out>/resnet<depth>_cls.safetensors     that backbone with a 10-class fc as a linear probe keeps it
//   <out>/resnet<depth>_cls_io.safetensors  "input" and "outputs" (N, 10): features . W^T + b, by plain loops
// usage: moco_export_sample <out_dir> [depth=50] [seed=1]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "moco/export.h"
#include "moco/rng.h"
#include "moco/safetensors.h"

using namespace moco;

int main(int argc, char** argv) {
  try {
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
