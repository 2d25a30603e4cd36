// MoCo: the query and key encoders, the key queue, and one training step exactly as SPEC section 1.
#pragma once
#include <cstdint>
#include <vector>

#include "moco/comm.h"
#include "moco/optim.h"
#include "moco/resnet.h"

namespace moco {

// The dictionary: K keys of dimension C, stored (K, C) so that an enqueue is one contiguous copy.
class KeyQueue {
 public:
  KeyQueue(int64_t k, int64_t c);
  // Random normal entries, each row then L2-normalised (the authors' init); ptr = 0.
  void init_random(uint64_t seed);
  // Overwrites rows [ptr, ptr + n) with `keys` (n, C), wrapping around the end; ptr = (ptr + n) mod K.
  void enqueue(const float* keys, int64_t n);
  int64_t size() const { return k_; }
  int64_t dim() const { return c_; }
  int64_t ptr() const { return ptr_; }
  void set_ptr(int64_t p);
  std::vector<float>& keys() { return keys_; }  // (K, C)
  const std::vector<float>& keys() const { return keys_; }

 private:
  int64_t k_, c_, ptr_ = 0;
  std::vector<float> keys_;
};

struct MocoConfig {
  ResNetConfig encoder;  // its head and out_dim define the feature dimension C
  int64_t queue_size = 65536;   // K
  double momentum = 0.999;      // m of the key encoder update (double: 1 - m is rounded from it, as PyTorch does)
  float temperature = 0.07f;    // T
  int bn_splits = 1;            // split-BN groups per rank (SPEC 4); 1 = plain BN
  bool shuffle_bn = true;       // shuffle keys across the (global) batch before the key encoder
  bool recompute_bn_relu = false;  // the query encoder rebuilds its inner BN+ReLU outputs in backward (layers.h)
  SgdConfig sgd;
  uint64_t seed = 0;
};

// The shuffle permutation of the global batch at step `step`: drawn on rank 0 from (seed, step) and
// broadcast, so every rank uses rank 0's draw (SPEC 4). `comm.broadcast` takes host memory on every backend.
std::vector<int64_t> draw_shuffle_permutation(uint64_t seed, int64_t step, int64_t global_batch, Communicator& comm);
// The inverse permutation (inv[perm[j]] = j), checking that `perm` is one.
std::vector<int64_t> inverse_permutation(const std::vector<int64_t>& perm);

// The phases of one step, in order, for the time breakdown of `moco bench`.
enum Phase { kQueryForward, kMomentumUpdate, kKeyForward, kLogitsLoss, kBackward, kAllReduce, kSgd, kEnqueue, kPhases };
const char* phase_name(int phase);

struct StepStats {
  float loss = 0;
  float acc1 = 0, acc5 = 0;     // percent, of the (K+1)-way task
  double ms[kPhases] = {};       // wall milliseconds per phase
  int64_t activation_bytes = 0;  // what the query encoder's tape held for the backward, at its largest
  // GPU only: host milliseconds from the step's start until the backward's last launch is issued. Set beside
  // the GPU's own time for the same phases, it says which of the two bounds the step: when the host takes
  // as long as the GPU, the GPU waited for launches.
  double host_issue_ms = 0;
};

class Moco {
 public:
  Moco(const MocoConfig& cfg, Communicator& comm);
  // Query encoder from `seed`, key encoder a copy of it, random normalised queue.
  void init();

  // One step on this rank's N query and N key images (N, 3, H, W); updates everything in place.
  StepStats step(const Tensor& x_q, const Tensor& x_k, float lr);
  // The same with the global shuffle permutation given (W*N entries); the step above draws it on rank 0.
  StepStats step_with_permutation(const Tensor& x_q, const Tensor& x_k, float lr, const std::vector<int64_t>& perm);

  // The pieces of the step, named as in the paper's algorithm.
  void momentum_update_key_encoder();
  std::vector<int64_t> draw_shuffle_permutation(int64_t global_batch);
  Tensor batch_shuffle(const Tensor& x, const std::vector<int64_t>& perm);
  Tensor batch_unshuffle(const Tensor& k, const std::vector<int64_t>& perm);
  void dequeue_and_enqueue(const Tensor& k);

  Encoder& encoder_q() { return encoder_q_; }
  Encoder& encoder_k() { return encoder_k_; }
  KeyQueue& queue() { return queue_; }
  Sgd& optimizer() { return sgd_; }
  const MocoConfig& config() const { return cfg_; }
  int64_t steps_done() const { return steps_done_; }
  void set_steps_done(int64_t s) { steps_done_ = s; }

 private:
  MocoConfig cfg_;
  Communicator& comm_;
  Encoder encoder_q_, encoder_k_;
  KeyQueue queue_;
  Sgd sgd_;
  int64_t steps_done_ = 0;
};

}  // namespace moco
