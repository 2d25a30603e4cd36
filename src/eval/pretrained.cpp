#include "moco/pretrained.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "moco/error.h"
#include "moco/export.h"

namespace moco {

namespace {

// "layer3.5.conv1.weight" -> (3, 5); false for any other name, and for a block index over 999 (the largest
// torchvision has is 35), so no number from the file can overflow.
bool block_of(const std::string& name, int& stage, int& block) {
  const std::string head = "layer", tail = ".conv1.weight";
  if (name.size() < head.size() + 3 + tail.size() || name.compare(0, head.size(), head) != 0 ||
      name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
    return false;
  const std::string mid = name.substr(head.size(), name.size() - head.size() - tail.size());  // "3.5"
  const size_t dot = mid.find('.');
  if (dot != 1 || mid[0] < '1' || mid[0] > '4' || mid.size() < 3 || mid.size() > 5) return false;
  block = 0;
  for (size_t k = 2; k < mid.size(); ++k) {
    if (mid[k] < '0' || mid[k] > '9') return false;
    block = block * 10 + (mid[k] - '0');
  }
  stage = mid[0] - '0';
  return true;
}

// Whether `name` is one of the authors' checkpoint keys (module.encoder_q.conv1.weight, encoder_k.*, ...).
bool authors_key(const std::string& name) {
  return name.rfind("module.", 0) == 0 || name.find("encoder_q.") != std::string::npos ||
         name.find("encoder_k.") != std::string::npos;
}

const char* kConvert = "convert it with `python3 tools/convert_moco_checkpoint.py CHECKPOINT OUT.safetensors`";

}  // namespace

ResNetConfig infer_backbone_config(const SafeTensorsFile& file, const std::string& path) {
  const SafeTensor* conv1 = file.find("conv1.weight");
  if (!conv1) {
    bool authors = false;
    for (const SafeTensor& t : file.tensors) authors = authors || authors_key(t.name);
    fail(path, " has no conv1.weight, so it is not a ResNet under torchvision's names",
         authors ? std::string("; its names are a MoCo or DDP model's (module.*, encoder_q.*): ") + kConvert
                 : std::string("; expected conv1.weight, bn1.*, layer1.0.conv1.weight, ... (`moco export` writes "
                               "such files)"));
  }
  MOCO_CHECK(conv1->shape.size() == 4 && conv1->shape[2] == conv1->shape[3] &&
                 (conv1->shape[2] == 7 || conv1->shape[2] == 3),
             path, ": conv1.weight has shape ", shape_str(conv1->shape),
             ", expected (width, channels, 7, 7) for the ImageNet stem or (width, channels, 3, 3) for the small one");
  // the views are RGB; a width of 0 would build an empty network
  MOCO_CHECK(conv1->shape[1] == 3 && conv1->shape[0] >= 1 && conv1->shape[0] <= 4096, path, ": conv1.weight has shape ",
             shape_str(conv1->shape), ", expected (width, 3, k, k): a network for RGB images, width 1 to 4096");
  ResNetConfig cfg;
  cfg.width = (int)conv1->shape[0];
  cfg.in_channels = 3;
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
  // A PyTorch checkpoint is a zip archive (torch.save since 1.6) or a bare pickle (0x80, then its protocol, 2 to
  // 5): say so before the safetensors reader calls it a bad header. main_lincls.py's --pretrained takes those
  // files. A safetensors file has its JSON's '{' at byte 8, which tells it from a pickle whose first two bytes
  // its header length may happen to share.
  uint8_t magic[9] = {};
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    const size_t got = std::fread(magic, 1, sizeof magic, f);
    std::fclose(f);
    const bool zip = got >= 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
    const bool pickle = got >= 2 && magic[0] == 0x80 && magic[1] >= 2 && magic[1] <= 5 && !(got == 9 && magic[8] == '{');
    MOCO_CHECK(!zip && !pickle, path, " is a PyTorch checkpoint (", zip ? "a torch.save zip archive" : "a pickle",
               "), not safetensors: ", kConvert);
  }
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
