// SIGINT and SIGTERM during `moco train` (Ctrl-C, a scheduler's preemption or time limit): instead of dying
// mid-step, the run finishes the step in progress, writes a checkpoint there and exits, so that it loses
// nothing and `--resume` continues it exactly. A second signal of either kind ends the process at once, as
// it would have without this.
#pragma once

namespace moco {

class StopRequest {
 public:
  StopRequest();   // installs the handlers for SIGINT and SIGTERM
  ~StopRequest();  // puts the previous ones back
  StopRequest(const StopRequest&) = delete;
  StopRequest& operator=(const StopRequest&) = delete;

  // The signal that asked the run to stop (SIGINT or SIGTERM), or 0 while none has.
  int signal() const;
};

// "SIGINT", "SIGTERM", or the number.
const char* signal_name(int sig);

}  // namespace moco
