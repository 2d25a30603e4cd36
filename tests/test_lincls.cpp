// The linear probe end to end on a task a frozen random backbone can solve: dark images are class 0,
// bright ones class 1. The probe must learn it, and the backbone must come out bit-identical (the run_lincls
// check throws otherwise, and the test compares the buffers itself too).
#include <gtest/gtest.h>

#include <algorithm>

#include "moco/lincls.h"
#include "moco/lincls_checkpoint.h"
#include "moco/linear_probe.h"
#include "temp_dir.h"
#include "tiny_moco.h"

using namespace moco;

using test::DarkBright;

TEST(Lincls, LearnsASeparableTaskAndLeavesTheBackboneUntouched) {
  Encoder enc(test::probe_backbone());
  enc.init(3);
  const std::vector<float> params = enc.params(), stats = enc.stats();
  DarkBright train(64, 1), test(32, 2);
  const LinclsOptions o = test::probe_options(6, 4);
  std::vector<double> losses;
  int scored = 0;
  double best = -1;
  LinclsResult r = run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    losses.push_back(e.loss);
    if (e.scored) {
      ++scored;
      best = std::max(best, e.top1);
      EXPECT_GE(e.top5, e.top1) << "epoch " << e.epoch;
    }
  });
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_EQ(scored, 6) << "main_lincls.py scores the test split after every epoch";
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_GE(r.top1, 90.0);
  EXPECT_EQ(r.top5, 100.0) << "two classes: the label is always among the top five";
  EXPECT_EQ(r.best_top1, best);
  EXPECT_GE(r.best_top1, r.top1);
  EXPECT_GE(r.best_epoch, 0);
  EXPECT_EQ(enc.params(), params);
  EXPECT_EQ(enc.stats(), stats);
}

TEST(Lincls, EvalEveryScoresThoseEpochsAndTheLast) {
  Encoder enc(test::probe_backbone());
  enc.init(3);
  DarkBright train(32, 1), test(16, 2);
  LinclsOptions o = test::probe_options(5, 4);
  o.eval_every = 2;
  std::vector<int> scored;
  run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    if (e.scored) scored.push_back(e.epoch);
  });
  EXPECT_EQ(scored, (std::vector<int>{1, 3, 4}));
  o.eval_every = 0;
  scored.clear();
  run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    if (e.scored) scored.push_back(e.epoch);
  });
  EXPECT_EQ(scored, (std::vector<int>{4}));
}

// Every row scores the classes by the bias alone (zero weight): 0, 2, 2, -1, 2, 1. A label is beaten by each
// greater score and each equal one at a lower class: label 1 by none, 2 by one, 4 by two, 5 by three, 0 by
// four, 3 by five. So of the labels below, the three 1s are top-1 hits and all but the 3 are top-5 hits.
TEST(LinearProbe, TopOneAndTopFiveCountTiesForTheLowerClass) {
  const int64_t d = 5, classes = 6;
  std::vector<float> initial((size_t)(classes * d), 0.f);
  const std::vector<float> bias = {0.f, 2.f, 2.f, -1.f, 2.f, 1.f};
  initial.insert(initial.end(), bias.begin(), bias.end());
  auto probe = make_cpu_linear_probe(d, classes, initial, SgdConfig{0.9f, 0.f});
  const std::vector<int> y = {1, 2, 4, 1, 0, 5, 1, 3, 2};
  Tensor x = Tensor::empty({(int64_t)y.size(), d}, DType::F32);  // (N, D): any values, the weight is zero
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = (float)(i % 7) - 3.f;
  const TopHits h = probe->count_correct(x, y);
  EXPECT_EQ(h.top1, 3);
  EXPECT_EQ(h.top5, 8);
}

