// The stream scheduler of the CUDA emulator (emu_streams.h): queues per stream, event records and waits as
// dependencies between queued pieces of work, and a drain that runs the latest-queued ready work first.
#include "emu_streams.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "include/cuda_runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

// One piece of queued work. `after` lists the sequence numbers it must wait for besides its stream's earlier
// work: event records (cudaStreamWaitEvent) and the legacy default stream's implicit joins.
struct Op {
  uint64_t seq = 0;                // issue order, from 1; 0 means "nothing"
  std::vector<uint64_t> after;     // (dependencies) sequence numbers
  std::function<void()> work;      // empty for a wait
};

// An event's state outlives its handle: a superseded record may still be queued when the event is destroyed.
struct EventState {
  unsigned flags = 0;
  uint64_t record = 0;  // the latest cudaEventRecord's op; 0 if never recorded
  bool completed = false;
  Clock::time_point at;
};

}  // namespace

struct CUstream_st {
  unsigned flags;
  int device;          // current when the stream was made
  std::deque<Op> ops;  // (queued work) in stream order
};
struct CUevent_st {
  std::shared_ptr<EventState> state;
};

namespace cuda_emu {
namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

bool eager_from_env() {
  const char* e = std::getenv("MOCO_EMU_EAGER");
  return e && *e && *e != '0';
}

StreamOrder order_from_env() {
  const char* e = std::getenv("MOCO_EMU_STREAM_ORDER");
  if (!e || !*e || std::string(e) == "head") return StreamOrder::LatestHead;
  if (std::string(e) == "tail") return StreamOrder::LatestTail;
  die("MOCO_EMU_STREAM_ORDER must be head or tail");
}

struct Scheduler {
  std::recursive_mutex mu;  // one host thread at a time queues, drains or runs work
  const bool eager = eager_from_env();
  const StreamOrder order = order_from_env();
  CUstream_st legacy{cudaStreamDefault, -1, {}};
  std::vector<CUstream_st*> streams{&legacy};  // every live stream, the legacy default stream first
  std::unordered_set<uint64_t> pending;         // sequence numbers queued and not yet run
  uint64_t issued = 0;
  bool running = false;  // a piece of work is running: it must not queue more

  CUstream_st* resolve(cudaStream_t s) { return s ? s : &legacy; }
  static uint64_t tail(const CUstream_st* s) { return s->ops.empty() ? 0 : s->ops.back().seq; }
  static bool blocking(const CUstream_st* s) { return !(s->flags & cudaStreamNonBlocking); }

  // What work queued on s must wait for besides its own stream: the legacy default stream waits for every
  // blocking stream's earlier work, and a blocking stream waits for the legacy stream's.
  std::vector<uint64_t> implicit_joins(const CUstream_st* s) const {
    std::vector<uint64_t> after;
    if (s == &legacy) {
      for (const CUstream_st* o : streams)
        if (o != &legacy && blocking(o) && tail(o)) after.push_back(tail(o));
    } else if (blocking(s) && tail(&legacy)) {
      after.push_back(tail(&legacy));
    }
    return after;
  }

  uint64_t push(cudaStream_t stream, std::function<void()> work, uint64_t also_after = 0) {
    if (running) die("work queued from inside queued work");
    if (eager) {
      if (work) work();
      return 0;
    }
    CUstream_st* s = resolve(stream);
    Op op;
    op.seq = ++issued;
    op.after = implicit_joins(s);
    if (also_after) op.after.push_back(also_after);
    op.work = std::move(work);
    s->ops.push_back(std::move(op));
    pending.insert(issued);
    return issued;
  }

  bool ready(const Op& op) const {
    return std::none_of(op.after.begin(), op.after.end(), [&](uint64_t d) { return pending.count(d) > 0; });
  }

