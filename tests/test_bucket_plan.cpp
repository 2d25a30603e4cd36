// BucketPlan against a brute-force oracle: a per-element "final" bitmap, where a bucket is complete when every
// one of its elements is set. Random out-of-order, overlapping marks; each bucket launched exactly once; every
// bucket launched once the whole buffer is marked; bad ranges rejected with a message naming them.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "moco/bucket_plan.h"
#include "moco/error.h"
#include "moco/rng.h"

using namespace moco;

TEST(BucketPlan, BucketsAreNumberedFromTheEnd) {
  BucketPlan plan(10, 4);  // [6, 10), [2, 6), [0, 2)
  ASSERT_EQ(plan.num_buckets(), 3);
  EXPECT_EQ(plan.bucket(0).begin, 6);
  EXPECT_EQ(plan.bucket(0).end, 10);
  EXPECT_EQ(plan.bucket(1).begin, 2);
  EXPECT_EQ(plan.bucket(1).end, 6);
  EXPECT_EQ(plan.bucket(2).begin, 0);
  EXPECT_EQ(plan.bucket(2).end, 2);
  EXPECT_EQ(BucketPlan(8, 4).num_buckets(), 2);  // exact multiple: no empty bucket
  EXPECT_EQ(BucketPlan(3, 100).num_buckets(), 1);
}

TEST(BucketPlan, ReverseMarksLaunchEachBucketAsSoonAsItIsFull) {
  BucketPlan plan(10, 4);
  EXPECT_EQ(plan.mark_ready(8, 10), std::vector<int>{});
  EXPECT_EQ(plan.mark_ready(5, 8), std::vector<int>{0});  // [6, 10) now final
  EXPECT_EQ(plan.mark_ready(1, 5), std::vector<int>{1});  // [2, 6)
  EXPECT_FALSE(plan.all_launched());
  EXPECT_EQ(plan.mark_ready(0, 1), std::vector<int>{2});
  EXPECT_TRUE(plan.all_launched());
  EXPECT_EQ(plan.take_remaining(), std::vector<int>{});
}

TEST(BucketPlan, OneMarkCanCompleteSeveralBucketsInIncreasingOrder) {
  BucketPlan plan(10, 4);
  EXPECT_EQ(plan.mark_ready(0, 10), (std::vector<int>{0, 1, 2}));
}

TEST(BucketPlan, TakeRemainingLaunchesTheRestOnce) {
  BucketPlan plan(10, 4);
  EXPECT_EQ(plan.mark_ready(6, 10), std::vector<int>{0});
  EXPECT_EQ(plan.take_remaining(), (std::vector<int>{1, 2}));
  EXPECT_TRUE(plan.all_launched());
  EXPECT_EQ(plan.take_remaining(), std::vector<int>{});
  EXPECT_EQ(plan.mark_ready(0, 10), std::vector<int>{});  // a mark never relaunches a bucket
  plan.reset();
  EXPECT_EQ(plan.launched_count(), 0);
  EXPECT_EQ(plan.mark_ready(0, 10), (std::vector<int>{0, 1, 2}));  // the next step starts afresh
}

// Random marks of random overlapping ranges in random order, against the bitmap oracle.
TEST(BucketPlan, RandomOverlappingMarksMatchTheBitmapOracle) {
  Rng rng(7, 0);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n = 1 + (int64_t)(rng.uniform() * 300);
    const int64_t b = 1 + (int64_t)(rng.uniform() * 40);
    BucketPlan plan(n, b);
    std::vector<bool> final_elem((size_t)n, false);
    std::vector<int> times_launched((size_t)plan.num_buckets(), 0);
    const int marks = (int)(rng.uniform() * 30);
    for (int m = 0; m < marks; ++m) {
      int64_t x = (int64_t)(rng.uniform() * n), y = (int64_t)(rng.uniform() * n);
      if (x > y) std::swap(x, y);
      ++y;  // [x, y) non-empty
      for (int64_t i = x; i < y; ++i) final_elem[(size_t)i] = true;
      for (int k : plan.mark_ready(x, y)) ++times_launched[(size_t)k];
      for (int k = 0; k < plan.num_buckets(); ++k) {
        bool full = true;  // the oracle: every element of bucket k final
        for (int64_t i = std::max<int64_t>(0, n - (k + 1) * b); i < n - k * b; ++i) full = full && final_elem[(size_t)i];
        ASSERT_EQ(times_launched[(size_t)k], full ? 1 : 0)
            << "trial " << trial << " n=" << n << " b=" << b << " bucket " << k << " after mark [" << x << ", " << y
            << ")";
      }
    }
    for (int k : plan.take_remaining()) ++times_launched[(size_t)k];
    for (int k = 0; k < plan.num_buckets(); ++k) ASSERT_EQ(times_launched[(size_t)k], 1) << "bucket " << k;
  }
}

TEST(BucketPlan, AllLaunchedAfterTheLastMarkInAnyOrder) {
  BucketPlan plan(1000, 64);
  std::vector<int64_t> cuts{0, 13, 100, 101, 333, 500, 640, 999, 1000};  // pieces marked middle-out
  for (size_t i : {4, 0, 7, 2, 6, 1, 5, 3}) {
    EXPECT_FALSE(plan.all_launched());
    plan.mark_ready(cuts[i], cuts[i + 1]);
  }
  EXPECT_TRUE(plan.all_launched());
  EXPECT_EQ(plan.launched_count(), plan.num_buckets());
}

TEST(BucketPlan, BadRangesAndSizesAreRejected) {
  BucketPlan plan(10, 4);
  for (auto r : std::vector<std::pair<int64_t, int64_t>>{{-1, 3}, {3, 11}, {5, 5}, {6, 2}}) {
    try {
      plan.mark_ready(r.first, r.second);
      FAIL() << "mark_ready(" << r.first << ", " << r.second << ") was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("[" + std::to_string(r.first) + ", " + std::to_string(r.second) + ")"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(plan.launched_count(), 0);  // rejected marks changed nothing
  EXPECT_THROW(BucketPlan(0, 4), Error);
  EXPECT_THROW(BucketPlan(10, 0), Error);
  EXPECT_THROW(plan.bucket(3), Error);
}
