// moco_dist_fault: MoCo steps on W ranks (started by mpirun) where rank 1 fails at step 3, to check that
// the job ends in bounded time with an error and the last checkpoint stays valid (fault_tolerance.sh).
//   moco_dist_fault kill DIR    rank 1 raises SIGKILL at step 3
//   moco_dist_fault hang DIR    rank 1 stops calling collectives at step 3 (sleeps); the watchdog must fire
//   moco_dist_fault throw DIR   rank 1 throws at step 3, alone: its error must be printed and end the job
//   moco_dist_fault verify DIR  one process: DIR/checkpoint.mocockpt loads (checksum and all) at step 3
// As in `moco train`, rank 0 writes a checkpoint after every step while the others wait at a barrier.
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "moco/checkpoint.h"
#include "moco/launch.h"
#include "moco/moco.h"
#include "../tiny_moco.h"

using namespace moco;

static MocoConfig tiny() { return test::tiny_moco(8, 64); }

static Tensor images(int64_t n, float phase) { return test::wave_images(n, 0.13f, phase); }

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: moco_dist_fault kill|hang|verify DIR\n");
    return 2;
  }
  const std::string mode = argv[1], ckpt = std::string(argv[2]) + "/checkpoint.mocockpt";
  const RunConfig rc = {{"test", "fault"}};
  try {
    if (mode == "verify") {
      SingleCommunicator alone;
      Moco moco(tiny(), alone);
      const TrainPosition pos = load_checkpoint(ckpt, moco, rc, {"test"});
      std::printf("checkpoint %s is valid: %lld steps done\n", ckpt.c_str(), (long long)pos.steps_done);
      return pos.steps_done == 3 ? 0 : 1;
    }
    if (mode != "kill" && mode != "hang" && mode != "throw")
      fail("mode '", mode, "' is not one of: kill, hang, throw, verify");
    std::unique_ptr<Communicator> comm = make_cpu_communicator(launch_from_env(process_environment()));
    Moco moco(tiny(), *comm);
    moco.init();
    for (int64_t step = 0; step < 6; ++step) {
      if (comm->rank() == 1 && step == 3) {
        std::fprintf(stderr, "rank 1: failing at step 3 (%s)\n", mode.c_str());
        if (mode == "kill") raise(SIGKILL);
        if (mode == "throw") fail("rank 1: an error of its own at step 3");
        sleep(600);  // a hung rank: alive, but never reaches the next collective
      }
      moco.step(images(4, (float)(comm->rank() * 10 + step)), images(4, (float)(comm->rank() * 10 + step) + 0.5f),
                0.05f);
      if (comm->rank() == 0) save_checkpoint(ckpt, moco, {0, step + 1, step + 1}, rc);
      comm->barrier();
    }
    std::fprintf(stderr, "rank %d: all 6 steps done, but rank 1 should have failed\n", comm->rank());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moco_dist_fault: error: %s\n", e.what());
    return 1;
  }
}
