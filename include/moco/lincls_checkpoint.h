// Linear-probe checkpoints: the probe's fc and SGD momentum, where the run stands, and what it runs on, in
// one record file written atomically (record_file.h, magic MOCOPROB). The probe's loader draws its order and
// augmentation from (seed, epoch, image), so the position alone continues the run bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moco/checkpoint.h"

namespace moco {

struct LinclsState {
  // What a resumed run must share with it: the backbone (its training checkpoint's data and a CRC-32 of its
  // weights and BN statistics) and the probe's options (lincls_config in lincls.h).
  RunConfig config;
  int64_t epoch = 0;          // the epoch in progress
  int64_t step_in_epoch = 0;  // its steps already done
  int64_t steps_done = 0;     // over the whole run
  double loss_sum = 0;        // the training losses of the epoch's steps done so far
  double best_top1 = 0;       // the best scored Acc@1 so far, and its epoch (-1: none yet)
  int64_t best_epoch = -1;
  double last_top1 = 0, last_top5 = 0;  // the last scores
  std::vector<double> epoch_loss;    // (epochs done) mean training loss of each
  std::vector<float> fc, momentum;   // (classes * D + classes) each: [weight, bias] and its SGD momentum
};

void save_lincls_checkpoint(const std::string& path, const LinclsState& s);
// Throws, naming the file and the problem, when it is unreadable, truncated, corrupt or malformed.
LinclsState load_lincls_checkpoint(const std::string& path);

}  // namespace moco
