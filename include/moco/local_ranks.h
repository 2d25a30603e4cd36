// `--multiprocessing-distributed`, as main_moco.py means it: one process per GPU of this node, started by
// `moco train` itself. --world-size then counts nodes and --rank is the node's index; the node's -b and -j are
// shared out among its processes (b / G images and ceil(j / G) workers each, as the authors' main_worker does),
// so the authors' command line trains on the same global batch here as there.
//
// The parent starts G copies of its own command line. Each copy finds its place in the torchrun-style
// variables it is given (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; launch.h reads them), with
// NCCL_COMM_ID at the --dist-url address for NCCL's rendezvous, and MOCO_RANKS_PER_NODE = G, which tells a copy
// that it was started this way. The parent only waits: it passes SIGINT and SIGTERM on (each rank then stops
// at the same step and checkpoints, as under any launcher), and when one rank fails it asks the others to stop
// and returns that rank's exit status.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moco/launch.h"

namespace moco {

// Where the processes of one node sit in the whole run.
struct LocalRanksPlan {
  int per_node = 1;    // G: processes on this node, one per visible GPU
  int nodes = 1;       // --world-size under --multiprocessing-distributed
  int node_rank = 0;   // --rank under --multiprocessing-distributed
  std::string host;    // the rendezvous (rank 0's node) from --dist-url tcp://HOST:PORT
  int port = 0;
};

// The plan from the authors' flags: gpus (> 0) on this node, --world-size and --rank (-1: not given), and
// --dist-url. One node may leave them out (the rendezvous is then 127.0.0.1 on a free port); several nodes need
// all three, with a tcp:// URL naming node 0. Throws, naming the flag and its value, otherwise; the flags are
// checked first, then the GPUs (no_gpu_reason says why there are none).
// A TCP port nobody listens on now on 127.0.0.1, from the kernel (bind to port 0). Rank 0's NCCL listens there
// a moment later; another program could take it in between, and then NCCL says so.
int free_local_port();

LocalRanksPlan plan_local_ranks(int gpus, int64_t world_flag, int64_t rank_flag, const std::string& dist_url,
                                const std::string& no_gpu_reason = "");

// The variables local rank i (0 <= i < per_node) is started with (added to the parent's environment).
Environment local_rank_environment(const LocalRanksPlan& plan, int i);

// What a process started by run_local_ranks reads back: the number of ranks per node (0: not started so).
int ranks_per_node_from_env(const Environment& env);

// A rank started so: its launch (torchrun variables) checked against the authors' flags, which count nodes
// here (--world-size = nodes, --rank = this node), and its share of the node's batch and workers.
struct LocalRankShare {
  LaunchInfo launch;
  int64_t batch_size = 0;  // floor(node batch / G), as main_worker's int(batch_size / ngpus_per_node)
  int workers = 0;         // ceil(node workers / G)
};
// A rank's batch and workers of the node's, G ranks per node (the launch left empty); throws when the node's
// batch gives a rank no image.
LocalRankShare share_of_node(int64_t node_batch, int node_workers, int g);
LocalRankShare local_rank_share(const Environment& env, int64_t world_flag, int64_t rank_flag, int64_t node_batch,
                                int node_workers);

// Runs `argv` (argv[0]: the program's path) n times at once, copy i with local_rank_environment-style extra
// variables extra_env(i) on top of this process's environment, and waits for all of them. Returns 0 when every
// copy exits 0, else the first non-zero status (an exit code, or 128 + the signal that ended the copy). A copy
// that ends with 128 + a signal passed on to it (below) stopped as asked; any other non-zero end is a failure,
// and the others are sent SIGTERM and, if they have not ended after `grace_s` seconds, SIGKILL. SIGINT and SIGTERM
// sent to this process are passed on to every copy while it waits, as often as they come (its handlers for
// them are restored when it returns). Each copy runs in its own process group, so a Ctrl-C at the terminal
// reaches it once, through this process, and it gets SIGTERM if this process dies (Linux's parent-death
// signal), so none is left behind when the parent is killed outright. A rank that gets a signal before it has
// installed its own handlers (while it scans its data or joins NCCL) ends at once, as a failure.
int run_local_ranks(const std::vector<std::string>& argv, int n, const std::function<Environment(int)>& extra_env,
                    double grace_s = 30);

}  // namespace moco
