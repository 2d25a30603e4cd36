// A MoCo model small enough for unit tests (ResNet-18, small stem, width 2, fc head), and smooth synthetic
// images for it; a well-conditioned one for the GPU tests; a data set of colour noise and one of dark and
// bright images. Shared by the cpu, gpu and dist tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "moco/augment.h"
#include "moco/data.h"
#include "moco/lincls.h"
#include "moco/loader.h"
#include "moco/moco.h"
#include "moco/registry.h"
#include "moco/rng.h"

namespace moco::test {

inline MocoConfig tiny_moco(int out_dim, int64_t queue_size) {
  MocoConfig c;
  c.encoder.depth = 18;
  c.encoder.width = 2;
  c.encoder.small_stem = true;
  c.encoder.head = Head::Linear;
  c.encoder.out_dim = out_dim;
  c.queue_size = queue_size;
  return c;
}

// (N, 3, 8, 8) images, pixel i = sin(freq * i + phase): deterministic, distinct per phase.
inline Tensor wave_images(int64_t n, float freq, float phase) {
  Tensor x = Tensor::empty({n, 3, 8, 8}, DType::F32);  // (N, 3, 8, 8)
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(freq * (float)i + phase);
  return x;
}

// ResNet-18 with the small stem, width 8, MLP head, BN groups of 8 at batch 32: at 16 px, and on the batches
// from kClearOfTiesBatch on (below), its fp32 gradient is clear of near-ties, so GPU and CPU agree to rounding
// (tests/gpu/test_gpu_moco_step.cpp).
inline MocoConfig well_conditioned_moco() {
  MocoConfig c;
  c.encoder.depth = 18, c.encoder.width = 8, c.encoder.small_stem = true;
  c.encoder.head = Head::Mlp, c.encoder.out_dim = 32;
  c.queue_size = 512, c.temperature = 0.2f, c.momentum = 0.99f, c.bn_splits = 4, c.seed = 3;
  return c;
}

// (N, 3, S, S) smooth images with per-sample noise, batch `batch`; `view` makes the second augmentation-like
// view.
inline Tensor smooth_noisy_images(int64_t n, int64_t s, uint64_t batch, int view) {
  Tensor x = Tensor::empty({n, 3, s, s}, DType::F32);  // (N, 3, S, S)
  Rng r(99, batch * 2 + (uint64_t)view);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i)
    p[i] = std::sin(0.11f * (float)(i % (3 * s * s)) + (float)(i / (3 * s * s))) + 0.2f * (float)r.normal();
  return x;
}

// The well-conditioned network's first test batch (32 images at 16 px; the next steps take the batches after
// it). A network of ReLUs is never free of near-ties: somewhere a ReLU input or BN-normalised value sits within
// rounding of zero, and which side it falls on decides the gradient of everything below it. Among the hundreds
// of thousands of ReLU inputs of a step some lie that close: on many batches a nudge of the weights by 1e-7 of
// their size (about a float ulp) moves the CPU's own whole gradient by 1e-3 (batch 0: 2.1e-3 at 3e-7). Three
// steps from batch 14 stayed within 1.8e-5 (whole) and 3.8e-5 (per tensor) under 32 random nudges of 3e-7
// each, with the CPU's oneDNN and im2col paths alike (bench/explore/near_tie_margin.cpp;
// bench/results/2026-11-27-near-tie-margins.md): that is the margin the tight GPU tests stand on.
// MocoStep.WellConditionedBatchesStayClearOfNearTies checks it wherever the tests run.
constexpr uint64_t kClearOfTiesBatch = 14;

// Multiplies every query-encoder weight by (1 + eps * normal), computed in double (a float factor would round
// nudges below an ulp to nothing), with normals from Rng(seed, stream).
inline void nudge_query_weights(Moco& m, double eps, uint64_t seed, uint64_t stream) {
  Rng r(seed, stream);
  for (float& w : m.encoder_q().params()) w = (float)(w * (1.0 + eps * r.normal()));
}

// sqrt(sum (a - b)^2 / sum a^2) over n elements, as the GPU step tests measure gradients (all-zero a: the plain
// L2 distance).
inline double relative_l2(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) num += (double)(a[i] - b[i]) * (a[i] - b[i]), den += (double)a[i] * a[i];
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
// The same over two whole buffers of one size.
inline double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? relative_l2(a.data(), b.data(), (int64_t)a.size()) : INFINITY;
}

// Copies the whole state of one CPU MoCo into another of the same configuration: both encoders' parameters,
// BN statistics and counters, the SGD momentum, the queue and its pointer, and the step count.
inline void copy_moco_state(Moco& from, Moco& to) {
  to.encoder_q().params() = from.encoder_q().params();
  to.encoder_q().stats() = from.encoder_q().stats();
  to.encoder_q().counts() = from.encoder_q().counts();
  to.encoder_k().params() = from.encoder_k().params();
  to.encoder_k().stats() = from.encoder_k().stats();
  to.encoder_k().counts() = from.encoder_k().counts();
  to.optimizer().momentum_buffer() = from.optimizer().momentum_buffer();
  to.queue().keys() = from.queue().keys();
  to.queue().set_ptr(from.queue().ptr());
  to.set_steps_done(from.steps_done());
}

