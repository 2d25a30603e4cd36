// `moco train`'s command line: flags and defaults as in the authors' main_moco.py, plus this engine's own.
// Without DATA the run is the small-image recipe on Fashion-MNIST (the authors' CIFAR-10 demo settings), and
// every default that recipe changes is overridden unless the flag is given.
#include <cstdio>

#include "moco/args.h"
#include "moco/local_ranks.h"
#include "moco/train.h"

namespace moco {

static void declare_train_options(Args& a) {
  a.positional("DATA", "ImageFolder root (root/train/<class>/*.jpg); omitted: Fashion-MNIST with the small recipe");
  a.option("-a,--arch", "resnet50",
           "resnet18 | resnet34 | resnet50 | resnet101 | resnet152 (Fashion-MNIST default: resnet18)");
  a.option("--width", "64", "channels of the stem and layer1; 64 is torchvision's ResNet");
  a.option("--stem", "auto", "imagenet (7x7/2 + max-pool) | small (3x3/1) | auto: small when --image-size <= 64");
  a.option("-j,--workers", "2", "data loading threads");
  a.option("--epochs", "200", "total epochs");
  a.option("--start-epoch", "0", "epoch to start at (a --resume checkpoint sets it)");
  a.option("-b,--batch-size", "256", "images per step and rank (Fashion-MNIST default: 512)");
  a.option("--lr,--learning-rate", "0.03", "base learning rate (Fashion-MNIST default: 0.06)");
  a.list("--schedule", "120 160", "epochs at which lr drops x0.1 (without --cos)");
  a.option("--momentum", "0.9", "SGD momentum");
  a.option("--wd,--weight-decay", "1e-4", "weight decay, every parameter (Fashion-MNIST default: 5e-4)");
  a.option("-p,--print-freq", "10", "a progress line every N steps of an epoch (from its first, as main_moco.py) "
           "when stderr is not a terminal");
  a.option("--resume", "", "checkpoint to continue from, mid-epoch and bit-exact");
  a.option("--world-size", "-1", "number of processes (ranks), taken from the launcher's environment and checked "
           "if given; with --multiprocessing-distributed, the number of nodes");
  a.option("--rank", "-1", "this process's rank, taken from the launcher's environment and checked if given; with "
           "--multiprocessing-distributed, this node's index");
  a.option("--dist-url", "", "tcp://HOST:PORT: under torchrun, checked against MASTER_ADDR:MASTER_PORT; with "
           "--multiprocessing-distributed, node 0's address for NCCL's rendezvous");
  a.option("--dist-backend", "nccl", "accepted for compatibility");
  a.flag("--multiprocessing-distributed",
         "start one process per GPU of this node, as main_moco.py does: --world-size then counts nodes, --rank "
         "is this node's index, --dist-url tcp://HOST:PORT names node 0 (optional on one node), and -b and -j "
         "are the node's, shared out among its processes");
  a.option("--gpu", "-1", "the GPU of a single-process run (-1: the first, or the local rank's with several ranks)");
  a.option("--seed", "0", "seed of every random draw (init, augmentation, order, shuffle)");
  a.option("--moco-dim", "128", "feature dimension C");
  a.option("--moco-k", "65536", "queue size K (Fashion-MNIST default: 4096)");
  a.option("--moco-m", "0.999", "momentum of the key encoder update (Fashion-MNIST default: 0.99)");
  a.option("--moco-t", "0.07", "softmax temperature T (Fashion-MNIST default: 0.1)");
  a.flag("--mlp", "v2 MLP head instead of the v1 fc head");
  a.flag("--aug-plus", "v2 augmentation (blur, weaker hue jitter)");
  a.flag("--cos", "cosine learning-rate schedule (Fashion-MNIST default: on, unless --schedule is given)");
  a.flag("--recompute-bn-relu", "keep no inner BN+ReLU output of a residual block for backward; rebuild each then "
         "(the same step, less memory, one more elementwise pass per BN)");
  a.option("--recipe", "",
           "augmentation: v1 | v2 | small (default: v2 with --aug-plus, else v1; small for Fashion-MNIST)");
  a.option("--image-size", "224", "crop size in pixels (Fashion-MNIST default: 32)");
  a.option("--bn-splits", "auto",
           "BN groups per process (split-BN). auto: 8 on one process, the single-process twin of the authors' 8 "
           "GPUs' shuffle BN; 1 with several ranks, where each rank is one BN group as each GPU is there");
  a.option("--device", "auto", "cpu | cuda | auto (cuda when a GPU is usable)");
  a.option("--precision", "bf16", "on the GPU: bf16 (activations and conv weights; fp32 masters, BN and loss) | fp32");
  a.option("--out", "runs/moco", "folder for checkpoint.mocockpt and metrics.jsonl");
  a.option("--max-steps", "0", "stop after this many steps in total (0: no limit)");
  a.option("--save-every-steps", "0", "also checkpoint every N steps (0: only at the end of each epoch)");
  a.option("--knn-every", "0", "kNN monitor every N epochs (0: off)");
  a.option("--knn-k", "200", "kNN neighbours");
  a.option("--knn-t", "0.1", "kNN vote temperature");
  a.option("--knn-bank", "0", "train images in the kNN bank (0: all)");
  a.option("--knn-queries", "0", "test images scored by the kNN monitor (0: all)");
  a.option("--knn-feature", "backbone", "what the kNN monitor scores: backbone | head (the authors' CIFAR-10 demo)");
}

bool parse_train_options(int argc, char** argv, const Environment& env, TrainOptions& o) {
  Args a("moco train", "MoCo v1/v2 self-supervised pretraining.");
  declare_train_options(a);
  if (!a.parse(argc, argv, 2)) return false;
  o = TrainOptions();
  o.data = a.str("DATA");
  const bool fmnist = o.data.empty();
  if (fmnist)  // the small-image recipe's defaults (SPEC 2), unless the flag was given
    for (auto [flag, value] : {std::pair<const char*, const char*>{"--arch", "resnet18"}, {"--batch-size", "512"},
                               {"--lr", "0.06"}, {"--wd", "5e-4"}, {"--moco-k", "4096"}, {"--moco-m", "0.99"},
                               {"--moco-t", "0.1"}, {"--image-size", "32"}})
      a.set_default(flag, value);
  o.arch = a.str("--arch");
  o.width = (int)a.integer("--width", 1, 4096);
  o.stem = a.str("--stem");
  MOCO_CHECK(o.stem == "auto" || o.stem == "small" || o.stem == "imagenet", "--stem ", o.stem,
             " is not one of: auto, small, imagenet");
  o.workers = (int)a.integer("--workers", 1, 256);
  o.epochs = (int)a.integer("--epochs", 1, 100000);
  o.start_epoch = (int)a.integer("--start-epoch", 0, o.epochs);
  o.batch_size = a.integer("--batch-size", 1, 1 << 24);
  o.lr = a.real("--lr", 1e-9, 1e4);
  o.schedule = a.integers("--schedule");
  o.momentum = a.real("--momentum", 0, 1);
  o.weight_decay = a.real("--wd", 0, 1);
  o.print_freq = (int)a.integer("--print-freq", 1, 1 << 30);
  o.resume = a.str("--resume");
  o.world_flag = a.integer("--world-size", -1, 1 << 20);
  o.rank_flag = a.integer("--rank", -1, 1 << 20);
  o.dist_url = a.str("--dist-url");
  o.gpu = (int)a.integer("--gpu", -1, 1 << 16);
  o.multiprocessing_distributed = a.on("--multiprocessing-distributed");
  MOCO_CHECK(!(o.multiprocessing_distributed && o.gpu >= 0), "--gpu ", o.gpu, " picks the GPU of a single process; "
             "--multiprocessing-distributed gives each of its processes a GPU of its own: leave one out");
  if (o.multiprocessing_distributed && ranks_per_node_from_env(env) > 0) {
    // a process that `moco train --multiprocessing-distributed` started: its rank and its share of the node
    const LocalRankShare share = local_rank_share(env, o.world_flag, o.rank_flag, o.batch_size, o.workers);
    o.launch = share.launch;
    o.batch_size = share.batch_size;
    o.workers = share.workers;
  } else {
    o.launch = launch_from_env(env);  // ranks come from the launcher; the flags must agree
    if (!o.launch.note.empty()) std::fprintf(stderr, "launch: %s\n", o.launch.note.c_str());  // before any check
    o.starts_local_ranks = o.multiprocessing_distributed;
    if (o.starts_local_ranks)  // the parent, which starts the ranks (cmd_train) and trains on none
      MOCO_CHECK(o.launch.source == "single", "--multiprocessing-distributed starts the ranks of this node itself, "
                 "but ", o.launch.source, " already started ", o.launch.world, " rank(s): leave the flag out under a "
                 "launcher");
    else
      check_launch_flags(o.launch, o.world_flag, o.rank_flag, o.dist_url);
  }
  MOCO_CHECK(o.gpu < 0 || o.launch.world == 1, "--gpu ", o.gpu, " picks the GPU of a single process, but the "
             "launcher started ", o.launch.world, " ranks; each rank takes the GPU of its local rank");
  o.launch.gpu = o.gpu;
  o.seed = (uint64_t)a.integer("--seed", 0, INT64_MAX);
  o.moco_dim = (int)a.integer("--moco-dim", 1, 1 << 16);
  o.moco_k = a.integer("--moco-k", 1, 1ll << 32);
  o.moco_m = a.real("--moco-m", 0, 1);
  o.moco_t = a.real("--moco-t", 1e-6, 100);
  o.mlp = a.on("--mlp");
  o.recompute_bn_relu = a.on("--recompute-bn-relu");
  o.aug_plus = a.on("--aug-plus");
  o.cos = a.on("--cos") || (fmnist && !a.has("--schedule"));  // a given --schedule asks for steps
  // --aug-plus is v2's augmentation wherever it is given, as in main_moco.py (Fashion-MNIST included)
  o.recipe = a.has("--recipe") ? a.str("--recipe") : o.aug_plus ? "v2" : fmnist ? "small" : "v1";
  MOCO_CHECK(!o.aug_plus || o.recipe == "v2", "--aug-plus asks for the v2 augmentation, but --recipe is ", o.recipe,
             ": leave one out");
  o.image_size = (int)a.integer("--image-size", 8, 4096);
  o.bn_splits_auto = a.str("--bn-splits") == "auto";
  o.bn_splits = o.bn_splits_auto ? (o.launch.world == 1 ? 8 : 1) : (int)a.integer("--bn-splits", 1, 1 << 16);
  o.device = a.str("--device");
  if (o.gpu >= 0 && !a.has("--device")) o.device = "cuda";  // the authors' --gpu N trains on that GPU
  MOCO_CHECK(o.gpu < 0 || o.device == "cuda", "--gpu ", o.gpu, " names a GPU, but --device is ", o.device);
  o.precision = a.str("--precision");
  MOCO_CHECK(o.precision == "bf16" || o.precision == "fp32", "--precision ", o.precision, ": expected bf16 or fp32");
  o.out = a.str("--out");
  MOCO_CHECK(!o.out.empty(), "--out must name a folder, got an empty string");
  o.max_steps = a.integer("--max-steps", 0, INT64_MAX);
  o.save_every_steps = a.integer("--save-every-steps", 0, INT64_MAX);
  o.knn_every = (int)a.integer("--knn-every", 0, 1 << 20);
  o.knn_k = (int)a.integer("--knn-k", 1, 1 << 20);
  o.knn_t = a.real("--knn-t", 1e-6, 1e6);
  o.knn_bank = a.integer("--knn-bank", 0, INT64_MAX);
  o.knn_queries = a.integer("--knn-queries", 0, INT64_MAX);
  o.knn_feature = parse_feature_layer(a.str("--knn-feature"), "--knn-feature");
  // Checks that need several values, each naming them. The parent that --multiprocessing-distributed starts
  // ranks from makes them on each rank's share of the node's batch once it knows the GPUs (cmd_train).
  if (o.starts_local_ranks) return true;
  MOCO_CHECK(o.moco_k >= o.batch_size * o.launch.world, "--moco-k ", o.moco_k, " must be at least the global batch ",
             o.batch_size * o.launch.world, " (--batch-size ", o.batch_size, " x ", o.launch.world, " ranks)");
  MOCO_CHECK(o.batch_size % o.bn_splits == 0, "--batch-size ", o.batch_size, " does not split into --bn-splits ",
             o.bn_splits, " equal BN groups");
  return true;
}

}  // namespace moco
