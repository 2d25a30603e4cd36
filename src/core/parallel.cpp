#include "moco/parallel.h"

#include "moco/error.h"

#ifdef MOCO_HAVE_ONEDNN
#include <omp.h>
#endif

#include <cblas.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace moco {

int cpu_threads() {
  static const int n = [] {
    const char* env = std::getenv("MOCO_THREADS");
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      MOCO_CHECK(*end == '\0' && v >= 1 && v <= 4096, "MOCO_THREADS=", env,
                 ": expected a whole number of threads from 1 to 4096 (unset: one per core)");
      return (int)v;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : (int)hw;
  }();
  return n;
}

namespace {
class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    // The pool owns the parallelism: BLAS runs single-threaded inside each slot. OpenBLAS's own threads
    // would otherwise spin (sched_yield) beside ours and fight them for the same cores.
    openblas_set_num_threads(1);
#ifndef MOCO_HAVE_ONEDNN
    for (int s = 1; s < n; ++s) workers_.emplace_back([this, s] { loop(s); });
#endif
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    start_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> serial(run_mu_);
    if (n_ == 1) return fn(0);
#ifdef MOCO_HAVE_ONEDNN
    // oneDNN's convolutions run on an OpenMP team: the slots run on that same team, so one set of threads
    // serves both instead of two sets taking turns on the cores (OpenMP's threads spin for a while after each
    // convolution, which starved ours: a fifth of the step). Each slot keeps its fixed share whatever size
    // the team gets.
#pragma omp parallel num_threads(n_)
    for (int slot = omp_get_thread_num(); slot < n_; slot += omp_get_num_threads()) fn(slot);
    return;
#endif
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      remaining_ = n_ - 1;
      ++generation_;
    }
    start_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return remaining_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(int slot) {
    long seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        start_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(slot);
      std::lock_guard<std::mutex> lock(mu_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  long generation_ = 0;
  int remaining_ = 0;
  bool quit_ = false;
};
}  // namespace

void parallel_slots(const std::function<void(int)>& fn) {
  static Pool pool(cpu_threads());
  pool.run(fn);
}

void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  const int threads = cpu_threads();
  if (threads == 1 || n < 2 * grain) return fn(0, n);
  parallel_slots([&](int slot) {
    const int64_t begin = n * slot / threads, end = n * (slot + 1) / threads;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace moco
