#include "moco/loader.h"

#include <algorithm>
#include <numeric>

#include "moco/error.h"
#include "moco/recycling_pool.h"
#include "moco/rng.h"

namespace moco {

Loader::Loader(const Dataset& data, const AugmentRecipe& recipe, const LoaderConfig& cfg)
    : data_(data), recipe_(recipe), cfg_(cfg), failures_(cfg.failure_log) {
  MOCO_CHECK(cfg.batch >= 1, "batch size must be >= 1, got ", cfg.batch);
  MOCO_CHECK(cfg.world >= 1 && cfg.rank >= 0 && cfg.rank < cfg.world, "rank ", cfg.rank, " is outside world size ",
             cfg.world);
  MOCO_CHECK(cfg.workers >= 1, "--workers must be >= 1, got ", cfg.workers);
  MOCO_CHECK(data.size() >= 1, "dataset ", data.name(), " is empty");
  if (cfg.subset.empty()) {
    order_base_.resize((size_t)data.size());
    std::iota(order_base_.begin(), order_base_.end(), 0);
  } else {
    order_base_ = cfg.subset;
    for (int64_t i : order_base_)
      MOCO_CHECK(i >= 0 && i < data.size(), "subset index ", i, " is outside the dataset of ", data.size(), " images");
  }
  const int64_t global = cfg.batch * cfg.world;
  MOCO_CHECK(!cfg.drop_last || samples() >= global, "the global batch of ", global, " images (", cfg.batch, " x ",
             cfg.world, " ranks) is larger than the dataset ", data.name(), " of ", samples(),
             " images; use a smaller --batch-size");
  MOCO_CHECK(cfg.view_dtype == DType::F32 || cfg.view_dtype == DType::U8, "loader views as ",
             dtype_name(cfg.view_dtype), ": expected f32 (normalised) or u8 (8-bit images)");
  MOCO_CHECK(!cfg.stages_on_device || cfg.view_dtype == DType::U8, "loader: the stages run on the device only ",
             "for u8 views, got ", dtype_name(cfg.view_dtype));
  cfg_.prefetch = std::max(cfg.prefetch, 1);
  if (!cfg_.view_allocator) {  // recycled host blocks: a fresh batch would fault in and zero its pages again
    std::shared_ptr<RecyclingPool> pool = RecyclingPool::host();
    cfg_.view_allocator = [pool](const Shape& shape, DType dtype) { return pool->take(shape, dtype); };
  }
}

Loader::~Loader() { stop_workers(); }

int64_t Loader::steps_per_epoch() const {
  const int64_t global = cfg_.batch * cfg_.world;
  return cfg_.drop_last ? samples() / global : (samples() + global - 1) / global;
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  stopping_ = false;
}

void Loader::start_epoch(int64_t epoch, int64_t first_step) {
  stop_workers();
  MOCO_CHECK(first_step >= 0 && first_step <= steps_per_epoch(), "cannot start epoch ", epoch, " at step ",
             first_step, " of ", steps_per_epoch());
  order_ = order_base_;
  if (cfg_.shuffle) {  // Fisher-Yates from a stream keyed by (seed, epoch): the same on every rank
    Rng rng(cfg_.seed, mix_stream(0xE90C, (uint64_t)epoch));
    for (int64_t i = (int64_t)order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below((uint64_t)i + 1)]);
  }
  epoch_ = epoch;
  end_step_ = steps_per_epoch();
  next_to_build_ = next_to_take_ = first_step;
  next_row_ = 0;
  ready_.clear();
  building_.clear();
  error_ = nullptr;
  for (int w = 0; w < cfg_.workers; ++w) threads_.emplace_back([this] { worker_loop(); });
}

