// The loader: which images a batch holds (permutation per epoch, drop-last, per-rank shards, mid-epoch
// start), that the batches do not depend on threads, and how undecodable images are skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>

#include "moco/loader.h"
#include "moco/recycling_pool.h"
#include "moco/rng.h"
#include "tiny_moco.h"

using namespace moco;

namespace {
// Image i is a flat 6x5 picture of grey level i; images listed in `broken` fail to decode.
class CountingDataset : public Dataset {
 public:
  CountingDataset(int64_t n, std::set<int64_t> broken) : n_(n), broken_(std::move(broken)) {}
  int64_t size() const override { return n_; }
  int num_classes() const override { return 3; }
  int label(int64_t i) const override { return (int)(i % 3); }
  bool load(int64_t i, Image& out, std::string* why) const override {
    if (broken_.count(i)) {
      if (why) *why = "broken on purpose";
      return false;
    }
    out.h = 6;
    out.w = 5;
    out.pixels.resize(6 * 5 * 3);  // (6, 5, 3): a gradient that image i shifts, so crops of it differ in bytes
    for (size_t k = 0; k < out.pixels.size(); ++k) out.pixels[k] = (uint8_t)(i + 9 * k);
    return true;
  }
  std::string name() const override { return "counting"; }
  std::string source(int64_t i) const override { return "counting[" + std::to_string(i) + "]"; }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  int64_t n_;
  std::set<int64_t> broken_;
  std::vector<std::string> names_ = {"a", "b", "c"};
};

std::vector<Batch> epoch_batches(const Dataset& d, LoaderConfig c, int64_t epoch, int64_t first = 0) {
  Loader l(d, recipe_from_name("small", 8), c);
  l.start_epoch(epoch, first);
  std::vector<Batch> out;
  for (Batch b; l.next(b);) out.push_back(b);
  return out;
}

bool same_pixels(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>());
}
}  // namespace

TEST(Loader, EpochIsAPermutationWithDropLast) {
  CountingDataset d(37, {});
  LoaderConfig c;
  c.batch = 5;
  c.seed = 3;
  const auto e0 = epoch_batches(d, c, 0), e1 = epoch_batches(d, c, 1);
  ASSERT_EQ(e0.size(), 7u);  // floor(37 / 5)
  std::set<int64_t> seen;
  for (const Batch& b : e0) {
    ASSERT_EQ(b.views.size(), 2u);
    EXPECT_EQ(b.views[0].shape(), (Shape{5, 3, 8, 8}));
    for (size_t r = 0; r < b.indices.size(); ++r) {
      EXPECT_TRUE(seen.insert(b.indices[r]).second) << "index " << b.indices[r] << " twice in one epoch";
      EXPECT_EQ(b.labels[r], b.indices[r] % 3);
    }
  }
  EXPECT_EQ(seen.size(), 35u);
  EXPECT_NE(e0[0].indices, e1[0].indices);  // a new permutation each epoch
  EXPECT_FALSE(same_pixels(e0[0].views[0], e0[0].views[1]));  // two independent views
}

TEST(Loader, BatchesDependOnlyOnTheirPosition) {
  CountingDataset d(40, {});
  LoaderConfig one, four;
  one.batch = four.batch = 4;
  one.workers = 1;
  four.workers = 4;
  four.prefetch = 3;
  const auto a = epoch_batches(d, one, 2), b = epoch_batches(d, four, 2), tail = epoch_batches(d, four, 2, 6);
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(tail.size(), 4u);  // started mid-epoch at step 6
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_EQ(a[s].indices, b[s].indices);
    EXPECT_TRUE(same_pixels(a[s].views[0], b[s].views[0]) && same_pixels(a[s].views[1], b[s].views[1])) << s;
  }
  for (size_t s = 0; s < tail.size(); ++s) {
    EXPECT_EQ(tail[s].step, (int64_t)s + 6);
    EXPECT_EQ(tail[s].indices, a[s + 6].indices);
    EXPECT_TRUE(same_pixels(tail[s].views[1], a[s + 6].views[1]));
  }
}

