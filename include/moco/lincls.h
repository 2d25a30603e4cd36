// Linear classification on a frozen backbone (SPEC 5): a fresh fc (weight N(0, 0.01), bias 0) trained with
// SGD on the backbone's features, BN in eval mode, scored (Acc@1, Acc@5) on the eval transform of the test
// split. The backbone, BN statistics included, must come out bit-identical: that is checked, not assumed. A
// run keeps checkpoints and continues from one bit for bit (lincls_checkpoint.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moco/checkpoint.h"
#include "moco/data.h"
#include "moco/features.h"
#include "moco/resnet.h"

namespace moco {

struct LinclsState;  // lincls_checkpoint.h

struct LinclsOptions {
  int epochs = 100;
  double lr = 30, momentum = 0.9, weight_decay = 0;
  std::vector<int64_t> schedule = {60, 80};  // lr x0.1 at these epochs
  int64_t batch_size = 256;
  int image_size = 224;
  int workers = 2;
  uint64_t seed = 0;
  int64_t train_limit = 0, test_limit = 0;  // images used from each split; 0: all
  // Epochs between scores of the test split; the last epoch is always scored. 1, the default, is main_lincls.py,
  // which validates after every epoch and reports the best Acc@1.
  int eval_every = 1;
  // Checkpoints: written atomically to `checkpoint` (empty: none) after every epoch, and after the step at
  // which `stop` (asked after every step; empty: never) says to stop. `config` is what they keep of the run
  // (lincls_config); `resume` continues from a loaded one, whose config must equal `config`.
  std::string checkpoint;
  RunConfig config;
  const LinclsState* resume = nullptr;
  std::function<bool()> stop;
  // main_lincls.py's --evaluate: score `resume`'s probe on the test split once and train nothing (no checkpoint
  // written). Of `config` only the backbone, the data and the image size must match the probe's: the training
  // options do not matter, and the test images scored (seed, test_limit) may differ.
  bool evaluate_only = false;
};

// A CRC-32 of the backbone's weights and BN statistics (its head included), as 8 hex digits: what a probe was
// trained on.
std::string backbone_crc32(const Encoder& backbone);

// What a probe checkpoint keeps of its run, and a resume must share: the backbone's data and a CRC-32 of its
// weights and BN statistics, and every option above that changes the result (not eval_every).
RunConfig lincls_config(const Encoder& backbone, const std::string& data, const LinclsOptions& o);

// One epoch of the probe: its mean training loss and, when it was scored, Acc@1 and Acc@5 (percent) on the
// test split's eval transform.
struct LinclsEpoch {
  int epoch = 0;
  int64_t steps_done = 0;  // over the run, at the epoch's end
  float lr = 0;  // the epoch's learning rate
  double loss = 0;
  bool scored = false;
  double top1 = 0, top5 = 0, best_top1 = 0;  // best: over the scored epochs so far
};

struct LinclsResult {
  double top1 = 0, top5 = 0;        // percent, on the test split after the last epoch
  double best_top1 = 0;             // the best scored Acc@1 (main_lincls.py's best_acc1) and its epoch
  int best_epoch = -1;
  std::vector<double> epoch_loss;  // mean training loss per epoch
  bool stopped = false;             // `stop` ended the run; its checkpoint holds the position below
  int64_t stopped_epoch = 0, stopped_step = 0;
};

// `on_epoch` is called after each epoch (progress, logs). `features`: where the frozen backbone runs (nullptr:
// on the CPU, the backbone itself); the fc trains there too (its linear_probe()).
LinclsResult run_lincls(Encoder& backbone, const Dataset& train, const Dataset& test, const LinclsOptions& o,
                        const std::function<void(const LinclsEpoch&)>& on_epoch, FeatureExtractor* features = nullptr);

}  // namespace moco
