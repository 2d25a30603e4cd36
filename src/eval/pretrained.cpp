#include "moco/pretrained.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "moco/error.h"
#include "moco/export.h"

namespace moco {

namespace {

// "layer3.5.conv1.weight" -> (3, 5); false for any other name.
bool block_of(const std::string& name, int& stage, int& block) {
  int consumed = 0;
  return std::sscanf(name.c_str(), "layer%d.%d.conv1.weight%n", &stage, &block, &consumed) == 2 &&
         consumed == (int)name.size();
}

}  // namespace

ResNetConfig infer_backbone_config(const SafeTensorsFile& file, const std::string& path) {
  const SafeTensor* conv1 = file.find("conv1.weight");
  if (!conv1) {
    const bool authors = !file.tensors.empty() && file.tensors[0].name.rfind("module.encoder_q.", 0) == 0;
    fail(path, " has no conv1.weight, so it is not a ResNet under torchvision's names",
         authors ? "; its names start with module.encoder_q., as in the authors' MoCo checkpoints: convert it "
                   "with `python3 tools/convert_moco_checkpoint.py CHECKPOINT.pth.tar OUT.safetensors`"
                 : "; expected conv1.weight, bn1.*, layer1.0.conv1.weight, ... (`moco export` writes such files)");
  }
  MOCO_CHECK(conv1->shape.size() == 4 && conv1->shape[2] == conv1->shape[3] &&
                 (conv1->shape[2] == 7 || conv1->shape[2] == 3),
             path, ": conv1.weight has shape ", shape_str(conv1->shape),
             ", expected (width, channels, 7, 7) for the ImageNet stem or (width, channels, 3, 3) for the small one");
  ResNetConfig cfg;
  cfg.width = (int)conv1->shape[0];
  cfg.in_channels = (int)conv1->shape[1];
  cfg.small_stem = conv1->shape[2] == 3;
  cfg.head = Head::None;

  int blocks[4] = {0, 0, 0, 0};  // per stage: 1 + the largest block index seen
  for (const SafeTensor& t : file.tensors) {
    int stage = 0, block = 0;
    if (block_of(t.name, stage, block) && stage >= 1 && stage <= 4) blocks[stage - 1] = std::max(blocks[stage - 1], block + 1);
  }
  const bool bottleneck = file.find("layer1.0.conv3.weight") != nullptr;
  const std::map<std::vector<int>, int> basic = {{{2, 2, 2, 2}, 18}, {{3, 4, 6, 3}, 34}};
  const std::map<std::vector<int>, int> bottlenecks = {{{3, 4, 6, 3}, 50}, {{3, 4, 23, 3}, 101}, {{3, 8, 36, 3}, 152}};
  const std::vector<int> found(blocks, blocks + 4);
  const auto& table = bottleneck ? bottlenecks : basic;
  const auto it = table.find(found);
  MOCO_CHECK(it != table.end(), path, ": ", bottleneck ? "bottleneck" : "basic", " blocks per stage ", found[0], ", ",
             found[1], ", ", found[2], ", ", found[3], " are none of torchvision's ResNets (",
             bottleneck ? "3 4 6 3: resnet50, 3 4 23 3: resnet101, 3 8 36 3: resnet152"
                        : "2 2 2 2: resnet18, 3 4 6 3: resnet34", ")");
  cfg.depth = it->second;
  return cfg;
}

std::unique_ptr<Encoder> load_pretrained_backbone(const std::string& path, int* ignored_head) {
  const SafeTensorsFile file = read_safetensors(path);
  const ResNetConfig cfg = infer_backbone_config(file, path);
  auto enc = std::make_unique<Encoder>(cfg, /*with_grads=*/false);
  // shapes and dtypes of every shared name are checked before anything is copied
  const ImportReport r = import_encoder(*enc, file, path, /*strict=*/false);
  std::vector<std::string> other;  // names that are neither the backbone's nor a head's
  int head = 0;
  for (const std::string& name : r.unexpected) {
    if (is_head_tensor(name))
      ++head;
    else
      other.push_back(name);
  }
  MOCO_CHECK(r.missing.empty(), path, " lacks ", r.missing.size(), " tensors of ", cfg.describe(), ", the first ",
             r.missing.front(), ": a backbone needs every parameter, BN statistic and counter");
  MOCO_CHECK(other.empty(), path, " holds ", other.size(), " tensors that ", cfg.describe(),
             " does not have, the first ", other.front());
  if (ignored_head) *ignored_head = head;
  return enc;
}

}  // namespace moco
