// A backbone from someone else's weights: a safetensors file under torchvision's ResNet names, as `moco export`
// writes it, as safetensors.torch.save_file(torchvision.models.resnet50(...).state_dict()) writes it, or as
// tools/convert_moco_checkpoint.py makes it of the authors' MoCo checkpoints (.pth.tar). `moco knn` and
// `moco lincls` evaluate one with --pretrained (main_lincls.py's flag name) instead of a training checkpoint.
#pragma once
#include <memory>
#include <string>

#include "moco/resnet.h"
#include "moco/safetensors.h"

namespace moco {

// The ResNet those tensors are (no head): the depth from the number of blocks per stage and whether they are
// bottlenecks, the width and input channels from conv1.weight (N, C, k, k), the small stem from k = 3. Errors
// name the file and what was found, and say what to do with the authors' .pth.tar keys.
ResNetConfig infer_backbone_config(const SafeTensorsFile& file, const std::string& path);

// The backbone built from infer_backbone_config with every one of its tensors (parameters, BN statistics and
// counters) loaded from `path`; the file's fc.* (a classifier or a projection head) is left aside and counted
// in *ignored_head. Any backbone tensor missing from the file, or any other name the backbone does not have,
// is an error naming it. No gradient buffer: it is only evaluated.
std::unique_ptr<Encoder> load_pretrained_backbone(const std::string& path, int* ignored_head = nullptr);

}  // namespace moco
