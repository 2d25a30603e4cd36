// One MoCo training step (SPEC 1). The order of the phases is the algorithm; read step_with_permutation top
// to bottom.
#include "moco/moco.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "moco/cpu_ops.h"
#include "moco/rng.h"

namespace moco {

static ResNetConfig with_head_checked(const ResNetConfig& c) {
  MOCO_CHECK(c.head != Head::None, "a MoCo encoder needs a head (Linear for v1, Mlp for v2)");
  return c;
}

Moco::Moco(const MocoConfig& cfg, Communicator& comm)
    : cfg_(cfg),
      comm_(comm),
      encoder_q_(with_head_checked(cfg.encoder), /*with_grads=*/true),
      encoder_k_(cfg.encoder, /*with_grads=*/false),
      queue_(cfg.queue_size, cfg.encoder.out_dim),
      sgd_(encoder_q_.registry().size(Slot::Param), cfg.sgd) {
  MOCO_CHECK(cfg.temperature > 0, "--moco-t must be > 0, got ", cfg.temperature);
  MOCO_CHECK(cfg.momentum >= 0 && cfg.momentum <= 1, "--moco-m must be in [0, 1], got ", cfg.momentum);
  MOCO_CHECK(cfg.bn_splits >= 1, "bn splits must be >= 1, got ", cfg.bn_splits);
  encoder_q_.set_bn_groups(cfg.bn_splits);
  encoder_k_.set_bn_groups(cfg.bn_splits);
  encoder_q_.set_recompute_bn_relu(cfg.recompute_bn_relu);  // the key encoder keeps nothing for a backward
}

void Moco::init() {
  encoder_q_.init(cfg_.seed);
  encoder_k_.params() = encoder_q_.params();  // theta_k <- theta_q
  encoder_k_.stats() = encoder_q_.stats();
  encoder_k_.counts() = encoder_q_.counts();
  queue_.init_random(cfg_.seed + 1);
  steps_done_ = 0;
}

void Moco::momentum_update_key_encoder() {
  // parameters only: the key encoder's BN running statistics evolve from its own forwards
  cpu::momentum_update<float>((int64_t)encoder_k_.params().size(), cfg_.momentum, encoder_q_.params().data(),
                              encoder_k_.params().data());
}

std::vector<int64_t> draw_shuffle_permutation(uint64_t seed, int64_t step, int64_t global_batch, Communicator& comm) {
  std::vector<int64_t> perm((size_t)global_batch);  // (W*N)
  std::iota(perm.begin(), perm.end(), 0);
  if (comm.rank() == 0) {
    Rng rng(seed, mix_stream(0x5 /*shuffle*/, (uint64_t)step));
    for (int64_t i = global_batch - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);  // Fisher-Yates
  }
  comm.broadcast(perm.data(), perm.size() * sizeof(int64_t), 0);  // every rank uses rank 0's draw
  return perm;
}

std::vector<int64_t> inverse_permutation(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size(), -1);  // (W*N)
  for (size_t j = 0; j < perm.size(); ++j) {
    MOCO_CHECK(perm[j] >= 0 && perm[j] < (int64_t)perm.size() && inv[(size_t)perm[j]] < 0, "shuffle permutation entry ",
               perm[j], " at ", j, " is outside [0, ", perm.size(), ") or repeated");
    inv[(size_t)perm[j]] = (int64_t)j;
  }
  return inv;
}

std::vector<int64_t> Moco::draw_shuffle_permutation(int64_t global_batch) {
  return moco::draw_shuffle_permutation(cfg_.seed, steps_done_, global_batch, comm_);
}

// Rows of a tensor (N, ...) as flat floats.
static int64_t row_floats(const Tensor& t) { return t.numel() / t.size(0); }

// Shuffle BN as one all-to-all: this rank's slice of the shuffled global batch is global rows
// perm[rank*N .. rank*N + N), and each image travels once, from the rank that holds it to the rank that needs it.
Tensor Moco::batch_shuffle(const Tensor& x, const std::vector<int64_t>& perm) {
  Tensor out = Tensor::empty(x.shape(), DType::F32);  // (N, ...) this rank's slice of the shuffled batch
  comm_.permute_rows(x.data<float>(), x.size(0), row_floats(x), perm, out.data<float>());
  return out;
}

// The reverse all-to-all: original global row g is shuffled row inv[g], where inv[perm[j]] = j.
Tensor Moco::batch_unshuffle(const Tensor& k, const std::vector<int64_t>& perm) {
  const std::vector<int64_t> inv = inverse_permutation(perm);  // (W*N)
  Tensor out = Tensor::empty(k.shape(), DType::F32);  // (N, C) this rank's keys in original order
  comm_.permute_rows(k.data<float>(), k.size(0), row_floats(k), inv, out.data<float>());
  return out;
}

void Moco::dequeue_and_enqueue(const Tensor& k) {
  const int64_t n = k.size(0), c = k.size(1);
  std::vector<float> all((size_t)(n * comm_.world_size() * c));  // (W*N, C) keys of the global batch
  comm_.all_gather(k.data<float>(), n * c, all.data());
  queue_.enqueue(all.data(), n * comm_.world_size());
}