// A probe stopped mid-epoch keeps a checkpoint of that step, and the run resumed from it gives the losses and
// scores of the run that was never stopped, bit for bit (the loader's draws are keyed by seed, epoch and image).
TEST(Lincls, StopsWithACheckpointAndResumesBitForBit) {
  test::TempDir dir;
  DarkBright train(40, 1), test(16, 2);
  LinclsOptions o = test::probe_options(4, 3);
  o.batch_size = 8;  // 5 steps an epoch
  Encoder enc(test::probe_backbone());
  enc.init(3);
  o.config = lincls_config(enc, "dark-bright", o);
  const LinclsResult whole = run_lincls(enc, train, test, o, nullptr);

  o.checkpoint = dir.file("lincls.mocockpt");
  int steps = 0;
  o.stop = [&] { return ++steps == 7; };  // the 2nd step of the 2nd epoch
  const LinclsResult stopped = run_lincls(enc, train, test, o, nullptr);
  ASSERT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.stopped_epoch, 1);
  EXPECT_EQ(stopped.stopped_step, 2);
  const LinclsState at = load_lincls_checkpoint(o.checkpoint);
  EXPECT_EQ(at.epoch, 1);
  EXPECT_EQ(at.step_in_epoch, 2);
  EXPECT_EQ(at.steps_done, 7);
  ASSERT_EQ(at.epoch_loss.size(), 1u);
  EXPECT_EQ(at.epoch_loss[0], whole.epoch_loss[0]);

  o.stop = nullptr;
  o.resume = &at;
  std::vector<int> epochs_seen;
  const LinclsResult resumed = run_lincls(enc, train, test, o, [&](const LinclsEpoch& e) {
    epochs_seen.push_back(e.epoch);
  });
  EXPECT_EQ(epochs_seen, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(resumed.epoch_loss, whole.epoch_loss);
  EXPECT_EQ(resumed.top1, whole.top1);
  EXPECT_EQ(resumed.top5, whole.top5);
  EXPECT_EQ(resumed.best_top1, whole.best_top1);
  EXPECT_EQ(resumed.best_epoch, whole.best_epoch);

  // a finished run's checkpoint says so: resuming it trains nothing and reports the same scores
  const LinclsState done = load_lincls_checkpoint(o.checkpoint);
  EXPECT_EQ(done.epoch, 4);
  o.resume = &done;
  const LinclsResult again = run_lincls(enc, train, test, o, [&](const LinclsEpoch&) { FAIL() << "trained again"; });
  EXPECT_EQ(again.top1, whole.top1);
  EXPECT_EQ(again.epoch_loss, whole.epoch_loss);

  // another run's checkpoint is refused, naming what differs
  LinclsOptions other = o;
  other.lr = 0.5;
  other.config = lincls_config(enc, "dark-bright", other);
  other.resume = &at;
  try {
    run_lincls(enc, train, test, other, nullptr);
    FAIL() << "a checkpoint of lr 1 resumed a run of lr 0.5";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another run: lr=1 there, but this run has lr=0.5"), std::string::npos)
        << e.what();
  }
  Encoder moved(test::probe_backbone());
  moved.init(4);  // another backbone
  o.config = lincls_config(moved, "dark-bright", o);
  try {
    run_lincls(moved, train, test, o, nullptr);
    FAIL() << "the checkpoint resumed a probe on another backbone";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backbone_crc32="), std::string::npos) << e.what();
  }
}

TEST(LinclsCheckpoint, RoundTripAndDamage) {
  test::TempDir dir;
  LinclsState s;
  s.config = {{"lr", "30"}, {"data", "/d"}};
  s.epoch = 2;
  s.step_in_epoch = 3;
  s.steps_done = 13;
  s.loss_sum = 1.25;
  s.best_top1 = 61.5;
  s.best_epoch = 1;
  s.last_top1 = 60.25;
  s.last_top5 = 83.0;
  s.epoch_loss = {2.5, 1.5};
  s.fc = {1.f, -2.f, 3.5f};
  s.momentum = {0.25f, 0.f, -1.f};
  const std::string path = dir.file("lincls.mocockpt");
  save_lincls_checkpoint(path, s);
  const LinclsState r = load_lincls_checkpoint(path);
  EXPECT_EQ(r.config, s.config);
  EXPECT_EQ(r.epoch, 2);
  EXPECT_EQ(r.step_in_epoch, 3);
  EXPECT_EQ(r.steps_done, 13);
  EXPECT_EQ(r.loss_sum, 1.25);
  EXPECT_EQ(r.best_top1, 61.5);
  EXPECT_EQ(r.best_epoch, 1);
  EXPECT_EQ(r.last_top1, 60.25);
  EXPECT_EQ(r.last_top5, 83.0);
  EXPECT_EQ(r.epoch_loss, s.epoch_loss);
  EXPECT_EQ(r.fc, s.fc);
  EXPECT_EQ(r.momentum, s.momentum);

  auto error_of = [&](const std::string& p) {
    try {
      load_lincls_checkpoint(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  std::string bytes = test::read_bytes(path);
  bytes[bytes.size() / 2] ^= 0x20;
  test::write_bytes(dir.file("flipped"), bytes);
  EXPECT_NE(error_of(dir.file("flipped")).find("fails its checksum"), std::string::npos);
  test::write_bytes(dir.file("short"), test::read_bytes(path).substr(0, 40));
  EXPECT_NE(error_of(dir.file("short")).find("truncated"), std::string::npos);
  test::write_bytes(dir.file("other"), "MOCOCKPT and the rest of a training checkpoint");
  EXPECT_NE(error_of(dir.file("other")).find("is not a moco probe checkpoint"), std::string::npos);
  EXPECT_NE(error_of(dir.path()).find("is not a file; expected the lincls.mocockpt"), std::string::npos);
}