// How far a step's SGD buffer moves under nudged query weights: the largest relative L2 distance from the
// unnudged one, whole and of any one Param tensor (the GPU step tests bound both).
struct NudgeSpread {
  double whole = 0, tensor = 0;
  void widen(Moco& want, Moco& got) {
    const std::vector<float>& a = want.optimizer().momentum_buffer();
    const std::vector<float>& b = got.optimizer().momentum_buffer();
    whole = std::max(whole, relative_l2(a.data(), b.data(), (int64_t)a.size()));
    for (const RegistryEntry& e : want.encoder_q().registry().entries())
      if (e.slot == Slot::Param)
        tensor = std::max(tensor, relative_l2(a.data() + e.offset, b.data() + e.offset, e.numel()));
  }
};

// One step on (xq, xk) from `from`'s state, unnudged and then `nudges` times with the query weights nudged by
// eps (nudge_query_weights, Rng(seed, nudge)), on copies: `from` is left as it was.
inline NudgeSpread nudged_step_spread(Moco& from, const Tensor& xq, const Tensor& xk, double eps, uint64_t seed,
                                      int nudges) {
  SingleCommunicator comm;
  Moco reference(from.config(), comm), nudged(from.config(), comm);
  reference.init();
  nudged.init();
  copy_moco_state(from, reference);
  reference.step(xq, xk, 0.03f);
  NudgeSpread spread;
  for (int t = 0; t < nudges; ++t) {
    copy_moco_state(from, nudged);
    nudge_query_weights(nudged, eps, seed, (uint64_t)t);
    nudged.step(xq, xk, 0.03f);
    spread.widen(reference, nudged);
  }
  return spread;
}

// View v of a loader batch of 8-bit crops as the CPU step takes it: each crop through the CPU twin of the device
// stages (apply_view_stages_u8), then ToTensor + Normalize's (u / 255 - mean) / std in double. (N, 3, S, S).
inline Tensor cpu_staged_views(const Batch& b, int v, const AugmentRecipe& rec) {
  const int64_t n = b.views[(size_t)v].size(0), s = rec.size, plane = s * s;
  const double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};
  Tensor out = Tensor::empty({n, 3, s, s}, DType::F32);  // (N, 3, S, S)
  std::vector<uint8_t> staged((size_t)(plane * 3));      // (S, S, 3)
  for (int64_t i = 0; i < n; ++i) {
    apply_view_stages_u8(rec, b.params[(size_t)v][(size_t)i], b.views[(size_t)v].data<uint8_t>() + i * plane * 3,
                         staged.data());
    for (int64_t p = 0; p < plane; ++p)
      for (int c = 0; c < 3; ++c)
        out.data<float>()[(i * 3 + c) * plane + p] =
            (float)((staged[(size_t)(p * 3 + c)] / 255.0 - mean[c]) / stdev[c]);
  }
  return out;
}


// n images of h x w colour noise, image i keyed by (seed, i), one class: views whose channels and positions
// all differ, so layout mistakes show.
class NoiseDataset : public Dataset {
 public:
  NoiseDataset(int64_t n, int h, int w, uint64_t seed) : n_(n), h_(h), w_(w), seed_(seed) {}
  int64_t size() const override { return n_; }
  int num_classes() const override { return 1; }
  int label(int64_t) const override { return 0; }
  bool load(int64_t i, Image& out, std::string*) const override {
    out.h = h_;
    out.w = w_;
    out.pixels.resize((size_t)h_ * w_ * 3);
    Rng r(seed_, (uint64_t)i);
    for (auto& p : out.pixels) p = (uint8_t)r.below(256);
    return true;
  }
  std::string name() const override { return "noise"; }
  std::string source(int64_t i) const override { return "noise[" + std::to_string(i) + "]"; }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  int64_t n_;
  int h_, w_;
  uint64_t seed_;
  std::vector<std::string> names_ = {"a"};
};

// A task a frozen random backbone can solve, for the linear probe: 8 x 8 images, dark ones (class 0) and
// bright ones (class 1), with noise keyed by (seed, i).
class DarkBright : public Dataset {
 public:
  DarkBright(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  int64_t size() const override { return n_; }
  int num_classes() const override { return 2; }
  int label(int64_t i) const override { return (int)(i % 2); }
  bool load(int64_t i, Image& out, std::string*) const override {
    Rng rng(seed_, (uint64_t)i);
    out.h = out.w = 8;
    out.pixels.resize(8 * 8 * 3);  // (8, 8, 3)
    for (auto& p : out.pixels) p = (uint8_t)((i % 2 ? 150 : 20) + rng.below(80));
    return true;
  }
  std::string name() const override { return "dark-bright"; }
  std::string source(int64_t i) const override { return "dark-bright[" + std::to_string(i) + "]"; }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  int64_t n_;
  uint64_t seed_;
  std::vector<std::string> names_ = {"dark", "bright"};
};

// The probe's small backbone: ResNet-18, small stem, width 2, initialised with seed 3.
inline ResNetConfig probe_backbone() {
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.width = 2;
  cfg.small_stem = true;
  cfg.head = Head::Linear;
  cfg.out_dim = 4;
  return cfg;
}

// The probe's protocol at the DarkBright scale: lr 1, batch 16, 8 px, `epochs` with lr x0.1 at `drop_at`.
inline LinclsOptions probe_options(int epochs, int64_t drop_at) {
  LinclsOptions o;
  o.epochs = epochs;
  o.lr = 1.0;
  o.schedule = {drop_at};
  o.batch_size = 16;
  o.image_size = 8;
  return o;
}

}  // namespace moco::test
