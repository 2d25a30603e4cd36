// RecyclingPool: blocks come back when a tensor's last view dies and are reused by exact size, the pool
// outlives its handle while tensors hold blocks, every block is freed exactly once at the end, many threads
// may take and release at once, and a failed allocation says what and how much.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "moco/error.h"
#include "moco/recycling_pool.h"

using namespace moco;

namespace {
struct Counts {
  std::atomic<int> allocated{0}, freed{0};
};

std::shared_ptr<RecyclingPool> counting_pool(std::shared_ptr<Counts> c) {
  return RecyclingPool::create(
      [c](size_t bytes) {
        ++c->allocated;
        return std::malloc(bytes);
      },
      [c](void* p) {
        ++c->freed;
        std::free(p);
      },
      "test blocks");
}
}  // namespace

TEST(RecyclingPool, ReusesBySizeAndFreesOnceWhenTheLastTensorGoes) {
  auto c = std::make_shared<Counts>();
  auto pool = counting_pool(c);
  void* first = nullptr;
  {
    Tensor a = pool->take({2, 3}, DType::F32);
    first = a.raw();
    a.data<float>()[5] = 1.f;
  }
  Tensor again = pool->take({3, 2}, DType::F32);  // same bytes, another shape: the same block
  EXPECT_EQ(again.raw(), first);
  EXPECT_EQ(again.shape(), (Shape{3, 2}));
  Tensor second = pool->take({6}, DType::F32);  // the first is in use: a new block
  EXPECT_NE(second.raw(), first);
  Tensor other = pool->take({7}, DType::F32);  // another size: its own block
  EXPECT_EQ(pool->blocks(), 3u);
  EXPECT_EQ(pool->bytes(), 24u + 24u + 28u);
  EXPECT_EQ(c->allocated.load(), 3);
  pool.reset();  // the tensors keep it alive
  EXPECT_EQ(c->freed.load(), 0);
  again.data<float>()[0] = 2.f;
  again = Tensor();
  second = Tensor();
  EXPECT_EQ(c->freed.load(), 0);
  other = Tensor();  // the last one: the pool goes, freeing every block once
  EXPECT_EQ(c->freed.load(), 3);
}

TEST(RecyclingPool, ThreadsTakeAndReleaseConcurrently) {
  auto c = std::make_shared<Counts>();
  auto pool = counting_pool(c);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        Tensor x = pool->take({64}, DType::F32);
        x.data<float>()[0] = (float)t;  // each block has one user at a time
        EXPECT_EQ(x.data<float>()[0], (float)t);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_LE(c->allocated.load(), 4);  // never more blocks than tensors alive at once
  EXPECT_GE(c->allocated.load(), 1);
}

TEST(RecyclingPool, FailedAllocationNamesThePoolAndTheSize) {
  auto pool = RecyclingPool::create([](size_t) { return nullptr; }, [](void*) {}, "test blocks");
  try {
    pool->take({1000}, DType::F32);
    FAIL() << "a null allocation must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4000 bytes of test blocks"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool->blocks(), 0u);
  EXPECT_EQ(pool->take({0, 3}, DType::F32).numel(), 0);  // empty: nothing to allocate
}