  // Runs one piece of work: the head of a stream whose head may run, the stream chosen by `order`. False if
  // nothing is queued.
  bool step() {
    auto rank = [&](const CUstream_st* s) { return order == StreamOrder::LatestHead ? s->ops.front().seq : tail(s); };
    CUstream_st* pick = nullptr;
    for (CUstream_st* s : streams)
      if (!s->ops.empty() && ready(s->ops.front()) && (!pick || rank(s) > rank(pick))) pick = s;
    if (!pick) {
      if (pending.empty()) return false;
      die("queued work waits in a cycle (cannot happen: every wait is on earlier work)");
    }
    Op op = std::move(pick->ops.front());
    pick->ops.pop_front();
    if (op.work) {
      running = true;
      op.work();
      running = false;
    }
    pending.erase(op.seq);
    return true;
  }

  void complete(uint64_t seq) {
    while (seq && pending.count(seq)) step();
  }
};

Scheduler& sched() {
  static Scheduler s;
  return s;
}

}  // namespace

StreamOrder stream_order() { return sched().order; }

void enqueue(cudaStream_t stream, std::function<void()> work) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  s.push(stream, std::move(work));
}

void run_blocking(cudaStream_t stream, std::function<void()> work) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  s.complete(s.push(stream, std::move(work)));
}

void sync_stream(cudaStream_t stream) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  s.complete(Scheduler::tail(s.resolve(stream)));
}

void sync_event(cudaEvent_t event) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  s.complete(event->state->record);
}

void sync_device() {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  while (s.step()) {
  }
}

bool poll_stream(cudaStream_t stream) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  if (s.resolve(stream)->ops.empty()) return true;
  s.step();
  return false;
}

bool poll_event(cudaEvent_t event) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  if (!s.pending.count(event->state->record)) return true;
  s.step();
  return false;
}

cudaStream_t create_stream(unsigned flags, int device) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  s.streams.push_back(new CUstream_st{flags, device, {}});
  return s.streams.back();
}

int stream_device(cudaStream_t stream) { return stream ? stream->device : -1; }

// cudaStreamDestroy returns at once on a device and the stream's work still runs; here that work is finished
// first, so the queue can go with the handle.
void destroy_stream(cudaStream_t stream) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  const auto it = std::find(s.streams.begin(), s.streams.end(), stream);
  if (it == s.streams.end()) die("cudaStreamDestroy of a stream that does not exist (destroyed twice?)");
  s.complete(Scheduler::tail(stream));
  s.streams.erase(it);
  delete stream;
}

cudaEvent_t create_event(unsigned flags) {
  auto state = std::make_shared<EventState>();
  state->flags = flags;
  return new CUevent_st{state};
}

void destroy_event(cudaEvent_t event) { delete event; }

void record_event(cudaEvent_t event, cudaStream_t stream) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  std::shared_ptr<EventState> e = event->state;
  // The op's own number is only known once queued; the work compares it with the event's latest record so that a
  // superseded record that runs late does not overwrite a newer one.
  auto seq = std::make_shared<uint64_t>(0);
  *seq = s.push(stream, [e, seq] {
    if (e->record != *seq) return;
    e->at = Clock::now();
    e->completed = true;
  });
  e->record = *seq;
  if (*seq == 0) {  // eager: already run, with the number unknown to it
    e->at = Clock::now();
    e->completed = true;
  } else {
    e->completed = false;
  }
}

void wait_event(cudaStream_t stream, cudaEvent_t event) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  const uint64_t record = event->state->record;
  // A wait captures the event's latest record at the call; an event never recorded, or whose record has run,
  // makes the wait a no-op, as in CUDA.
  if (record && s.pending.count(record)) s.push(stream, nullptr, record);
}

bool elapsed_ms(cudaEvent_t start, cudaEvent_t end, float* ms) {
  Scheduler& s = sched();
  std::lock_guard<std::recursive_mutex> lock(s.mu);
  const EventState &a = *start->state, &b = *end->state;
  if (!a.completed || !b.completed) return false;
  *ms = std::chrono::duration<float, std::milli>(b.at - a.at).count();
  return true;
}

unsigned event_flags(cudaEvent_t event) { return event->state->flags; }

}  // namespace cuda_emu
