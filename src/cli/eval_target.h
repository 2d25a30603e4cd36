// What `moco knn` and `moco lincls` share: the options that pick the backbone (a training checkpoint's query
// encoder, trained or at its initialisation, or a --pretrained safetensors file), the data, the eval size and
// the loader, and opening all of that after parsing.
#pragma once
#include <memory>
#include <string>

#include "moco/args.h"
#include "moco/checkpoint_model.h"
#include "moco/features.h"
#include "moco/open_dataset.h"

namespace moco {

// Declares DATA, --checkpoint, --pretrained, --random-init, --seed, -b/--batch-size, -j/--workers,
// --image-size, --device and --precision.
void declare_eval_options(Args& a, const char* what_is_evaluated, const char* batch_help);

struct EvalTarget {
  std::string source;     // the training checkpoint, or the --pretrained file
  bool random_init = false;
  std::unique_ptr<CheckpointModel> model;  // with --checkpoint
  std::unique_ptr<Encoder> weights;        // with --pretrained: the backbone alone
  Encoder* backbone = nullptr;             // what is evaluated: the checkpoint's query encoder, or `weights`
  uint64_t seed = 0;                     // --seed, or the checkpoint's: the subsets drawn and the probe's init
  std::string data;                      // DATA, or the checkpoint's data ("" for Fashion-MNIST)
  std::unique_ptr<Dataset> train, test;  // its two splits
  int image_size = 0;                    // --image-size, or the checkpoint's (224 or 32 by the stem with --pretrained)
  int64_t batch_size = 0;
  int workers = 0;
  std::unique_ptr<FeatureExtractor> features;  // the backbone on --device (the GPU when asked and usable)
  bool pretrained() const { return weights != nullptr; }
  const char* label() const { return pretrained() ? "pretrained" : random_init ? "random init" : "trained"; }
  // "checkpoint" or "pretrained": the key under which logs record `source`
  const char* source_key() const { return pretrained() ? "pretrained" : "checkpoint"; }
};

// After a.parse(): checks that exactly one of --checkpoint and --pretrained is given, rebuilds or loads the
// backbone and opens the data. `command` names the caller in errors ("moco knn").
EvalTarget open_eval_target(const Args& a, const char* command);

}  // namespace moco
