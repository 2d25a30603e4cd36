// Checkpoints: a round trip restores every buffer bit-exactly, and every damaged or foreign file is refused
// with a message naming the problem, leaving the model untouched.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "moco/checkpoint.h"
#include "moco/train.h"
#include "file_size_limit.h"
#include "temp_dir.h"
#include "tiny_moco.h"

using namespace moco;
using namespace moco::test;

namespace {
MocoConfig tiny_config(uint64_t seed) {
  MocoConfig c = tiny_moco(8, 12);
  c.bn_splits = 2;
  c.seed = seed;
  return c;
}

Tensor images(int64_t n, float phase) { return wave_images(n, 0.37f, phase); }

RunConfig run_cfg(const std::string& width) { return {{"arch", "resnet18"}, {"width", width}, {"seed", "1"}}; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Checkpoint, RoundTripRestoresEveryBufferBitExactly) {
  TempDir dir;
  SingleCommunicator comm;
  Moco a(tiny_config(1), comm);
  a.init();
  a.step(images(4, 0.f), images(4, 1.f), 0.1f);  // non-trivial momentum, BN stats, queue pointer
  save_checkpoint(dir.file("c.ckpt"), a, {3, 7, 42}, run_cfg("2"));
  EXPECT_FALSE(std::ifstream(dir.file("c.ckpt.tmp")).good());  // the temporary is renamed away

  Moco b(tiny_config(2), comm);
  b.init();
  const TrainPosition p = load_checkpoint(dir.file("c.ckpt"), b, run_cfg("2"), {"arch", "width"});
  EXPECT_EQ(p.epoch, 3);
  EXPECT_EQ(p.step_in_epoch, 7);
  EXPECT_EQ(p.steps_done, 42);
  EXPECT_EQ(b.steps_done(), 42);
  EXPECT_EQ(a.encoder_q().params(), b.encoder_q().params());
  EXPECT_EQ(a.encoder_q().stats(), b.encoder_q().stats());
  EXPECT_EQ(a.encoder_q().counts(), b.encoder_q().counts());
  EXPECT_EQ(a.encoder_k().params(), b.encoder_k().params());
  EXPECT_EQ(a.encoder_k().stats(), b.encoder_k().stats());
  EXPECT_EQ(a.optimizer().momentum_buffer(), b.optimizer().momentum_buffer());
  EXPECT_EQ(a.queue().keys(), b.queue().keys());
  EXPECT_EQ(a.queue().ptr(), b.queue().ptr());
  EXPECT_EQ(a.queue().ptr(), 4);
  EXPECT_EQ(read_checkpoint_config(dir.file("c.ckpt")).at("width"), "2");
}

TEST(Checkpoint, DamagedOrForeignFilesAreRefusedAndTheModelIsUntouched) {
  TempDir dir;
  SingleCommunicator comm;
  Moco a(tiny_config(1), comm);
  a.init();
  const std::string path = dir.file("c.ckpt");
  save_checkpoint(path, a, {0, 1, 1}, run_cfg("2"));
  const std::string good = read_bytes(path);

  Moco b(tiny_config(2), comm);
  b.init();
  const std::vector<float> before = b.encoder_q().params();
  auto load = [&](const std::string& p, const std::string& width) {
    return error_of([&] { load_checkpoint(p, b, run_cfg(width), {"arch", "width"}); });
  };
  EXPECT_NE(load(dir.file("missing.ckpt"), "2").find("missing.ckpt"), std::string::npos);
  write_bytes(dir.file("trunc.ckpt"), good.substr(0, good.size() / 2));
  EXPECT_NE(load(dir.file("trunc.ckpt"), "2").find("truncated"), std::string::npos);
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x10;
  write_bytes(dir.file("flip.ckpt"), flipped);
  EXPECT_NE(load(dir.file("flip.ckpt"), "2").find("checksum"), std::string::npos);
  write_bytes(dir.file("text.ckpt"), "not a checkpoint at all, just some text");
  EXPECT_NE(load(dir.file("text.ckpt"), "2").find("not a moco checkpoint"), std::string::npos);
  const std::string foreign = load(path, "4");
  EXPECT_NE(foreign.find("width=2"), std::string::npos) << foreign;
  EXPECT_NE(foreign.find("width=4"), std::string::npos) << foreign;
  EXPECT_EQ(b.encoder_q().params(), before);  // nothing was copied by any failed load
}

// A position counts steps of the global batch (batch_size x world_size), so a checkpoint of a run on one rank
// is refused by the same run on two; the optimiser and the schedule may change (said on the terminal), and a
// key written by no older checkpoint is not held against it.
TEST(Checkpoint, AResumeKeepsTheWorldSizeAndMayChangeTheSchedule) {
  TempDir dir;
  SingleCommunicator comm;
  Moco a(tiny_config(1), comm);
  a.init();
  TrainOptions one;
  one.launch.world = 1;
  TrainOptions two = one;
  two.launch.world = 2;
  EXPECT_EQ(run_config(one).at("world_size"), "1");
  EXPECT_EQ(run_config(two).at("world_size"), "2");
  const std::string path = dir.file("c.ckpt");
  save_checkpoint(path, a, {0, 1, 1}, run_config(one));

  Moco b(tiny_config(2), comm);
  b.init();
  const std::string refused = error_of([&] { load_checkpoint(path, b, run_config(two), resume_must_match()); });
  EXPECT_NE(refused.find("world_size=1 there, but this run has world_size=2"), std::string::npos) << refused;
  EXPECT_NE(refused.find("give it the same world_size"), std::string::npos) << refused;  // and what to do

  TrainOptions changed = one;  // a lower rate and more epochs, as past a divergence or to train longer
  changed.lr = one.lr / 2;
  changed.epochs = one.epochs * 4;
  RunConfig saved;
  EXPECT_NO_THROW(load_checkpoint(path, b, run_config(changed), resume_must_match(), &saved));
  EXPECT_EQ(saved, run_config(one));
  for (const std::string& key : resume_may_change())
    EXPECT_EQ(std::count(resume_must_match().begin(), resume_must_match().end(), key), 0) << key;

  RunConfig older = run_config(one);  // written before world_size was kept
  older.erase("world_size");
  save_checkpoint(path, a, {0, 1, 1}, older);
  EXPECT_NO_THROW(load_checkpoint(path, b, run_config(two), resume_must_match()));
}

// What a checkpoint keeps must be finite: first_non_finite names the first tensor that is not.
TEST(Checkpoint, FirstNonFiniteNamesThePartThatHoldsIt) {
  SingleCommunicator comm;
  Moco m(tiny_config(1), comm);
  m.init();
  m.step(images(4, 0.f), images(4, 1.f), 0.1f);
  EXPECT_EQ(first_non_finite(m), "");
  const RegistryEntry& conv = m.encoder_q().registry().find("layer1.0.conv1.weight");
  const RegistryEntry& bn = m.encoder_k().registry().find("bn1.running_var");
  struct Case {
    std::vector<float>* buffer;
    int64_t at;
    float value;
    std::string named;
  } cases[] = {
      {&m.encoder_q().params(), conv.offset + conv.numel() - 1, std::nanf(""), "the query encoder's layer1.0.conv1.weight"},
      {&m.encoder_k().stats(), bn.offset, INFINITY, "the key encoder's bn1.running_var"},
      {&m.optimizer().momentum_buffer(), conv.offset, -INFINITY, "the SGD momentum of layer1.0.conv1.weight"},
      {&m.queue().keys(), 5, std::nanf(""), "the queue of keys"},
  };
  for (const Case& c : cases) {
    const float kept = (*c.buffer)[(size_t)c.at];
    (*c.buffer)[(size_t)c.at] = c.value;
    EXPECT_EQ(first_non_finite(m), c.named);
    (*c.buffer)[(size_t)c.at] = kept;
  }
  EXPECT_EQ(first_non_finite(m), "");
}

// Every way write_file_atomically can fail leaves the previous file as it was and no temporary behind. These
// hold as root too (CI), where a read-only folder would not stop the write.
TEST(Checkpoint, AFailedWriteLeavesThePreviousFileIntact) {
  TempDir dir;
  const std::string path = dir.file("c.ckpt");
  write_file_atomically(path, "old");
  ASSERT_EQ(read_bytes(path), "old");

  // mid-write: no bytes past 4 KiB
  const std::string e = error_of([&] {
    FileSizeLimit limit(4096);
    write_file_atomically(path, std::string(64 * 1024, 'n'));
  });
  EXPECT_NE(e.find("c.ckpt.tmp failed after"), std::string::npos) << e;
  EXPECT_NE(e.find("is unchanged"), std::string::npos) << e;
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // at open: the temporary's name is taken by a folder, which survives
  std::filesystem::create_directory(path + ".tmp");
  EXPECT_NE(error_of([&] { write_file_atomically(path, "new"); }).find("c.ckpt.tmp"), std::string::npos);
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_TRUE(std::filesystem::is_directory(path + ".tmp"));
  std::filesystem::remove(path + ".tmp");

  // at the rename: the target is a folder that is not empty; the temporary is removed
  const std::string taken = dir.file("taken");
  std::filesystem::create_directories(taken + "/inside");
  EXPECT_NE(error_of([&] { write_file_atomically(taken, "new"); }).find("cannot replace " + taken), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_directory(taken + "/inside"));
  EXPECT_FALSE(std::filesystem::exists(taken + ".tmp"));

  // in a folder that does not exist: nothing is created
  EXPECT_NE(error_of([&] { write_file_atomically(dir.file("no/such/c.ckpt"), "new"); }).find("no/such"),
            std::string::npos);
  EXPECT_EQ(read_bytes(path), "old");
}
