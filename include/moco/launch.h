// Where a process sits in a distributed run, read from the launcher's environment: Open MPI's mpirun
// (OMPI_COMM_WORLD_*), torchrun-style launchers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or
// SLURM's srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID). Pure functions of an environment map, so every
// case is unit-tested with fake environments; the communicator for the run is made from the result.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "moco/comm.h"

namespace moco {

using Environment = std::map<std::string, std::string>;

struct LaunchInfo {
  int rank = 0, world = 1, local_rank = 0;
  std::string source = "single";  // single | openmpi | torchrun | slurm: which variables gave the values
  std::string master_addr;        // torchrun only: the rendezvous host and port
  int master_port = 0;
  std::string note;  // what the launcher's variables left unclear, for the user (empty: nothing)
  int gpu = -1;      // a single process's GPU as --gpu asked (-1: the local rank's)
};

// The process's environment as a map.
Environment process_environment();

// Open MPI's variables win (mpirun also runs inside SLURM jobs and under torchrun-style wrappers, and the MPI
// communicator follows them), then torchrun's, then srun's; with none of them, one rank (a SLURM batch script
// outside srun is one rank too, with a `note` when the job has several tasks). Throws, naming the
// variable and its value, when a family is incomplete, a value is not an integer, or the values contradict
// each other (rank outside [0, world), local rank outside [0, world), a bad port).
LaunchInfo launch_from_env(const Environment& env);

// Checks the authors' flags (main_moco.py) against the launcher: --world-size and --rank (-1: not given)
// must equal the launcher's world size and rank (one process per rank here); a tcp:// --dist-url must name
// the torchrun MASTER_ADDR:MASTER_PORT when those are set. Throws naming both values on a mismatch.
void check_launch_flags(const LaunchInfo& li, int64_t world_flag, int64_t rank_flag, const std::string& dist_url);

// The communicator for CPU ranks: one rank -> SingleCommunicator; W > 1 under mpirun -> MPI; W > 1 from
// torchrun or srun variables alone, or in a build without MPI -> an error saying how to launch instead.
std::unique_ptr<Communicator> make_cpu_communicator(const LaunchInfo& li);

// The watchdog's limit for one collective: MOCO_COMM_TIMEOUT_S (seconds, > 0), default 300.
double comm_timeout_seconds(const Environment& env);

}  // namespace moco
