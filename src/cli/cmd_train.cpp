// `moco train [DATA]`: MoCo pretraining (flags and defaults in train_options.cpp). With
// --multiprocessing-distributed this process starts one rank per GPU of the node and waits for them.
#include <unistd.h>

#include <climits>
#include <cstdio>

#include "moco/commands.h"
#include "moco/local_ranks.h"
#include "moco/train.h"

#ifdef MOCO_HAVE_CUDA
#include "../cuda/train_step.h"
#include "moco/cuda_runtime.h"
#endif

namespace moco {

// The node's ranks of --multiprocessing-distributed: this program's own command line once per visible GPU.
static int start_local_ranks(const TrainOptions& o, int argc, char** argv) {
  MOCO_CHECK(o.device != "cpu", "--multiprocessing-distributed starts one process per GPU; CPU ranks are started "
             "by mpirun (docs/distributed.md)");
  int gpus = 0;
#ifdef MOCO_HAVE_CUDA
  const std::string why = cuda::no_device_reason();
  if (why.empty()) gpus = cuda::device_count();
#else
  const std::string why = "this build has no CUDA backend";
#endif
  const LocalRanksPlan plan = plan_local_ranks(gpus, o.world_flag, o.rank_flag, o.dist_url, why);
  // what each rank will check on its share of the node's batch, checked once here with the numbers the user gave
  const int64_t share = share_of_node(o.batch_size, o.workers, plan.per_node).batch_size;
  const int64_t world = (int64_t)plan.nodes * plan.per_node;
  const int splits = o.bn_splits_auto ? (world == 1 ? 8 : 1) : o.bn_splits;
  MOCO_CHECK(share % splits == 0, "each GPU's share of --batch-size ", o.batch_size, " (", share, " images of ",
             plan.per_node, " GPUs) does not split into --bn-splits ", splits, " equal BN groups");
  MOCO_CHECK(o.moco_k >= share * world, "--moco-k ", o.moco_k, " must be at least the global batch ", share * world,
             " (", share, " images x ", world, " GPUs)");
  std::fprintf(stderr, "multiprocessing-distributed: node %d of %d starts ranks %d to %d of %d (one per GPU), "
               "rendezvous %s:%d\n", plan.node_rank, plan.nodes, plan.node_rank * plan.per_node,
               (plan.node_rank + 1) * plan.per_node - 1, plan.nodes * plan.per_node, plan.host.c_str(), plan.port);
  char self[PATH_MAX];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  MOCO_CHECK(len > 0, "cannot find this program's path (/proc/self/exe) to start its ranks");
  self[len] = '\0';
  std::vector<std::string> args = {self};
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  return run_local_ranks(args, plan.per_node, [&](int i) { return local_rank_environment(plan, i); });
}

int cmd_train(int argc, char** argv) {
  TrainOptions o;
  if (!parse_train_options(argc, argv, process_environment(), o)) return 0;  // --help
  if (o.starts_local_ranks) return start_local_ranks(o, argc, argv);
#ifdef MOCO_HAVE_CUDA
  return run_train(o, &cuda::make_train_step);
#else
  return run_train(o);
#endif
}

}  // namespace moco
