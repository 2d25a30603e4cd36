// A fixed pool of CPU threads for the CPU path's heavy loops. Work is split into `slots`, one per thread,
// and each slot always gets the same share of the work (static, strided), so every sum that is combined
// across slots is combined in the same order: results do not depend on thread timing, and a resumed run
// stays bit-exact. (They do depend on the number of threads: MOCO_THREADS fixes it.)
#pragma once
#include <functional>

namespace moco {

// Threads of the pool: MOCO_THREADS if set, else the number of cores.
int cpu_threads();

// Runs fn(slot) for every slot in [0, cpu_threads()) concurrently and returns when all are done. Calls are
// serialised; fn must not call parallel_slots itself.
void parallel_slots(const std::function<void(int slot)>& fn);

}  // namespace moco
