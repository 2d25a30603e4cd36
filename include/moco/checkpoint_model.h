// The model of a training checkpoint, rebuilt from the configuration stored in it: what `moco knn`,
// `moco lincls` and `moco export` evaluate. With random_init the weights are not loaded, which gives the
// same network at its initialisation (same config, same seed): the baseline a trained network must beat.
#pragma once
#include <string>

#include "moco/checkpoint.h"
#include "moco/moco.h"

namespace moco {

class CheckpointModel {
 public:
  CheckpointModel(const std::string& path, bool random_init);
  Moco& moco() { return moco_; }
  Encoder& query_encoder() { return moco_.encoder_q(); }
  const RunConfig& config() const { return rc_; }
  // The data the run trained on, as `moco train` takes it ("" for Fashion-MNIST), unless `override_data`.
  std::string data(const std::string& override_data) const;
  int image_size() const;
  uint64_t seed() const;

 private:
  RunConfig rc_;
  SingleCommunicator comm_;  // declared before moco_, which keeps a reference to it
  Moco moco_;
};

}  // namespace moco
