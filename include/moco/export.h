// Weight exchange with PyTorch: an Encoder's tensors as a safetensors file under torchvision's state_dict
// names ("conv1.weight", "layer1.0.bn1.running_mean", "fc.weight", MLP head "fc.0.weight", "fc.2.weight"),
// so that torchvision.models.resnet50().load_state_dict(safetensors.torch.load_file(path)) takes it as is.
// Parameters and BN running statistics are F32; num_batches_tracked is I64 with shape [].
#pragma once
#include <string>
#include <vector>

#include "moco/resnet.h"
#include "moco/safetensors.h"

namespace moco {

// True for the tensors of the projection head or classifier: "fc.*".
bool is_head_tensor(const std::string& name);

// Writes the backbone, and the head too when `include_head`, in registry (= torchvision) order; atomic
// like write_safetensors. Metadata: {"format": "pt", "arch": cfg.describe()}.
void export_encoder(const Encoder& enc, const std::string& path, bool include_head);

// A classifier: the backbone of `enc` with a trained fc in place of its head, `fc` = [weight (classes, D),
// bias (classes)] as a linear probe keeps it (lincls_checkpoint.h), under torchvision's names, so that
// torchvision.models.resnet50(num_classes=classes).load_state_dict(...) takes it with strict=True.
// Metadata: {"format": "pt", "arch": e.g. "resnet50+fc1000"}.
void export_classifier(const Encoder& enc, const std::vector<float>& fc, const std::string& path);

struct ImportReport {
  std::vector<std::string> loaded;      // names copied into the encoder
  std::vector<std::string> missing;     // in the encoder, absent from the file (left untouched)
  std::vector<std::string> unexpected;  // in the file, unknown to the encoder (ignored)
};

// Loads such a file into `enc`. Every name present in both must agree in dtype (F32, or I64 for counters)
// and shape, or moco::Error names the key and both shapes. With `strict`, missing or unexpected names are
// errors as well; without, they are reported (the linear probe loads a backbone export into a ResNet with a
// fresh fc: missing = {fc.weight, fc.bias}). Everything is checked before anything is copied, so a failed
// import leaves the encoder as it was.
ImportReport import_encoder(Encoder& enc, const std::string& path, bool strict);
// The same from a file already read; `path` names it in errors.
ImportReport import_encoder(Encoder& enc, const SafeTensorsFile& file, const std::string& path, bool strict);

}  // namespace moco
