// `moco export --checkpoint PATH --out FILE`: the query backbone (and with --head its MoCo head) as
// safetensors under torchvision's names, ready for torchvision.models.resnet50(...).load_state_dict(...,
// strict=False), where only fc.* is then missing. With --probe, the linear probe trained on that backbone
// takes the fc's place: a whole classifier for load_state_dict(..., strict=True).
#include <cstdio>

#include "moco/args.h"
#include "moco/commands.h"
#include "moco/export.h"
#include "moco/checkpoint_model.h"
#include "moco/lincls.h"
#include "moco/lincls_checkpoint.h"

namespace moco {

int cmd_export(int argc, char** argv) {
  Args a("moco export", "Write a checkpoint's encoder as safetensors with torchvision key names.");
  a.option("--checkpoint", "", "training checkpoint (required)");
  a.option("--out", "", "output .safetensors file (required); written atomically");
  a.flag("--head", "also write the MoCo head (fc.* for v1, fc.0.* / fc.2.* for the v2 MLP)");
  a.option("--encoder", "query", "query (the one trained by SGD, as in the authors' lincls) or key");
  a.option("--probe", "", "a probe checkpoint of moco lincls on this backbone (lincls.mocockpt): write the backbone "
           "with the probe as its fc, a classifier");
  if (!a.parse(argc, argv, 2)) return 0;
  const std::string path = a.str("--checkpoint"), out = a.str("--out"), which = a.str("--encoder");
  MOCO_CHECK(!path.empty(), "moco export needs --checkpoint PATH (a file written by moco train)");
  MOCO_CHECK(!out.empty(), "moco export needs --out FILE.safetensors");
  MOCO_CHECK(which == "query" || which == "key", "--encoder ", which, " is not one of: query, key");
  const std::string probe_path = a.str("--probe");
  MOCO_CHECK(probe_path.empty() || !a.on("--head"), "--probe writes the probe as the fc, --head the MoCo head: "
             "give one of them");
  CheckpointModel model(path, /*random_init=*/false);
  Encoder& enc = which == "query" ? model.moco().encoder_q() : model.moco().encoder_k();
  if (!probe_path.empty()) {
    const LinclsState probe = load_lincls_checkpoint(probe_path);
    const auto trained_on = probe.config.find("backbone_crc32");
    const std::string crc = backbone_crc32(enc);
    MOCO_CHECK(trained_on != probe.config.end() && trained_on->second == crc, "probe ", probe_path,
               " was trained on another backbone (weights CRC-32 ",
               trained_on == probe.config.end() ? "(none)" : trained_on->second, ") than the ", which, " encoder of ",
               path, " (", crc, "); give the checkpoint moco lincls probed");
    export_classifier(enc, probe.fc, out);
    std::printf("wrote %s: %s %s backbone with the probe of %s as its fc, %lld classes\n", out.c_str(),
                enc.config().describe().c_str(), which.c_str(), probe_path.c_str(),
                (long long)(probe.fc.size() / (size_t)(enc.config().feature_dim() + 1)));
    return 0;
  }
  export_encoder(enc, out, a.on("--head"));
  std::printf("wrote %s: %s %s encoder%s, %lld parameters\n", out.c_str(), enc.config().describe().c_str(),
              which.c_str(), a.on("--head") ? " with head" : " backbone",
              (long long)(a.on("--head") ? enc.registry().parameter_count()
                                         : enc.registry().parameter_count() - enc.registry().parameter_count("fc.")));
  return 0;
}

}  // namespace moco
