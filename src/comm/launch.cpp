// Reading the launcher's environment (launch.h) and choosing the communicator for CPU ranks.
#include "moco/launch.h"

#include <cerrno>
#include <cstdlib>

#include "moco/error.h"
#ifdef MOCO_HAVE_MPI
#include "moco/comm_mpi.h"
#endif

extern char** environ;

namespace moco {

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv(*e);
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

static bool has(const Environment& env, const std::string& key) { return env.count(key) != 0; }

static int64_t integer(const Environment& env, const std::string& key) {
  const std::string& v = env.at(key);
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  MOCO_CHECK(!v.empty() && *end == '\0' && errno == 0 && x >= INT32_MIN && x <= INT32_MAX, "environment variable ",
             key, "='", v, "' is not an integer");
  return x;
}

// One launcher's variables: all of rank/world/local must be set, or none (then the family is absent).
static bool read_family(const Environment& env, const char* source, const char* rank, const char* world,
                        const char* local, LaunchInfo& li) {
  const int present = has(env, rank) + has(env, world) + has(env, local);
  if (present == 0) return false;
  MOCO_CHECK(present == 3, source, " launch variables are incomplete: ", rank, has(env, rank) ? " set" : " missing",
             ", ", world, has(env, world) ? " set" : " missing", ", ", local, has(env, local) ? " set" : " missing",
             "; expected all three");
  const int64_t r = integer(env, rank), w = integer(env, world), l = integer(env, local);
  MOCO_CHECK(w >= 1, world, "=", w, " must be at least 1");
  MOCO_CHECK(r >= 0 && r < w, rank, "=", r, " is outside [0, ", world, "=", w, ")");
  MOCO_CHECK(l >= 0 && l < w, local, "=", l, " is outside [0, ", world, "=", w, ")");
  li.rank = (int)r;
  li.world = (int)w;
  li.local_rank = (int)l;
  li.source = source;
  return true;
}

LaunchInfo launch_from_env(const Environment& env) {
  LaunchInfo li;
  if (read_family(env, "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", li))
    return li;
  if (read_family(env, "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", li)) {
    // the rendezvous address matters only with several ranks; then both parts are required
    if (li.world > 1 || has(env, "MASTER_ADDR") || has(env, "MASTER_PORT")) {
      MOCO_CHECK(has(env, "MASTER_ADDR") && !env.at("MASTER_ADDR").empty(),
                 "torchrun-style launch with WORLD_SIZE=", li.world, " needs MASTER_ADDR (the rank-0 host)");
      MOCO_CHECK(has(env, "MASTER_PORT"), "torchrun-style launch with WORLD_SIZE=", li.world,
                 " needs MASTER_PORT (the rank-0 port)");
      const int64_t port = integer(env, "MASTER_PORT");
      MOCO_CHECK(port >= 1 && port <= 65535, "MASTER_PORT=", port, " is not a port in [1, 65535]");
      li.master_addr = env.at("MASTER_ADDR");
      li.master_port = (int)port;
    }
    return li;
  }
  // srun's tasks. srun sets SLURM_STEP_NUM_TASKS for the step it starts; a batch script (sbatch) runs as one
  // process but sees the job's SLURM_NTASKS and a SLURM_PROCID of 0 as well, and taking those for ranks would
  // wait for peers that never start. Such a process trains as one rank, and says how to start the others.
  if (has(env, "SLURM_STEP_NUM_TASKS")) {
    read_family(env, "slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", li);
  } else if (has(env, "SLURM_NTASKS") && env.at("SLURM_NTASKS") != "1") {
    li.note = "SLURM_NTASKS=" + env.at("SLURM_NTASKS") + " but this process was not started by srun (no "
              "SLURM_STEP_NUM_TASKS), so it trains as one rank; to train on every task, start them with `srun "
              "moco train ...`";
  }
  return li;
}

void check_launch_flags(const LaunchInfo& li, int64_t world_flag, int64_t rank_flag, const std::string& dist_url) {
  MOCO_CHECK(world_flag == -1 || world_flag == li.world, "--world-size ", world_flag, " disagrees with the launcher (",
             li.source, "), which started ", li.world, " rank(s); --world-size counts processes here, one per rank");
  MOCO_CHECK(rank_flag == -1 || rank_flag == li.rank, "--rank ", rank_flag, " disagrees with the launcher (", li.source,
             "), which says this process is rank ", li.rank);
  const std::string tcp = "tcp://";
  if (!dist_url.empty() && !li.master_addr.empty() && dist_url.compare(0, tcp.size(), tcp) == 0) {
    const std::string expected = tcp + li.master_addr + ":" + std::to_string(li.master_port);
    MOCO_CHECK(dist_url == expected, "--dist-url ", dist_url, " disagrees with MASTER_ADDR:MASTER_PORT (", expected,
               ")");
  }
}

double comm_timeout_seconds(const Environment& env) {
  auto it = env.find("MOCO_COMM_TIMEOUT_S");
  if (it == env.end()) return 300;
  char* end = nullptr;
  const double s = std::strtod(it->second.c_str(), &end);
  MOCO_CHECK(!it->second.empty() && *end == '\0' && s > 0, "MOCO_COMM_TIMEOUT_S='", it->second,
             "' must be a number of seconds > 0");
  return s;
}

std::unique_ptr<Communicator> make_cpu_communicator(const LaunchInfo& li) {
  if (li.world == 1) return std::make_unique<SingleCommunicator>();
  MOCO_CHECK(li.source == "openmpi", "the ", li.source, " environment asks for ", li.world,
             " ranks, but CPU ranks talk over MPI and need mpirun: start them with `mpirun -np ", li.world,
             " moco train ...`, or train GPU ranks (--device cuda, NCCL), which torchrun and srun can start");
#ifdef MOCO_HAVE_MPI
  auto comm = std::make_unique<MpiCommunicator>(comm_timeout_seconds(process_environment()));
  MOCO_CHECK(comm->world_size() == li.world && comm->rank() == li.rank, "MPI says rank ", comm->rank(), " of ",
             comm->world_size(), " but OMPI_COMM_WORLD_* say rank ", li.rank, " of ", li.world);
  return comm;
#else
  fail("mpirun started ", li.world, " ranks, but this build has no MPI; install libopenmpi-dev (tools/setup.sh) "
       "and configure again so CMake finds it");
#endif
}

}  // namespace moco
