// What `moco knn` and `moco lincls` share: the options that pick a checkpoint's network (trained or at its
// initialisation), the data, the eval size and the loader, and opening all of that after parsing.
#pragma once
#include <memory>
#include <string>

#include "moco/args.h"
#include "moco/checkpoint_model.h"
#include "moco/features.h"
#include "moco/open_dataset.h"

namespace moco {

// Declares DATA, --checkpoint, --random-init, -b/--batch-size, -j/--workers, --image-size, --device and
// --precision.
void declare_eval_options(Args& a, const char* what_is_evaluated, const char* batch_help);

struct EvalTarget {
  std::string checkpoint;
  bool random_init = false;
  std::unique_ptr<CheckpointModel> model;
  std::string data;                      // DATA, or the checkpoint's data
  std::unique_ptr<Dataset> train, test;  // its two splits
  int image_size = 0;                    // --image-size, or the checkpoint's
  int64_t batch_size = 0;
  int workers = 0;
  std::unique_ptr<FeatureExtractor> features;  // the backbone on --device (the GPU when asked and usable)
  const char* label() const { return random_init ? "random init" : "trained"; }
};

// After a.parse(): checks --checkpoint, rebuilds its model and opens the data. `command` names the caller in
// errors ("moco knn").
EvalTarget open_eval_target(const Args& a, const char* command);

}  // namespace moco
