// Five MoCo steps on the CPU against the PyTorch twin (tools/torch_twin.py), for the v1 (fc) and v2 (MLP)
// heads. The twin ran in float64 and recorded its whole state before every step (both encoders with BN
// statistics and counters, SGD momentum buffers, queue, pointer). Each of our steps starts from that state
// with the same inputs and shuffle permutation; its loss and resulting state must match the twin's next
// state about as closely as PyTorch's own float32 step does (tolerances.h). The fixture uses split-BN with
// 2 groups, m = 0.9, K = 20 and a batch of 8, starting at queue pointer 16, so the first enqueue wraps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model_io.h"
#include "moco/moco.h"

using namespace moco;
using namespace moco::test;

static void load_moco_state(Moco& moco, const Fixture& f, const std::string& prefix) {
  load_state(moco.encoder_q(), f, prefix + "q.");
  load_state(moco.encoder_k(), f, prefix + "k.");
  std::vector<float>& buf = moco.optimizer().momentum_buffer();
  for (const auto& e : moco.encoder_q().registry().entries())
    if (e.slot == Slot::Param) {
      const Tensor& src = f.get(prefix + "sgd." + e.name);
      std::memcpy(buf.data() + e.offset, src.raw(), src.nbytes());
    }
  const Tensor& queue = f.get(prefix + "queue");
  ASSERT_EQ((size_t)queue.numel(), moco.queue().keys().size());
  std::memcpy(moco.queue().keys().data(), queue.raw(), queue.nbytes());
  moco.queue().set_ptr(f.get(prefix + "queue_ptr").data<int64_t>()[0]);
}

static void expect_moco_state(Moco& moco, const Fixture& f, int state) {
  const std::string prefix = "state" + std::to_string(state) + ".", err = prefix + "err32.";
  expect_encoder_within_torch_f32(moco.encoder_q(), f, "q.", prefix + "q.", err + "q.");
  expect_encoder_within_torch_f32(moco.encoder_k(), f, "k.", prefix + "k.", err + "k.");
  for (const auto& e : moco.encoder_q().registry().entries())
    if (e.slot == Slot::Param)
      expect_within_torch_f32("sgd." + e.name, moco.optimizer().momentum_buffer().data() + e.offset,
                              f.get(prefix + "sgd." + e.name), f.get(err + "sgd." + e.name).data<double>()[0]);
  expect_within_torch_f32("queue", moco.queue().keys().data(), f.get(prefix + "queue"),
                          f.get(err + "queue").data<double>()[0]);
  EXPECT_EQ(moco.queue().ptr(), f.get(prefix + "queue_ptr").data<int64_t>()[0]) << prefix;
}

static void run_parity(const char* file, Head head) {
  Fixture f(file);
  auto ints = f.vec<int64_t>("config.ints");    // depth width small_stem out_dim bn_groups K N H steps
  auto floats = f.vec<double>("config.floats");  // m T lr momentum wd
  MocoConfig cfg;
  cfg.encoder.depth = (int)ints[0];
  cfg.encoder.width = (int)ints[1];
  cfg.encoder.small_stem = ints[2] != 0;
  cfg.encoder.head = head;
  cfg.encoder.out_dim = (int)ints[3];
  cfg.bn_splits = (int)ints[4];
  cfg.queue_size = ints[5];
  cfg.momentum = (float)floats[0];
  cfg.temperature = (float)floats[1];
  cfg.sgd.momentum = (float)floats[3];
  cfg.sgd.weight_decay = (float)floats[4];
  const float lr = (float)floats[2];
  const int steps = (int)ints[8];
  ASSERT_EQ(steps, 5);

  SingleCommunicator comm;
  Moco moco(cfg, comm);
  auto losses = f.vec<double>("losses"), loss_err32 = f.vec<double>("losses.err32");
  for (int s = 0; s < steps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const std::string p = "step" + std::to_string(s) + ".";
    load_moco_state(moco, f, "state" + std::to_string(s) + ".");
    StepStats st = moco.step_with_permutation(f.get(p + "x_q"), f.get(p + "x_k"), lr, f.vec<int64_t>(p + "perm"));
    EXPECT_NEAR(st.loss, losses[s], tol::kTorchF32Factor * loss_err32[s] + tol::kNormRel * losses[s])
        << "loss at step " << s << "; PyTorch float32 is off by " << loss_err32[s];
    expect_moco_state(moco, f, s + 1);
  }
}

TEST(MocoVsTorch, FiveStepsV1Head) { run_parity("moco_steps_v1.bin", Head::Linear); }
TEST(MocoVsTorch, FiveStepsV2MlpHead) { run_parity("moco_steps_v2.bin", Head::Mlp); }
