// The emulator's scheduler: blocks, or thread block clusters, two at a time, and inside them one ucontext fiber per
// CUDA thread, switched at barriers and warp exchanges (see emu_runtime.h for what is modelled).
#include "emu_runtime.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

// include/cuda_runtime.h's blockDim and gridDim: set by run_grid for the launch it runs.
thread_local dim3 blockDim, gridDim;

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
constexpr unsigned kMaxClusterBlocks = 8;      // the portable cluster size (more needs an opt-in moco never makes)
// Blocks (or clusters) run two at a time, so that two writing the same global slot (a block's or a cluster's
// partial results indexed without it) read each other's values after the next barrier, as they may on the device.
constexpr unsigned kClustersTogether = 2;

enum class State { Ready, AtBarrier, AtClusterBarrier, AtExchange, Done };

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;  // (kStackBytes)
  uint3 tid;
  int block = 0;  // the fiber's block among those running together (its cluster: block / cluster size)
  int warp = 0, lane = 0;
  State state = State::Done;
  uint64_t offer = 0;     // the value offered in the current warp exchange
  unsigned mask = 0;      // that exchange's mask
  int src = 0;            // and the lane it reads
  long exchanges = 0;     // exchanges this thread has entered, to pair them across lanes
};

// One __shared__ array a block has reached, and its contents while another block of the cluster runs.
struct SharedArray {
  void* p;
  size_t bytes;
  std::vector<char> saved;  // (bytes)
};

// What the running host thread is doing inside a launch.
struct Grid {
  dim3 block;
  int cluster_blocks = 1;        // blocks per cluster
  std::vector<uint3> block_idx;  // (blocks running together) blockIdx of each, cluster by cluster
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;  // one per thread of the cluster, block by block, each block in linear order x fastest
  Fiber* current = nullptr;
  // __shared__ variables are statics, one per host thread, so the blocks running together take turns in them:
  // the resident block's values are in the statics, every other block's are saved in its own list.
  std::vector<std::vector<SharedArray>> shared;  // (blocks running together) the arrays each block has reached
  int resident = 0;
  ucontext_t scheduler;
  bool active = false;
};

thread_local Grid g;
thread_local cudaError_t last_error = cudaSuccess;

[[noreturn]] void die(const std::string& what) {
  const uint3 b = g.block_idx.empty() ? uint3{0, 0, 0} : g.block_idx[g.current ? g.current->block : g.resident];
  std::fprintf(stderr, "cuda_emu: %s (block (%u,%u,%u))\n", what.c_str(), b.x, b.y, b.z);
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
  const std::string where =
      g.block_idx.size() > 1 ? " of block (" + std::to_string(g.block_idx[f.block].x) + "," +
                                   std::to_string(g.block_idx[f.block].y) + "," +
                                   std::to_string(g.block_idx[f.block].z) + ")"
                             : "";
  return "thread (" + std::to_string(f.tid.x) + "," + std::to_string(f.tid.y) + "," + std::to_string(f.tid.z) +
         ")" + where;
}

cudaError_t config_error(const LaunchConfig& c) {
  const dim3 b = c.block, gr = c.grid, cl = c.cluster;
  const unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || b.z > kMaxBlockDimZ) return cudaErrorInvalidConfiguration;
  if (gr.x == 0 || gr.y == 0 || gr.z == 0) return cudaErrorInvalidConfiguration;
  if (gr.x > kMaxGridDimX || gr.y > kMaxGridDimYZ || gr.z > kMaxGridDimYZ) return cudaErrorInvalidConfiguration;
  if (c.dynamic_smem > kMaxDynamicSmem) return cudaErrorInvalidConfiguration;
  // a cluster tiles the grid exactly and has at most the portable number of blocks
  if (cl.x == 0 || cl.y == 0 || cl.z == 0 || gr.x % cl.x || gr.y % cl.y || gr.z % cl.z)
    return cudaErrorInvalidClusterSize;
  if ((unsigned long long)cl.x * cl.y * cl.z > kMaxClusterBlocks) return cudaErrorInvalidClusterSize;
  return cudaSuccess;
}

