// The emulator's scheduler: blocks in order, and inside a block one ucontext fiber per CUDA thread, switched at
// barriers and warp exchanges (see emu_runtime.h for what is modelled).
#include "emu_runtime.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace cuda_emu {

namespace {

constexpr int kWarp = 32;
constexpr size_t kStackBytes = 256 * 1024;  // kernels keep small arrays on the stack; generous and reused

// Device limits of sm_90 (H100), which the product targets.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridDimX = 2147483647u;
constexpr unsigned kMaxGridDimYZ = 65535;
constexpr size_t kMaxDynamicSmem = 48 * 1024;  // without opting in through cudaFuncSetAttribute

enum class State { Ready, AtBarrier, AtExchange, Done };

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;  // (kStackBytes)
  uint3 tid;
  int warp = 0, lane = 0;
  State state = State::Done;
  uint64_t offer = 0;     // the value offered in the current warp exchange
  unsigned mask = 0;      // that exchange's mask
  int src = 0;            // and the lane it reads
  long exchanges = 0;     // exchanges this thread has entered, to pair them across lanes
};

// What the running host thread is doing inside a launch.
struct Grid {
  dim3 grid, block;
  uint3 block_idx;
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;  // one per thread of the block, linear order x fastest
  Fiber* current = nullptr;
  std::vector<void*> fresh;   // the __shared__ arrays this block has already filled with garbage
  ucontext_t scheduler;
  bool active = false;
};

thread_local Grid g;
thread_local cudaError_t last_error = cudaSuccess;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "cuda_emu: %s (block (%u,%u,%u))\n", what.c_str(), g.block_idx.x, g.block_idx.y,
               g.block_idx.z);
  std::fflush(stderr);
  std::abort();
}

Fiber& current_fiber(const char* what) {
  if (!g.active || !g.current) {
    std::fprintf(stderr, "cuda_emu: %s used outside a kernel\n", what);
    std::abort();
  }
  return *g.current;
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
void yield_to_scheduler(Fiber& f) { swapcontext(&f.ctx, &g.scheduler); }

void fiber_main() {
  Fiber& f = *g.current;
  (*g.body)();
  f.state = State::Done;
  // returning switches to uc_link, the scheduler
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string describe_thread(const Fiber& f) {
  return "thread (" + std::to_string(f.tid.x) + "," + std::to_string(f.tid.y) + "," + std::to_string(f.tid.z) +
         ")";
}

bool config_ok(const LaunchConfig& c) {
  const dim3 b = c.block, gr = c.grid;
  const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || b.z > kMaxBlockDimZ) return false;
  if (gr.x == 0 || gr.y == 0 || gr.z == 0) return false;
  if (gr.x > kMaxGridDimX || gr.y > kMaxGridDimYZ || gr.z > kMaxGridDimYZ) return false;
  return c.dynamic_smem <= kMaxDynamicSmem;
}

// Lets the lanes of warp w through their exchange when every lane that has not returned has entered it. A lane
// that waits at __syncthreads while the others exchange is a deadlock on the device; it stops the run here.
bool release_exchange(int w, int threads) {
  const int first = w * kWarp, last = std::min(first + kWarp, threads);
  bool any = false;
  for (int t = first; t < last; ++t) {
    const State s = g.fibers[t].state;
    if (s == State::Ready) return false;
    if (s == State::AtBarrier) {
      for (int u = first; u < last; ++u)
        if (g.fibers[u].state == State::AtExchange)
          die(describe_thread(g.fibers[u]) + " is in a warp shuffle while " + describe_thread(g.fibers[t]) +
              " of the same warp waits at __syncthreads");
      return false;
    }
    any |= s == State::AtExchange;
  }
  if (!any) return false;
  // Every exchanging lane reads a lane that must be in the mask, exist, and be in this same exchange.
  for (int t = first; t < last; ++t) {
    Fiber& f = g.fibers[t];
    if (f.state != State::AtExchange) continue;
    for (int l = 0; l < kWarp; ++l) {
      if (!(f.mask >> l & 1u)) continue;
      const int u = first + l;
      if (u >= threads)
        die(describe_thread(f) + " shuffles with mask " + hex(f.mask) + " naming lane " +
            std::to_string(l) + ", which this partial warp does not have");
      if (g.fibers[u].state != State::AtExchange || g.fibers[u].exchanges != f.exchanges)
        die(describe_thread(f) + " shuffles with lane " + std::to_string(l) +
            " in its mask, but that lane has returned or is at a different shuffle");
    }
    if (!(f.mask >> f.src & 1u))
      die(describe_thread(f) + " reads lane " + std::to_string(f.src) + ", which is not in its mask");
  }
  uint64_t received[kWarp];  // every offer is read before any is replaced by what its lane receives
  for (int t = first; t < last; ++t)
    if (g.fibers[t].state == State::AtExchange) received[t - first] = g.fibers[first + g.fibers[t].src].offer;
  for (int t = first; t < last; ++t) {
    Fiber& f = g.fibers[t];
    if (f.state != State::AtExchange) continue;
    f.offer = received[t - first];
    f.state = State::Ready;
  }
  return true;
}

// A fresh context that runs fiber_main on f's stack and returns to the scheduler. Kept out of line: getcontext
// returns only once here (the context is then rewritten by makecontext), but the compiler cannot know that.
[[gnu::noinline]] void start_context(Fiber& f) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack.get();
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = &g.scheduler;
  makecontext(&f.ctx, fiber_main, 0);
}

