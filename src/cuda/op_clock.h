// Device time per kind of work in the step (`moco bench --op-times`): a CUDA event before and after each
// timed piece of work on the step's stream, read once the step's work has finished, and summed per name
// ("conv forward", "bn backward", ...). It answers where a device-bound step spends its time, which the
// phase times (whole forwards and backwards) cannot.
//
// Off until enable(): then time() only runs its function, and nothing is recorded. On, it costs two event
// records a bracket (on the host about a microsecond each, on the device next to nothing). The events are
// created while the first steps grow the pool and reused after, so a timed step creates none.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moco::cuda {

class OpClock {
 public:
  explicit OpClock(cudaStream_t stream) : stream_(stream) {}
  ~OpClock();
  OpClock(const OpClock&) = delete;
  OpClock& operator=(const OpClock&) = delete;

  void enable() { on_ = true; }
  bool enabled() const { return on_; }

  // Runs `enqueue`, which issues work on the stream, bracketed by two events under `name` (a string literal:
  // the pointer is kept until collect()).
  template <class F>
  void time(const char* name, F&& enqueue) {
    if (!on_) {
      enqueue();
      return;
    }
    const size_t i = open(name);
    enqueue();  // if it throws, the bracket stays open until drop_pending()
    close(i);
  }

  // Once the stream has finished the brackets' work: adds each bracket's milliseconds to its name's total.
  // The events are then free for the next step.
  void collect();
  // Drops brackets not yet collected, closed or not (a step that threw before its collect()), so they are not
  // counted with the next step's. The step calls it first.
  void drop_pending() { pending_.clear(); }
  void reset_totals();  // e.g. after the warm-up steps

  struct Total {
    std::string name;
    double ms = 0;      // summed over the brackets collected
    int64_t calls = 0;  // brackets collected
  };
  const std::vector<Total>& totals() const { return totals_; }  // in the order the names first came

 private:
  size_t open(const char* name);
  void close(size_t bracket);
  cudaStream_t stream_;
  bool on_ = false;
  std::vector<cudaEvent_t> events_;   // (2 x brackets) the pool: bracket i uses events 2i and 2i + 1
  std::vector<const char*> pending_;  // (brackets recorded since the last collect) their names
  std::vector<Total> totals_;
};

}  // namespace moco::cuda
