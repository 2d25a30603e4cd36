// BlockCache over malloc: reuse by size, accounting, and the frozen-after-warm-up error.
#include <gtest/gtest.h>

#include <cstdlib>

#include "moco/block_cache.h"
#include "moco/error.h"

using namespace moco;

namespace {
int g_mallocs = 0, g_frees = 0;
void* counting_malloc(size_t n) { ++g_mallocs; return std::malloc(n); }
void counting_free(void* p) { ++g_frees; std::free(p); }
}  // namespace

TEST(BlockCache, ASecondStepOfTheSameSizesAllocatesNothing) {
  g_mallocs = g_frees = 0;
  {
    BlockCache cache(counting_malloc, counting_free, "test cache");
    auto step = [&] {  // three live blocks, one freed early and its size asked again
      void* a = cache.get(1000);
      void* b = cache.get(4096);
      cache.put(a, 1000);
      void* c = cache.get(700);  // rounds to the same 1024 as `a`: reuses it
      EXPECT_EQ(c, a);
      void* d = cache.get(100000);
      cache.put(b, 4096), cache.put(c, 700), cache.put(d, 100000);
    };
    step();
    EXPECT_EQ(cache.device_allocations(), 3);
    EXPECT_EQ(cache.reserved_bytes(), 1024u + 4096u + BlockCache::rounded(100000));
    EXPECT_EQ(cache.peak_live_bytes(), 1024u + 4096u + BlockCache::rounded(100000));
    EXPECT_EQ(cache.live_bytes(), 0u);
    cache.freeze();
    step();  // frozen: any miss would throw
    EXPECT_EQ(cache.device_allocations(), 3);
    EXPECT_EQ(g_mallocs, 3);
  }
  EXPECT_EQ(g_frees, 3);  // the destructor returns every block
}

TEST(BlockCache, AMissAfterFreezeNamesTheRequest) {
  BlockCache cache(counting_malloc, counting_free, "GPU activations");
  cache.put(cache.get(512), 512);
  cache.freeze();
  void* p = cache.get(512);  // a hit is fine
  try {
    cache.get(513);
    FAIL() << "a miss after freeze() must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GPU activations: a request for 513 bytes"), std::string::npos) << e.what();
  }
  cache.put(p, 512);
}