void run_block(int threads) {
  g.fresh.clear();
  for (int t = 0; t < threads; ++t) {
    Fiber& f = g.fibers[t];
    f.tid = uint3{(unsigned)t % g.block.x, (unsigned)t / g.block.x % g.block.y, (unsigned)t / (g.block.x * g.block.y)};
    f.warp = t / kWarp;
    f.lane = t % kWarp;
    f.state = State::Ready;
    f.exchanges = 0;
    start_context(f);
  }
  bool ascending = true;
  for (;;) {
    // Run every ready thread up to its next barrier, exchange or return.
    for (int i = 0; i < threads; ++i) {
      Fiber& f = g.fibers[ascending ? i : threads - 1 - i];
      if (f.state != State::Ready) continue;
      g.current = &f;
      swapcontext(&g.scheduler, &f.ctx);
      g.current = nullptr;
    }
    bool released = false;
    for (int w = 0; w * kWarp < threads; ++w) released |= release_exchange(w, threads);
    if (released) continue;
    int waiting = 0, done = 0;
    for (int t = 0; t < threads; ++t) {
      waiting += g.fibers[t].state == State::AtBarrier;
      done += g.fibers[t].state == State::Done;
    }
    if (done == threads) return;
    if (waiting + done != threads) die("threads wait at a warp shuffle that can never complete");
    for (int t = 0; t < threads; ++t)
      if (g.fibers[t].state == State::AtBarrier) g.fibers[t].state = State::Ready;
    ascending = !ascending;  // the next phase runs the threads in the other order
  }
}

}  // namespace

const uint3& thread_idx() { return current_fiber("threadIdx").tid; }
const uint3& block_idx() {
  current_fiber("blockIdx");
  return g.block_idx;
}
const dim3& block_dim() {
  current_fiber("blockDim");
  return g.block;
}
const dim3& grid_dim() {
  current_fiber("gridDim");
  return g.grid;
}
int lane_id() { return current_fiber("a warp shuffle").lane; }

void sync_threads() {
  Fiber& f = current_fiber("__syncthreads");
  f.state = State::AtBarrier;
  yield_to_scheduler(f);
}

uint64_t warp_exchange(unsigned mask, uint64_t mine, int src_lane) {
  Fiber& f = current_fiber("__shfl_xor_sync");
  if (!(mask >> f.lane & 1u)) die(describe_thread(f) + " shuffles with a mask that leaves itself out");
  f.offer = mine;
  f.mask = mask;
  f.src = src_lane;
  ++f.exchanges;
  f.state = State::AtExchange;
  yield_to_scheduler(f);
  return f.offer;  // release_exchange put the source lane's offer here
}

void fresh_shared(void* p, size_t bytes) {
  current_fiber("__shared__");
  for (void* q : g.fresh)
    if (q == p) return;
  std::memset(p, 0xFF, bytes);
  g.fresh.push_back(p);
}

bool launch_ok(const LaunchConfig& cfg) {
  if (g.active) die("a kernel launched from inside a kernel (dynamic parallelism is not used by moco)");
  if (config_ok(cfg)) return true;
  last_error = cudaErrorInvalidConfiguration;
  return false;
}

void run_grid(const LaunchConfig& cfg, const std::function<void()>& body) {
  const int threads = (int)(cfg.block.x * cfg.block.y * cfg.block.z);
  while ((int)g.fibers.size() < threads) {
    g.fibers.emplace_back();
    g.fibers.back().stack.reset(new char[kStackBytes]);
  }
  g.grid = cfg.grid;
  g.block = cfg.block;
  g.body = &body;
  g.active = true;
  for (unsigned z = 0; z < cfg.grid.z; ++z)
    for (unsigned y = 0; y < cfg.grid.y; ++y)
      for (unsigned x = 0; x < cfg.grid.x; ++x) {
        g.block_idx = uint3{x, y, z};
        run_block(threads);
      }
  g.active = false;
  g.body = nullptr;
}

cudaError_t take_last_error() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t peek_last_error() { return last_error; }

}  // namespace cuda_emu
