#include "moco/checkpoint_model.h"

#include "moco/train.h"

namespace moco {

CheckpointModel::CheckpointModel(const std::string& path, bool random_init)
    : rc_(read_checkpoint_config(path)), moco_(moco_config(rc_), comm_) {
  moco_.init();
  if (!random_init) load_checkpoint(path, moco_, rc_, {});
}

std::string CheckpointModel::data(const std::string& override_data) const {
  if (!override_data.empty()) return override_data;
  const std::string& d = rc_.at("data");
  return d == "fashion-mnist" ? "" : d;
}

int CheckpointModel::image_size() const { return std::stoi(rc_.at("image_size")); }
uint64_t CheckpointModel::seed() const { return std::stoull(rc_.at("seed")); }

}  // namespace moco
