// THE EQUIVALENCE TEST (SPEC 4): W ranks with N images each and shuffle BN compute what ONE rank computes
// with all W*N images and W split-BN groups, given the same global shuffle permutation.
//
// What makes the two the same, and what is compared:
//  - query encoder: its BN groups on the single rank are images [rN, (r+1)N) = rank r's batch, so each
//    rank's BN statistics are group r's;
//  - key encoder: rank r's slice of the shuffled batch is global rows perm[rN .. rN+N) = group r of the
//    permuted batch on the single rank, so the key encoder sees the same groups;
//  - the loss is the mean over ranks of each rank's mean (= the mean over all W*N rows), and the gradients
//    are averaged over ranks (= the gradient of that mean), so SGD makes the same update;
//  - the enqueued keys are gathered in rank order = the single rank's key order.
// Compared after each of 3 steps: loss, query gradients, both encoders' parameters, SGD momentum, queue and
// queue pointer, and the BN running statistics (each rank's are its own groups'; their mean over ranks is
// the single rank's group average, since the running update is linear). The reference runs on every rank
// with a SingleCommunicator. Sums run in another order on the two sides (the gradient all-reduce, per-rank
// loss means, the weight-gradient sums over the batch), so the results agree to float rounding, not bit for
// bit: see kRel below. The queue and both encoders' parameters must however be bit-identical across ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "equivalence_common.h"

using namespace moco;
using namespace moco::test;

TEST(DistEquivalence, ShuffleBnOnWRanksEqualsSplitBnOnOneRank) {
  MpiCommunicator comm = test_comm();
  SingleCommunicator alone;
  const int w = comm.world_size(), r = comm.rank();
  Moco dist(tiny(1), comm);  // this rank's N images, plain BN over them
  Moco ref(tiny(w), alone);  // all W*N images, W BN groups
  dist.init();
  ref.init();
  float worst_loss_gap = 0;
  for (int s = 0; s < kSteps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const std::vector<int64_t> perm = shared_permutation(w * kN, 100 + s);  // (W*N) the same on every rank
    const StepStats sd = dist.step_with_permutation(views(r * kN, kN, s, 0), views(r * kN, kN, s, 1), kLr, perm);
    const StepStats sr = ref.step_with_permutation(views(0, w * kN, s, 0), views(0, w * kN, s, 1), kLr, perm);

    EXPECT_NEAR(sd.loss, sr.loss, kRel * std::fabs(sr.loss)) << "loss";
    EXPECT_NEAR(sd.acc1, sr.acc1, 1e-3) << "acc@1 of the global batch";
    expect_close_per_tensor("query gradients (averaged over ranks)", ref.encoder_q().registry(), Slot::Param,
                            dist.encoder_q().grads(), ref.encoder_q().grads());
    expect_equivalent(comm, dist, ref);
    worst_loss_gap = std::max(worst_loss_gap, std::fabs(sd.loss - sr.loss) / std::fabs(sr.loss));
  }
  if (r == 0) std::printf("largest relative loss gap over %d steps: %.3g\n", kSteps, worst_loss_gap);

  // The tolerance is tight enough to see a wrong grouping: plain BN over all W*N images (no split) on the
  // single rank, from the same start, gives a loss far outside it.
  Moco wrong(tiny(1), alone);
  wrong.init();
  Moco right(tiny(1), comm);
  right.init();
  const std::vector<int64_t> perm = shared_permutation(w * kN, 100);
  const float l_wrong = wrong.step_with_permutation(views(0, w * kN, 0, 0), views(0, w * kN, 0, 1), kLr, perm).loss;
  const float l_right =
      right.step_with_permutation(views(r * kN, kN, 0, 0), views(r * kN, kN, 0, 1), kLr, perm).loss;
  if (r == 0) std::printf("relative loss gap with plain BN instead: %.3g\n", std::fabs(l_wrong - l_right) / l_right);
  EXPECT_GT(std::fabs(l_wrong - l_right), 100 * kRel * std::fabs(l_right))
      << "plain BN over the global batch should differ clearly from shuffle BN over ranks";
}
