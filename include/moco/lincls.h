// Linear classification on a frozen backbone (SPEC 5): a fresh fc (weight N(0, 0.01), bias 0) trained with
// SGD on the backbone's features, BN in eval mode, then top-1 on the eval transform. The backbone, BN
// statistics included, must come out bit-identical: that is checked, not assumed.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moco/data.h"
#include "moco/features.h"
#include "moco/resnet.h"

namespace moco {

struct LinclsOptions {
  int epochs = 100;
  double lr = 30, momentum = 0.9, weight_decay = 0;
  std::vector<int64_t> schedule = {60, 80};  // lr x0.1 at these epochs
  int64_t batch_size = 256;
  int image_size = 224;
  int workers = 2;
  uint64_t seed = 0;
  int64_t train_limit = 0, test_limit = 0;  // images used from each split; 0: all
};

struct LinclsResult {
  double top1 = 0;               // percent, on the test split
  std::vector<double> epoch_loss;  // mean training loss per epoch
};

// `on_epoch(epoch, loss)` is called after each epoch (progress, logs). `features`: where the frozen
// backbone runs (nullptr: on the CPU, the backbone itself); the fc trains there too (its linear_probe()).
LinclsResult run_lincls(Encoder& backbone, const Dataset& train, const Dataset& test, const LinclsOptions& o,
                        const std::function<void(int, double)>& on_epoch, FeatureExtractor* features = nullptr);

}  // namespace moco
