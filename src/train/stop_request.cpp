#include "moco/stop_request.h"

#include <atomic>
#include <csignal>

#include "moco/error.h"

namespace moco {

namespace {

// Written by the handler, read by the training loop. A lock-free atomic is safe to store from a handler.
std::atomic<int> requested{0};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag must be lock-free for a signal handler");

struct sigaction previous_int, previous_term;

void on_signal(int sig) { requested.store(sig); }

}  // namespace

StopRequest::StopRequest() {
  requested.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESETHAND: the first signal only asks; the default action is back for a second one, which then ends the
  // process at once. No SA_RESTART: a blocking call (a loader wait) may return early, which is harmless here.
  sa.sa_flags = SA_RESETHAND;
  MOCO_CHECK(sigaction(SIGINT, &sa, &previous_int) == 0 && sigaction(SIGTERM, &sa, &previous_term) == 0,
             "cannot install the SIGINT/SIGTERM handlers");
}

StopRequest::~StopRequest() {
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);
}

int StopRequest::signal() const { return requested.load(); }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
  }
  return "a signal";
}

}  // namespace moco
