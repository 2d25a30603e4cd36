// `moco export --checkpoint PATH --out FILE`: the query backbone (and with --head its MoCo head) as
// safetensors under torchvision's names, ready for torchvision.models.resnet50(...).load_state_dict(...,
// strict=False), where only fc.* is then missing. With --probe, the linear probe trained on that backbone
// takes the fc's place: a whole classifier for load_state_dict(..., strict=True). The backbone of a classifier
// may also be a --pretrained file, the one `moco lincls --pretrained` probed.
#include <cstdio>
#include <memory>

#include "moco/args.h"
#include "moco/commands.h"
#include "moco/export.h"
#include "moco/checkpoint_model.h"
#include "moco/lincls.h"
#include "moco/lincls_checkpoint.h"
#include "moco/pretrained.h"

namespace moco {

namespace {

// The classifier: `backbone` (described as `what`, for messages) with the probe of `probe_path` as its fc,
// once the probe is known to have been trained on exactly these weights.
void export_probe_classifier(const Encoder& backbone, const std::string& what, const std::string& probe_path,
                             const std::string& out) {
  const LinclsState probe = load_lincls_checkpoint(probe_path);
  const auto recorded = [&](const char* key) {
    const auto it = probe.config.find(key);
    return it == probe.config.end() ? std::string("(none)") : it->second;
  };
  MOCO_CHECK(recorded("random_init") != "1", "probe ", probe_path, " was trained on a network at its "
             "initialisation (moco lincls --random-init), a baseline; moco export writes trained backbones only");
  const std::string crc = backbone_crc32(backbone);
  // The CRC covers the weights as moco lincls held them: a training checkpoint's query encoder with its MoCo
  // head, a --pretrained file's backbone alone. So the same backbone probed through the other source differs.
  MOCO_CHECK(recorded("backbone_crc32") == crc, "probe ", probe_path, " was trained on another backbone: ",
             recorded("backbone"), " with weights CRC-32 ", recorded("backbone_crc32"), ", not ", what, ": ",
             backbone.config().describe(), ", CRC-32 ", crc, ". Give the --checkpoint or --pretrained that moco "
             "lincls was given (a checkpoint's CRC also covers its MoCo head)");
  export_classifier(backbone, probe.fc, out);
  std::printf("wrote %s: %s %s with the probe of %s as its fc, %lld classes\n", out.c_str(),
              backbone.config().describe().c_str(), what.c_str(), probe_path.c_str(),
              (long long)(probe.fc.size() / (size_t)(backbone.config().feature_dim() + 1)));
}

}  // namespace

int cmd_export(int argc, char** argv) {
  Args a("moco export", "Write a checkpoint's encoder, or a backbone with its linear probe, as safetensors with "
         "torchvision key names.");
  a.option("--checkpoint", "", "training checkpoint (required, unless --pretrained)");
  a.option("--out", "", "output .safetensors file (required); written atomically");
  a.flag("--head", "also write the MoCo head (fc.* for v1, fc.0.* / fc.2.* for the v2 MLP)");
  a.option("--encoder", "query", "query (the one trained by SGD, as in the authors' lincls) or key");
  a.option("--probe", "", "a probe checkpoint of moco lincls on this backbone (lincls.mocockpt): write the backbone "
           "with the probe as its fc, a classifier");
  a.option("--pretrained", "", "with --probe, instead of --checkpoint: the safetensors backbone that moco lincls "
           "--pretrained probed");
  if (!a.parse(argc, argv, 2)) return 0;
  const std::string path = a.str("--checkpoint"), out = a.str("--out"), which = a.str("--encoder");
  const std::string probe_path = a.str("--probe"), pretrained = a.str("--pretrained");
  MOCO_CHECK(path.empty() != pretrained.empty(),
             path.empty() ? "moco export needs --checkpoint PATH (a file written by moco train), or --pretrained "
                            "FILE.safetensors with --probe PROBE.mocockpt"
                          : "moco export takes --checkpoint or --pretrained, not both");
  MOCO_CHECK(!out.empty(), "moco export needs --out FILE.safetensors");
  MOCO_CHECK(which == "query" || which == "key", "--encoder ", which, " is not one of: query, key");
  MOCO_CHECK(probe_path.empty() || !a.on("--head"), "--probe writes the probe as the fc, --head the MoCo head: "
             "give one of them");
  if (!pretrained.empty()) {
    MOCO_CHECK(!probe_path.empty(), "--pretrained ", pretrained, " is already a backbone under torchvision's names; "
               "moco export writes it only as a classifier, with --probe PROBE.mocockpt");
    MOCO_CHECK(!a.has("--encoder"), "--encoder picks an encoder of a training checkpoint; --pretrained ",
               pretrained, " holds one backbone");
    const std::unique_ptr<Encoder> backbone = load_pretrained_backbone(pretrained);
    export_probe_classifier(*backbone, "backbone of " + pretrained, probe_path, out);
    return 0;
  }
  CheckpointModel model(path, /*random_init=*/false);
  Encoder& enc = which == "query" ? model.moco().encoder_q() : model.moco().encoder_k();
  if (!probe_path.empty()) {
    export_probe_classifier(enc, which + " encoder of " + path, probe_path, out);
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
