// A fixed pool of CPU threads for the CPU path's heavy loops. Work is split into `slots`, one per thread,
// and each slot always gets the same share of the work (static, strided), so every sum that is combined
// across slots is combined in the same order: results do not depend on thread timing, and a resumed run
// stays bit-exact. (They do depend on the number of threads: MOCO_THREADS fixes it.)
#pragma once
#include <cstdint>
#include <functional>

namespace moco {

// Threads of the pool: MOCO_THREADS if set, else the number of cores. A MOCO_THREADS that is not a whole
// number from 1 to 4096 throws moco::Error naming it (the program reads it first thing, so the error comes
// before any work).
int cpu_threads();

// Runs fn(slot) for every slot in [0, cpu_threads()), concurrently (on OpenMP's team when the build has
// oneDNN, which may run several slots on one thread), and returns when all are done. Calls are
// serialised; fn must not call parallel_slots itself.
void parallel_slots(const std::function<void(int slot)>& fn);

// Splits [0, n) into one contiguous range per slot and runs fn(begin, end) on each; below `grain` items in
// all it runs fn(0, n) on the calling thread (a pool round trip costs more than a small loop). For loops
// whose iterations are independent, so the result is the same however they are split.
void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace moco
