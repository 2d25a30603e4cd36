// Loader: turns a Dataset into batches of augmented views, on worker threads, ahead of the trainer.
//
// Order: one permutation of the whole dataset per epoch, keyed by (seed, epoch), so every rank draws the same
// permutation without talking; a step takes the next W*N indices of it and rank r keeps rows [r*N, (r+1)*N).
// With drop_last the epoch has floor(size / (W*N)) steps. Every view is a pure function of (seed, epoch,
// sample, view) (image.h), so a batch depends only on its position (epoch, step): a resumed run sees exactly
// the batches an uninterrupted one would.
//
// An image that cannot be decoded is skipped: the row is filled from the next index of the dataset that
// decodes (deterministic, so resume stays exact), and the file is counted and reported once (DecodeFailures).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "moco/augment.h"
#include "moco/data.h"
#include "moco/tensor.h"

namespace moco {

struct LoaderConfig {
  int64_t batch = 256;    // N, images per rank and step
  int rank = 0, world = 1;
  int workers = 2;        // threads building batches, a few rows of a batch at a time
  int prefetch = 2;       // batches built ahead of the consumer
  int views = 2;          // 2 for MoCo (query, key), 1 for evaluation
  bool shuffle = true;    // a permutation per epoch; false keeps dataset order (evaluation)
  bool drop_last = true;  // false: the last, smaller batch is kept (evaluation)
  uint64_t seed = 0;
  std::vector<int64_t> subset;  // when non-empty, the dataset indices to use (in this order before shuffling)
  std::ostream* failure_log = nullptr;  // where each undecodable file is reported once; null: count only
  // Makes each view tensor (called from worker threads); empty: host memory recycled by the loader
  // (RecyclingPool::host). GPU training passes page-locked memory here (DeviceStep::view_allocator) so that
  // a batch crosses to the device by DMA.
  std::function<Tensor(const Shape&, DType)> view_allocator;
  // The form of each view: F32, normalised (3, S, S) (the CPU step's input); or U8, the 8-bit (S, S, 3) image
  // before normalisation (augment_view_u8; the GPU features normalise it on the device).
  DType view_dtype = DType::F32;
  // GPU training: the host makes only each view's crop, resized and rounded to 8 bits
  // (apply_view_geometry_u8), and hands the decisions of the stages after it in Batch::params, for the
  // device to apply (cuda::GpuViewStages). Needs view_dtype U8.
  bool stages_on_device = false;
};

struct Batch {
  int64_t epoch = 0, step = 0;    // position of this batch
  int64_t first = 0;              // position in the epoch's order of row 0
  std::vector<Tensor> views;      // `views` tensors, each (N, 3, S, S) F32 or (N, S, S, 3) U8 (view_dtype)
  std::vector<int> labels;        // (N)
  std::vector<int64_t> indices;   // (N) dataset index of each row
  // With LoaderConfig::stages_on_device: params[v][i] are the decisions of view v of row i, whose crop alone
  // views[v] holds. Empty otherwise.
  std::vector<std::vector<ViewParams>> params;
};

class Loader {
 public:
  Loader(const Dataset& data, const AugmentRecipe& recipe, const LoaderConfig& cfg);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t steps_per_epoch() const;
  int64_t samples() const { return (int64_t)order_base_.size(); }
  // Starts producing the batches of `epoch` from step `first_step` on (mid-epoch resume).
  void start_epoch(int64_t epoch, int64_t first_step = 0);
  // The next batch of the epoch, in order; false when the epoch is done. Rethrows a worker's error.
  bool next(Batch& out);
  // A copy of the batch next() will hand out, if the workers have finished it already: its tensors share
  // memory with it. False, without waiting, when it is not built yet or the epoch is done. GPU training uses it
  // to start copying that batch to the device while the current step runs.
  bool peek(Batch& out) const;
  int64_t skipped() const { return failures_.distinct(); }  // files that failed to decode so far
  const DecodeFailures& failures() const { return failures_; }

 private:
  void stop_workers();
  void worker_loop();
  void start_batch(int64_t step, Batch& b);          // position and (uninitialised) views of a batch
  void build_rows(Batch& b, int64_t r0, int64_t r1);  // decodes and augments rows [r0, r1)
  int64_t load_or_substitute(int64_t index, Image& img);

  const Dataset& data_;
  AugmentRecipe recipe_;
  LoaderConfig cfg_;
  std::vector<int64_t> order_base_;  // (samples) indices before the epoch's permutation
  std::vector<int64_t> order_;       // (samples) this epoch's order

  int64_t epoch_ = 0, end_step_ = 0;
  // Workers share the batches being built: each takes the next kRowsPerTask rows of the oldest one, so every
  // worker helps however few batches may be ahead of the consumer (prefetch), and host memory stays at
  // about (1 + prefetch) batches whatever the number of workers.
  static constexpr int64_t kRowsPerTask = 4;
  struct InFlight {
    Batch batch;
    int64_t rows_left = 0;  // rows handed out but not yet built, plus rows not yet handed out
  };
  int64_t next_to_build_ = 0, next_to_take_ = 0;
  int64_t next_row_ = 0;                  // the next row of step next_to_build_ to hand out
  std::map<int64_t, InFlight> building_;  // steps with rows still being built
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  bool stopping_ = false;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  DecodeFailures failures_;
};

}  // namespace moco