StepStats Moco::step(const Tensor& x_q, const Tensor& x_k, float lr) {
  const int64_t global = x_k.size(0) * comm_.world_size();
  std::vector<int64_t> perm(global);
  if (cfg_.shuffle_bn) {
    perm = draw_shuffle_permutation(global);
  } else {
    std::iota(perm.begin(), perm.end(), 0);
  }
  return step_with_permutation(x_q, x_k, lr, perm);
}

const char* phase_name(int phase) {
  static const char* names[kPhases] = {"query_forward", "momentum_update", "key_forward", "logits_loss",
                                       "backward", "all_reduce", "sgd", "enqueue"};
  return phase >= 0 && phase < kPhases ? names[phase] : "?";
}

StepStats Moco::step_with_permutation(const Tensor& x_q, const Tensor& x_k, float lr, const std::vector<int64_t>& perm) {
  MOCO_CHECK(x_q.shape() == x_k.shape(), "query and key batches differ: ", shape_str(x_q.shape()), " vs ",
             shape_str(x_k.shape()));
  const int64_t n = x_q.size(0), c = queue_.dim(), k_len = queue_.size();
  MOCO_CHECK(n % cfg_.bn_splits == 0, "batch of ", n, " images does not split into ", cfg_.bn_splits, " BN groups");
  // checked before anything changes: the enqueue at the end would refuse it after SGD had run
  MOCO_CHECK(n * comm_.world_size() <= k_len, "the global batch (", n * comm_.world_size(),
             ") must not exceed the queue (--moco-k ", k_len, ")");
  encoder_q_.set_train(true);
  encoder_k_.set_train(true);
  StepStats stats;
  auto last = std::chrono::steady_clock::now();
  auto lap = [&](Phase p) {  // closes phase p: the time since the previous lap
    const auto now = std::chrono::steady_clock::now();
    stats.ms[p] += std::chrono::duration<double, std::milli>(now - last).count();
    last = now;
  };

  // 1. q = normalize(f_q(x_q)), recording for backward
  Tape tape;
  encoder_q_.zero_grad();
  Tensor feat_q = encoder_q_.forward(x_q, &tape);           // (N, C)
  Tensor q = Tensor::empty({n, c}, DType::F32);             // (N, C)
  Tensor q_norms = Tensor::empty({n}, DType::F32);          // (N)
  cpu::l2_normalize_forward(n, c, feat_q.data<float>(), q.data<float>(), q_norms.data<float>());
  stats.activation_bytes = tape.saved_bytes();
  lap(kQueryForward);

  // 2. momentum update of the key encoder, before its forward
  momentum_update_key_encoder();
  lap(kMomentumUpdate);

  // 3-5. keys: shuffle, forward without a tape, normalize, unshuffle
  Tensor x_k_shuffled = batch_shuffle(x_k, perm);           // (N, 3, H, W)
  Tensor feat_k = encoder_k_.forward(x_k_shuffled, nullptr);  // (N, C)
  Tensor k_shuffled = Tensor::empty({n, c}, DType::F32);    // (N, C)
  Tensor k_norms = Tensor::empty({n}, DType::F32);          // (N)
  cpu::l2_normalize_forward(n, c, feat_k.data<float>(), k_shuffled.data<float>(), k_norms.data<float>());
  Tensor k = batch_unshuffle(k_shuffled, perm);             // (N, C)
  lap(kKeyForward);

  // 6-7. logits [q.k, q.queue^T] / T against the queue as it was before this step, CE with label 0,
  // and its gradient dq, fused per row (the (N, 1+K) logits are never stored)
  Tensor dq = Tensor::empty({n, c}, DType::F32);            // (N, C)
  int64_t hits1 = 0, hits5 = 0;
  const float loss = cpu::contrastive_loss_forward_backward(n, c, k_len, q.data<float>(), k.data<float>(),
                                                            queue_.keys().data(), 1.f / cfg_.temperature,
                                                            dq.data<float>(), &hits1, &hits5);
  // Loss and accuracy of the global batch (mean over ranks), so every rank reports the same numbers and a
  // non-finite loss on any rank stops all of them at the same step.
  float global[3] = {loss, (float)hits1, (float)hits5};  // (3) loss, top-1 hits, top-5 hits
  comm_.all_reduce_mean(global, 3);
  stats.loss = global[0];
  if (!std::isfinite(stats.loss))
    fail_diverged("loss is ", stats.loss, " at step ", steps_done_,
                  "; stopping before the update so the last checkpoint stays good");
  stats.acc1 = 100.f * global[1] / (float)n;
  stats.acc5 = 100.f * global[2] / (float)n;
  lap(kLogitsLoss);

  // 8. backward through the query encoder only, average gradients over ranks, SGD step
  Tensor dfeat = Tensor::empty({n, c}, DType::F32);         // (N, C)
  cpu::l2_normalize_backward(n, c, q.data<float>(), q_norms.data<float>(), dq.data<float>(), dfeat.data<float>());
  encoder_q_.backward(dfeat, tape);
  lap(kBackward);
  comm_.all_reduce_mean(encoder_q_.grads().data(), (int64_t)encoder_q_.grads().size());
  lap(kAllReduce);
  sgd_.step(encoder_q_.params().data(), encoder_q_.grads().data(), lr);
  lap(kSgd);

  // 9. enqueue the keys of the global batch
  dequeue_and_enqueue(k);
  lap(kEnqueue);
  ++steps_done_;
  return stats;
}

}  // namespace moco