void Loader::worker_loop() {
  for (;;) {
    int64_t step = 0, r0 = 0, r1 = 0;
    Batch* b = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // work on at most `prefetch` batches ahead of the consumer; every worker takes rows of the oldest one
      cv_.wait(lock, [&] {
        return stopping_ || error_ || next_to_build_ >= end_step_ || next_to_build_ < next_to_take_ + cfg_.prefetch;
      });
      if (stopping_ || next_to_build_ >= end_step_ || error_) return;
      step = next_to_build_;
      auto it = building_.find(step);
      // The first rows of a new batch: allocate it (its views in LoaderConfig::view_dtype's form). Under the
      // lock, which makes the others wait while a pinned pool grows (cudaHostAlloc): only for the first
      // 1 + prefetch batches.
      if (it == building_.end()) {
        try {
          it = building_.emplace(step, InFlight{}).first;
          start_batch(step, it->second.batch);
        } catch (...) {
          error_ = std::current_exception();
          cv_.notify_all();
          return;
        }
        it->second.rows_left = (int64_t)it->second.batch.indices.size();
      }
      const int64_t n = (int64_t)it->second.batch.indices.size();
      r0 = next_row_;
      r1 = std::min(n, r0 + kRowsPerTask);
      next_row_ = r1;
      if (r1 == n) {  // every row of this batch is handed out: the next worker starts the next batch
        ++next_to_build_;
        next_row_ = 0;
      }
      b = &it->second.batch;  // map nodes stay put until this batch is complete
    }
    try {
      build_rows(*b, r0, r1);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    bool complete = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = building_.find(step);
      it->second.rows_left -= r1 - r0;
      complete = it->second.rows_left == 0;
      if (complete) {
        ready_[step] = std::move(it->second.batch);
        building_.erase(it);
      }
    }
    if (complete) cv_.notify_all();  // a finished chunk changes no one's wait; a finished batch does
  }
}

bool Loader::next(Batch& out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (next_to_take_ >= end_step_) return false;
  cv_.wait(lock, [&] { return error_ || ready_.count(next_to_take_); });
  if (error_) std::rethrow_exception(error_);
  out = std::move(ready_[next_to_take_]);
  ready_.erase(next_to_take_++);
  lock.unlock();
  cv_.notify_all();
  return true;
}

bool Loader::peek(Batch& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (next_to_take_ >= end_step_) return false;
  const auto it = ready_.find(next_to_take_);
  if (it == ready_.end()) return false;
  out = it->second;
  return true;
}

int64_t Loader::load_or_substitute(int64_t index, Image& img) {
  for (int64_t tries = 0; tries < data_.size(); ++tries) {
    const int64_t i = (index + tries) % data_.size();
    if (failures_.load(data_, i, img)) return i;
  }
  fail("no image of ", data_.name(), " could be decoded (", data_.size(), " files tried)");
}

void Loader::start_batch(int64_t step, Batch& b) {
  const int64_t global = cfg_.batch * cfg_.world;
  const int64_t begin = step * global + cfg_.rank * cfg_.batch;
  const int64_t n = std::max<int64_t>(0, std::min<int64_t>(cfg_.batch, samples() - begin));
  const int64_t s = recipe_.size;
  b.epoch = epoch_;
  b.step = step;
  b.first = begin;
  b.views.clear();
  const Shape shape = cfg_.view_dtype == DType::U8 ? Shape{n, s, s, 3} : Shape{n, 3, s, s};
  for (int v = 0; v < cfg_.views; ++v) b.views.push_back(cfg_.view_allocator(shape, cfg_.view_dtype));
  b.labels.resize((size_t)n);
  b.indices.resize((size_t)n);
  b.params.assign(cfg_.stages_on_device ? (size_t)cfg_.views : 0, std::vector<ViewParams>((size_t)n));
}

void Loader::build_rows(Batch& b, int64_t r0, int64_t r1) {
  const int64_t s = recipe_.size;
  Image img;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t own = order_[(size_t)(b.first + r)];  // the row's sample
    const int64_t i = load_or_substitute(own, img);     // the image it holds: its own, or the next that decodes
    b.indices[(size_t)r] = i;
    b.labels[(size_t)r] = data_.label(i);
    // The views are drawn from the row's own stream, so a substitute that also has a row of its own in this
    // epoch does not give both rows the same pair of views.
    const uint64_t stream_sample = (uint64_t)own;
    for (int v = 0; v < cfg_.views; ++v) {
      Tensor& out = b.views[(size_t)v];
      if (cfg_.stages_on_device) {  // the crop here, its decisions for the device
        ViewParams& p = b.params[(size_t)v][(size_t)r];
        p = draw_view_params(img, recipe_, cfg_.seed, (uint64_t)epoch_, stream_sample, (uint64_t)v);
        apply_view_geometry_u8(img, recipe_, p, out.data<uint8_t>() + r * s * s * 3);
      } else if (cfg_.view_dtype == DType::U8)
        augment_view_u8(img, recipe_, cfg_.seed, (uint64_t)epoch_, stream_sample, (uint64_t)v,
                        out.data<uint8_t>() + r * s * s * 3);
      else
        augment_view(img, recipe_, cfg_.seed, (uint64_t)epoch_, stream_sample, (uint64_t)v,
                     out.data<float>() + r * 3 * s * s);
    }
  }
}

}  // namespace moco