// Makes block b's __shared__ values the ones in the statics (a no-op for clusters of one block).
void make_resident(int b) {
  if (b == g.resident) return;
  for (SharedArray& a : g.shared[g.resident]) std::memcpy(a.saved.data(), a.p, a.bytes);
  for (SharedArray& a : g.shared[b]) std::memcpy(a.p, a.saved.data(), a.bytes);
  g.resident = b;
}

// Lets the lanes of warp w of block b through their exchange when every lane that has not returned has entered
// it. A lane that waits at a barrier while the others exchange is a deadlock on the device; it stops the run here.
bool release_exchange(int b, int w, int threads) {
  const int base = b * threads;
  const int first = base + w * kWarp, last = base + std::min(w * kWarp + kWarp, threads);
  bool any = false;
  for (int t = first; t < last; ++t) {
    const State s = g.fibers[t].state;
    if (s == State::Ready) return false;
    if (s == State::AtBarrier || s == State::AtClusterBarrier) {
      for (int u = first; u < last; ++u)
        if (g.fibers[u].state == State::AtExchange)
          die(describe_thread(g.fibers[u]) + " is in a warp shuffle while " + describe_thread(g.fibers[t]) +
              " of the same warp waits at " + (s == State::AtBarrier ? "__syncthreads" : "the cluster barrier"));
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
      if (u >= last)
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

// Of block b's threads that have not returned, how many wait at each kind of barrier (the rest are in warp
// exchanges that cannot complete, or ready).
struct BlockWaits {
  int live = 0, at_barrier = 0, at_cluster = 0;
};
BlockWaits waits_of(int b, int threads) {
  BlockWaits w;
  for (int t = b * threads; t < (b + 1) * threads; ++t) {
    const State s = g.fibers[t].state;
    w.live += s != State::Done;
    w.at_barrier += s == State::AtBarrier;
    w.at_cluster += s == State::AtClusterBarrier;
  }
  return w;
}

// Runs the blocks g.block_idx together, whole clusters of g.cluster_blocks: `threads` fibers per block.
void run_together(int threads) {
  const int blocks = (int)g.block_idx.size(), total = blocks * threads;
  g.shared.assign((size_t)blocks, {});
  g.resident = 0;
  for (int t = 0; t < total; ++t) {
    Fiber& f = g.fibers[t];
    const int i = t % threads;
    f.tid = uint3{(unsigned)i % g.block.x, (unsigned)i / g.block.x % g.block.y, (unsigned)i / (g.block.x * g.block.y)};
    f.block = t / threads;
    f.warp = i / kWarp;
    f.lane = i % kWarp;
    f.state = State::Ready;
    f.exchanges = 0;
    start_context(f);
  }
  bool ascending = true;
  for (;;) {
    // Run every ready thread up to its next barrier, exchange or return; descending phases also take the
    // blocks in the other order.
    for (int i = 0; i < total; ++i) {
      Fiber& f = g.fibers[ascending ? i : total - 1 - i];
      if (f.state != State::Ready) continue;
      make_resident(f.block);
      g.current = &f;
      swapcontext(&g.scheduler, &f.ctx);
      g.current = nullptr;
    }
    bool released = false;
    for (int b = 0; b < blocks; ++b)
      for (int w = 0; w * kWarp < threads; ++w) released |= release_exchange(b, w, threads);
    if (released) continue;
    // A block whose live threads all wait at __syncthreads goes on, and a cluster whose live threads all wait at
    // its barrier. Some at __syncthreads and the rest at the cluster barrier never meet on the device.
    int live = 0;
    for (int c0 = 0; c0 < blocks; c0 += g.cluster_blocks) {
      int cluster_live = 0, cluster_waiting = 0;
      for (int b = c0; b < c0 + g.cluster_blocks; ++b) {
        const BlockWaits w = waits_of(b, threads);
        cluster_live += w.live;
        cluster_waiting += w.at_cluster;
        if (w.at_barrier > 0 && w.at_cluster > 0 && w.at_barrier + w.at_cluster == w.live)
          die("in cluster rank " + std::to_string(b - c0) + ", some threads wait at __syncthreads and the others "
              "at the cluster barrier");
        if (w.at_barrier == 0 || w.at_barrier != w.live) continue;
        for (int t = b * threads; t < (b + 1) * threads; ++t)
          if (g.fibers[t].state == State::AtBarrier) g.fibers[t].state = State::Ready;
        released = true;
      }
      live += cluster_live;
      if (cluster_live == 0 || cluster_waiting != cluster_live) continue;
      for (int t = c0 * threads; t < (c0 + g.cluster_blocks) * threads; ++t)
        if (g.fibers[t].state == State::AtClusterBarrier) g.fibers[t].state = State::Ready;
      released = true;
    }
    if (released) {
      ascending = !ascending;  // the next phase runs the threads in the other order
      continue;
    }
    if (live == 0) break;
    die("threads wait at a warp shuffle or a barrier that can never complete");
  }
}

}  // namespace

const uint3& thread_idx() { return current_fiber("threadIdx").tid; }
const uint3& block_idx() { return g.block_idx[current_fiber("blockIdx").block]; }
int lane_id() { return current_fiber("a warp shuffle").lane; }

void sync_threads() {
  Fiber& f = current_fiber("__syncthreads");
  f.state = State::AtBarrier;
  yield_to_scheduler(f);
}

void sync_cluster() {
  Fiber& f = current_fiber("cluster.sync()");
  f.state = State::AtClusterBarrier;
  yield_to_scheduler(f);
}
unsigned cluster_block_rank() { return (unsigned)(current_fiber("cluster.block_rank()").block % g.cluster_blocks); }
unsigned cluster_blocks() {
  current_fiber("cluster.num_blocks()");
  return (unsigned)g.cluster_blocks;
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
  std::vector<SharedArray>& reached = g.shared[current_fiber("__shared__").block];  // the resident block's
  for (const SharedArray& a : reached)
    if (a.p == p) return;
  std::memset(p, 0xFF, bytes);
  reached.push_back(SharedArray{p, bytes, std::vector<char>(g.block_idx.size() > 1 ? bytes : 0)});
}

bool launch_ok(const LaunchConfig& cfg) {
  if (g.active) die("a kernel launched from inside a kernel (dynamic parallelism is not used by moco)");
  const cudaError_t e = config_error(cfg);
  if (e == cudaSuccess) return true;
  last_error = e;
  return false;
}

bool count_only() {
  static const bool on = [] {
    const char* v = std::getenv("MOCO_EMU_COUNT_ONLY");
    return v && std::string(v) == "1";
  }();
  return on;
}

void run_grid(const LaunchConfig& cfg, const std::function<void()>& body) {
  if (count_only()) return;
  const int threads = (int)(cfg.block.x * cfg.block.y * cfg.block.z);
  const dim3 cl = cfg.cluster;
  const int cluster_blocks = (int)(cl.x * cl.y * cl.z);
  const int most = threads * cluster_blocks * (int)kClustersTogether;
  while ((int)g.fibers.size() < most) {
    g.fibers.emplace_back();
    g.fibers.back().stack.reset(new char[kStackBytes]);
  }
  gridDim = cfg.grid;
  g.block = blockDim = cfg.block;
  g.cluster_blocks = cluster_blocks;
  g.body = &body;
  g.active = true;
  g.block_idx.clear();
  unsigned gathered = 0;
  for (unsigned z = 0; z < cfg.grid.z; z += cl.z)
    for (unsigned y = 0; y < cfg.grid.y; y += cl.y)
      for (unsigned x = 0; x < cfg.grid.x; x += cl.x) {
        for (unsigned cz = 0; cz < cl.z; ++cz)  // the cluster's blocks in rank order: x fastest
          for (unsigned cy = 0; cy < cl.y; ++cy)
            for (unsigned cx = 0; cx < cl.x; ++cx) g.block_idx.push_back(uint3{x + cx, y + cy, z + cz});
        if (++gathered < kClustersTogether) continue;
        run_together(threads);
        g.block_idx.clear();
        gathered = 0;
      }
  if (!g.block_idx.empty()) run_together(threads);  // an odd cluster out
  g.active = false;
  g.body = nullptr;
  g.block_idx.clear();
}

cudaError_t take_last_error() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t peek_last_error() { return last_error; }

}  // namespace cuda_emu