// peek() shows the batch next() hands out next, sharing its memory, without taking it and without waiting:
// the GPU step starts that batch's copy while it computes the current one.
TEST(Loader, PeekShowsTheNextBatchWithoutTakingIt) {
  CountingDataset d(30, {});
  LoaderConfig c;
  c.batch = 4;
  c.seed = 7;
  const auto reference = epoch_batches(d, c, 1);  // 7 steps
  Loader l(d, recipe_from_name("small", 8), c);
  Batch seen;
  EXPECT_FALSE(l.peek(seen)) << "no epoch started";
  l.start_epoch(1);
  int64_t peeked = 0;
  const void* peeked_memory = nullptr;  // the view memory of the last batch peek() showed
  for (Batch b; l.next(b);) {
    EXPECT_TRUE(same_pixels(b.views[0], reference[(size_t)b.step].views[0]));
    if (peeked_memory) {
      EXPECT_EQ(b.views[0].raw(), peeked_memory) << "next() handed another batch than peek()";
    }
    const bool last = b.step + 1 == (int64_t)reference.size();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool ready = false;  // the workers build it in the background; peek itself never waits
    while (!(ready = l.peek(seen)) && !last && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (last) {
      EXPECT_FALSE(ready) << "the epoch is done after step " << b.step;
      break;
    }
    ASSERT_TRUE(ready) << "batch " << b.step + 1 << " was not built within 10 s";
    ++peeked;
    EXPECT_EQ(seen.step, b.step + 1);
    EXPECT_EQ(seen.indices, reference[(size_t)b.step + 1].indices);
    Batch again;
    ASSERT_TRUE(l.peek(again)) << "peek() took the batch";
    EXPECT_EQ(again.step, seen.step);
    peeked_memory = seen.views[0].raw();
  }
  EXPECT_EQ(peeked, (int64_t)reference.size() - 1);
}

// A view allocator (GPU training passes page-locked memory) changes where the views live, not what they hold:
// the batches equal those in ordinary memory, every view comes from the allocator, and the recycling pool
// behind it stays bounded by the batches alive at once.
TEST(Loader, ViewAllocatorRecyclesBlocksAndChangesNoPixel) {
  CountingDataset d(60, {});
  LoaderConfig plain;
  plain.batch = 4;
  plain.workers = 3;
  plain.prefetch = 2;
  auto allocated = std::make_shared<std::atomic<int>>(0);
  auto taken = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<RecyclingPool> pool = RecyclingPool::create(
      [allocated](size_t bytes) {
        ++*allocated;
        return std::malloc(bytes);
      },
      [](void* p) { std::free(p); }, "test batches");
  LoaderConfig pooled = plain;
  pooled.view_allocator = [pool, taken](const Shape& shape, DType dtype) {
    ++*taken;
    return pool->take(shape, dtype);
  };
  const auto want = epoch_batches(d, plain, 1);
  Loader l(d, recipe_from_name("small", 8), pooled);
  l.start_epoch(1);
  size_t s = 0;
  for (Batch b; l.next(b); ++s) {  // each batch is dropped (its blocks handed back) when the next one comes
    ASSERT_LT(s, want.size());
    EXPECT_EQ(b.indices, want[s].indices);
    EXPECT_TRUE(same_pixels(b.views[0], want[s].views[0]) && same_pixels(b.views[1], want[s].views[1])) << s;
  }
  EXPECT_EQ(s, want.size());
  EXPECT_EQ(taken->load(), 2 * (int)want.size());
  // at most: the batch held here, the ones being built or ready (prefetch), one being handed over
  EXPECT_LE(allocated->load(), 2 * (1 + plain.prefetch + 1));
  EXPECT_EQ((size_t)allocated->load(), pool->blocks());
}

// Every worker helps even when only one batch may be built ahead: workers take a few rows of a batch at a
// time, so with prefetch 1 and 4 workers, loads overlap. (When each worker built whole batches, prefetch
// capped the workers in use, and `--workers 32` ran two.) Each load sleeps, so the overlap does not depend on
// how fast this machine is.
TEST(Loader, AllWorkersShareOneBatch) {
  class SlowDataset : public CountingDataset {
   public:
    SlowDataset() : CountingDataset(64, {}) {}
    bool load(int64_t i, Image& out, std::string* why) const override {
      const int now = ++active_;
      int seen = most_.load();
      while (now > seen && !most_.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      --active_;
      return CountingDataset::load(i, out, why);
    }
    int most() const { return most_.load(); }

   private:
    mutable std::atomic<int> active_{0}, most_{0};
  };
  SlowDataset d;
  LoaderConfig c;
  c.batch = 16;
  c.workers = 4;
  c.prefetch = 1;
  const auto got = epoch_batches(d, c, 0);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_GE(d.most(), 3) << "loads never overlapped: the workers did not share the batch";
  LoaderConfig one = c;
  one.workers = 1;
  const auto want = epoch_batches(d, one, 0);
  for (size_t s = 0; s < got.size(); ++s) {
    EXPECT_EQ(got[s].indices, want[s].indices);
    EXPECT_TRUE(same_pixels(got[s].views[0], want[s].views[0]) && same_pixels(got[s].views[1], want[s].views[1]));
  }
}

// W ranks with N images each see exactly the rows of one process's W*N global batch, rank r the r-th slice.
TEST(Loader, RanksShareTheGlobalBatchInOrder) {
  CountingDataset d(50, {});
  LoaderConfig global;
  global.batch = 12;
  const auto whole = epoch_batches(d, global, 1);
  for (int r = 0; r < 3; ++r) {
    LoaderConfig c;
    c.batch = 4;
    c.world = 3;
    c.rank = r;
    const auto shard = epoch_batches(d, c, 1);
    ASSERT_EQ(shard.size(), whole.size());
    for (size_t s = 0; s < shard.size(); ++s)
      EXPECT_EQ(shard[s].indices, std::vector<int64_t>(whole[s].indices.begin() + 4 * r, whole[s].indices.begin() + 4 * r + 4));
  }
}

TEST(Loader, UndecodableImagesAreSkippedCountedAndReportedOnce) {
  CountingDataset d(20, {4, 5, 13});
  LoaderConfig c;
  c.batch = 20;
  c.shuffle = false;
  std::ostringstream log;
  c.failure_log = &log;
  Loader l(d, recipe_from_name("eval", 8), c);
  for (int epoch = 0; epoch < 2; ++epoch) {
    l.start_epoch(epoch);
    Batch b;
    ASSERT_TRUE(l.next(b));
    // rows 4 and 5 are filled from image 6, the next one that decodes; row 13 from 14
    EXPECT_EQ(b.indices[4], 6);
    EXPECT_EQ(b.indices[5], 6);
    EXPECT_EQ(b.indices[13], 14);
    EXPECT_EQ(b.indices[3], 3);
  }
  EXPECT_EQ(l.skipped(), 3);
  // every failed load is counted: per epoch row 4 fails on 4 and 5, row 5 on 5, row 13 on 13 -> 4, twice...
  EXPECT_EQ(l.failures().count(), 8);
  for (const char* src : {"counting[4]: ", "counting[5]: ", "counting[13]: "}) {  // ...each reported once
    const std::string text = log.str();
    const size_t at = text.find(src);
    EXPECT_NE(at, std::string::npos) << src;
    EXPECT_EQ(text.find(src, at + 1), std::string::npos) << src;
  }
  ASSERT_EQ(l.failures().entries().size(), 3u);
  EXPECT_EQ(l.failures().entries()[0], std::make_pair(std::string("counting[13]"), std::string("broken on purpose")));
}

// Rows 4 and 5 hold image 6, as row 6 does: each row's views still come from its own random stream, so the
// three rows are three different pairs of views of one image.
TEST(Loader, ASubstitutedRowDrawsItsOwnViews) {
  CountingDataset d(20, {4, 5});
  LoaderConfig c;
  c.batch = 20;
  c.shuffle = false;
  c.views = 2;
  std::ostringstream log;
  c.failure_log = &log;
  Loader l(d, recipe_from_name("small", 8), c);
  l.start_epoch(0);
  Batch b;
  ASSERT_TRUE(l.next(b));
  ASSERT_EQ(b.indices[4], 6);
  ASSERT_EQ(b.indices[5], 6);
  ASSERT_EQ(b.indices[6], 6);
  const int64_t per_view = 3 * 8 * 8;
  auto row = [&](int v, int64_t r) {
    const float* p = b.views[(size_t)v].data<float>() + r * per_view;
    return std::vector<float>(p, p + per_view);
  };
  for (int v = 0; v < 2; ++v) {
    EXPECT_NE(row(v, 4), row(v, 6)) << "view " << v;
    EXPECT_NE(row(v, 5), row(v, 6)) << "view " << v;
    EXPECT_NE(row(v, 4), row(v, 5)) << "view " << v;
  }
}

TEST(Loader, BadConfigurationsAreRefusedWithTheValues) {
  CountingDataset d(10, {});
  LoaderConfig c;
  c.batch = 11;
  try {
    Loader l(d, recipe_from_name("eval", 8), c);
    FAIL() << "a batch larger than the dataset must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("11"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("10 images"), std::string::npos) << e.what();
  }
  CountingDataset none(3, {0, 1, 2});
  LoaderConfig small;
  small.batch = 2;
  Loader l(none, recipe_from_name("eval", 8), small);
  l.start_epoch(0);
  Batch b;
  EXPECT_THROW(l.next(b), Error);  // no image decodes at all: the worker's error reaches the consumer
}


// view_dtype U8 (GPU training): each view is (N, S, S, 3) uint8, the same images as the float batches at the
// same positions: the float view is each byte through ToTensor and Normalize (u / 255 - mean) / std in
// float32, with SPEC's constants, exactly.
TEST(Loader, EightBitViewsHoldTheFloatViewsImages) {
  test::NoiseDataset d(24, 10, 12, 5);
  LoaderConfig f32;
  f32.batch = 5;
  f32.workers = 2;
  LoaderConfig u8 = f32;
  u8.view_dtype = DType::U8;
  const auto want = epoch_batches(d, f32, 2);
  const auto got = epoch_batches(d, u8, 2);
  ASSERT_EQ(got.size(), want.size());
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  const int64_t s = 8, plane = s * s;
  for (size_t b = 0; b < got.size(); ++b) {
    EXPECT_EQ(got[b].indices, want[b].indices);
    for (int v = 0; v < 2; ++v) {
      const Tensor& g = got[b].views[(size_t)v];
      const Tensor& w = want[b].views[(size_t)v];
      ASSERT_EQ(g.dtype(), DType::U8);
      ASSERT_EQ(g.shape(), (Shape{5, s, s, 3}));
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t p = 0; p < plane; ++p)
          for (int c = 0; c < 3; ++c) {
            const float u = (float)g.data<uint8_t>()[(i * plane + p) * 3 + c];
            ASSERT_EQ(w.data<float>()[(i * 3 + c) * plane + p], (u / 255.f - mean[c]) / sd[c])
                << "batch " << b << " view " << v << " row " << i << " pixel " << p << " channel " << c;
          }
    }
  }
  LoaderConfig bad = f32;
  bad.view_dtype = DType::BF16;
  try {
    Loader l(d, recipe_from_name("small", 8), bad);
    FAIL() << "bf16 views must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

// stages_on_device (GPU training): each view holds only its crop, resized to 8 bits, and the batch carries the
// decisions augment_view would have drawn for it. The crop plus the stages on the host (apply_view_stages_u8,
// the device's twin) is the 8-bit view of the one-piece pipeline, byte for byte: both hold the crop as PIL
// does, in bytes. (augment_view_u8 is that same composition, so this checks the loader's plumbing: the crops it
// holds and the decisions it carries. The stages themselves are checked against Pillow and torchvision in
// test_augment.cpp.)
TEST(Loader, StagesOnDeviceHandCropsAndTheirDecisions) {
  test::NoiseDataset d(12, 10, 12, 5);
  int64_t blurred = 0;
  LoaderConfig c;
  for (const char* recipe : {"small", "v2"}) {  // v2: the blur's decision and sigma travel too
    SCOPED_TRACE(recipe);
    c.batch = 4;
    c.workers = 2;
    c.view_dtype = DType::U8;
    c.stages_on_device = true;
    const AugmentRecipe rec = recipe_from_name(recipe, 8);
    Loader l(d, rec, c);
    l.start_epoch(3);
    const int64_t per = 8 * 8 * 3;
    Image img;
    for (Batch b; l.next(b);) {
      ASSERT_EQ(b.params.size(), 2u);
      for (int v = 0; v < 2; ++v) {
        ASSERT_EQ(b.params[(size_t)v].size(), 4u);
        for (int64_t i = 0; i < 4; ++i) {
          ASSERT_TRUE(d.load(b.indices[(size_t)i], img, nullptr));
          const ViewParams want = draw_view_params(img, rec, c.seed, 3, (uint64_t)b.indices[(size_t)i], (uint64_t)v);
          const ViewParams& got = b.params[(size_t)v][(size_t)i];
          EXPECT_TRUE(got == want) << "every decision the device applies, view " << v << " row " << i;
          blurred += got.blur;
          std::vector<uint8_t> crop((size_t)per), staged((size_t)per), whole((size_t)per);
          apply_view_geometry_u8(img, rec, got, crop.data());
          const uint8_t* held = b.views[(size_t)v].data<uint8_t>() + i * per;
          ASSERT_TRUE(std::equal(crop.begin(), crop.end(), held)) << "view " << v << " row " << i;
          apply_view_stages_u8(rec, got, crop.data(), staged.data());
          augment_view_u8(img, rec, c.seed, 3, (uint64_t)b.indices[(size_t)i], (uint64_t)v, whole.data());
          EXPECT_EQ(staged, whole) << "view " << v << " row " << i;
        }
      }
    }
  }
  EXPECT_GT(blurred, 0) << "no v2 view was blurred: the blur's decision went untested";
  LoaderConfig bad = c;
  bad.view_dtype = DType::F32;
  EXPECT_THROW(Loader(d, recipe_from_name("small", 8), bad), Error);
}
