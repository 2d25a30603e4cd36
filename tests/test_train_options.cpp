// `moco train`'s options against the values SPEC 2 and the authors' main_moco.py give (written out here, not
// taken from the code), and the learning-rate schedules against their formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "moco/error.h"
#include "moco/optim.h"
#include "moco/train.h"

using namespace moco;

namespace {

// Parses `moco train <args>` with the given launcher environment.
TrainOptions parse(std::vector<std::string> args, const Environment& env = {}) {
  args.insert(args.begin(), {"moco", "train"});
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  TrainOptions o;
  EXPECT_TRUE(parse_train_options((int)argv.size(), argv.data(), env, o));
  return o;
}

std::string error_of(std::vector<std::string> args, const Environment& env = {}) {
  try {
    parse(std::move(args), env);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(TrainOptions, DefaultsAreTheAuthors) {
  const TrainOptions o = parse({"/data/imagenet"});
  EXPECT_EQ(o.arch, "resnet50");
  EXPECT_EQ(o.epochs, 200);
  EXPECT_EQ(o.start_epoch, 0);
  EXPECT_EQ(o.batch_size, 256);
  EXPECT_EQ(o.lr, 0.03);
  EXPECT_EQ(o.schedule, (std::vector<int64_t>{120, 160}));
  EXPECT_FALSE(o.cos);
  EXPECT_EQ(o.momentum, 0.9);
  EXPECT_EQ(o.weight_decay, 1e-4);
  EXPECT_EQ(o.print_freq, 10);
  EXPECT_EQ(o.moco_dim, 128);
  EXPECT_EQ(o.moco_k, 65536);
  EXPECT_EQ(o.moco_m, 0.999);
  EXPECT_EQ(o.moco_t, 0.07);
  EXPECT_FALSE(o.mlp);
  EXPECT_FALSE(o.aug_plus);
  EXPECT_EQ(o.recipe, "v1");
  EXPECT_EQ(o.image_size, 224);
  // this engine's own: one process stands for the authors' 8 GPUs of 32 images (split-BN, SPEC 4)
  EXPECT_EQ(o.bn_splits, 8);
  EXPECT_EQ(o.launch.world, 1);
  EXPECT_FALSE(o.starts_local_ranks);
}

TEST(TrainOptions, V2IsTheAuthorsFourFlags) {
  const TrainOptions o = parse({"/data/imagenet", "--mlp", "--moco-t", "0.2", "--aug-plus", "--cos"});
  EXPECT_TRUE(o.mlp);
  EXPECT_EQ(o.moco_t, 0.2);
  EXPECT_EQ(o.recipe, "v2");
  EXPECT_TRUE(o.cos);
  EXPECT_EQ(o.lr, 0.03);
  EXPECT_EQ(o.moco_k, 65536);
}

TEST(TrainOptions, FashionMnistTakesTheSmallImageRecipe) {
  // SPEC 2's third column: ResNet-18, batch 512, lr 0.06, wd 5e-4, K 4096, m 0.99, T 0.1, cosine; 32 px
  const TrainOptions o = parse({});
  EXPECT_TRUE(o.data.empty());
  EXPECT_EQ(o.arch, "resnet18");
  EXPECT_EQ(o.batch_size, 512);
  EXPECT_EQ(o.lr, 0.06);
  EXPECT_EQ(o.weight_decay, 5e-4);
  EXPECT_EQ(o.moco_k, 4096);
  EXPECT_EQ(o.moco_m, 0.99);
  EXPECT_EQ(o.moco_t, 0.1);
  EXPECT_TRUE(o.cos);
  EXPECT_EQ(o.recipe, "small");
  EXPECT_EQ(o.image_size, 32);
  EXPECT_EQ(o.epochs, 200);
  // a flag given wins over the recipe's value, and a --schedule asks for steps instead of the cosine
  const TrainOptions s = parse({"--lr", "0.1", "--schedule", "50", "-a", "resnet34"});
  EXPECT_EQ(s.lr, 0.1);
  EXPECT_FALSE(s.cos);
  EXPECT_EQ(s.schedule, (std::vector<int64_t>{50}));
  EXPECT_EQ(s.arch, "resnet34");
  EXPECT_EQ(s.moco_k, 4096);
}

TEST(TrainOptions, AugPlusIsTheV2AugmentationWhereverItIsGiven) {
  EXPECT_EQ(parse({"--aug-plus"}).recipe, "v2") << "Fashion-MNIST with --aug-plus";
  EXPECT_EQ(parse({"/data", "--recipe", "small"}).recipe, "small");
  const std::string e = error_of({"/data", "--aug-plus", "--recipe", "v1"});
  EXPECT_NE(e.find("--aug-plus asks for the v2 augmentation, but --recipe is v1"), std::string::npos) << e;
}

TEST(TrainOptions, GpuNamesTheDeviceOfOneProcess) {
  const TrainOptions o = parse({"/data", "--gpu", "3"});
  EXPECT_EQ(o.gpu, 3);
  EXPECT_EQ(o.launch.gpu, 3);
  EXPECT_EQ(o.device, "cuda");
  EXPECT_EQ(parse({"/data"}).launch.gpu, -1);
  std::string e = error_of({"/data", "--gpu", "1", "--device", "cpu"});
  EXPECT_NE(e.find("--gpu 1 names a GPU, but --device is cpu"), std::string::npos) << e;
  e = error_of({"/data", "--gpu", "0"}, {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                                         {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_NE(e.find("--gpu 0 picks the GPU of a single process, but the launcher started 2 ranks"), std::string::npos)
      << e;
  e = error_of({"/data", "--gpu", "0", "--multiprocessing-distributed"});
  EXPECT_NE(e.find("--multiprocessing-distributed gives each of its processes a GPU"), std::string::npos) << e;
}

TEST(TrainOptions, MultiprocessingDistributedParentStartsTheRanks) {
  // the authors' README line on one node: the parent trains on nothing, so the batch checks wait for the ranks
  const TrainOptions o = parse({"/data", "-a", "resnet50", "--lr", "0.03", "--batch-size", "36", "--dist-url",
                                "tcp://localhost:10001", "--multiprocessing-distributed", "--world-size", "1",
                                "--rank", "0"});
  EXPECT_TRUE(o.starts_local_ranks);
  EXPECT_EQ(o.world_flag, 1);
  EXPECT_EQ(o.rank_flag, 0);
  EXPECT_EQ(o.dist_url, "tcp://localhost:10001");
  const std::string e = error_of({"/data", "--multiprocessing-distributed"},
                                 {{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                  {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}});
  EXPECT_NE(e.find("openmpi already started 4 rank(s)"), std::string::npos) << e;
  // one rank of mpirun too: its variables would reach the ranks it starts and win over theirs
  const std::string one = error_of({"/data", "--multiprocessing-distributed"},
                                   {{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"},
                                    {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}});
  EXPECT_NE(one.find("openmpi already started 1 rank(s)"), std::string::npos) << one;
}

TEST(TrainOptions, MultiprocessingDistributedRankTakesItsShareOfTheNode) {
  // rank 11 of 2 nodes x 8 GPUs, as its parent on node 1 starts it: main_worker's batch 256 / 8 = 32 and
  // workers ceil(30 / 8) = 4; each rank is one BN group
  const Environment env = {{"RANK", "11"},           {"WORLD_SIZE", "16"},         {"LOCAL_RANK", "3"},
                           {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "10001"},     {"NCCL_COMM_ID", "node0:10001"},
                           {"MOCO_RANKS_PER_NODE", "8"}};
  const std::vector<std::string> args = {"/data", "-b", "256", "-j", "30", "--multiprocessing-distributed",
                                         "--world-size", "2", "--rank", "1", "--dist-url", "tcp://node0:10001"};
  const TrainOptions o = parse(args, env);
  EXPECT_FALSE(o.starts_local_ranks);
  EXPECT_EQ(o.launch.rank, 11);
  EXPECT_EQ(o.launch.world, 16);
  EXPECT_EQ(o.launch.local_rank, 3);
  EXPECT_EQ(o.batch_size, 32);
  EXPECT_EQ(o.workers, 4);
  EXPECT_EQ(o.bn_splits, 1);
  std::vector<std::string> wrong_node = args;
  wrong_node[9] = "0";  // --rank 0, but RANK 11 sits on node 1
  std::string e = error_of(wrong_node, env);
  EXPECT_NE(e.find("rank 11 is not on node --rank 0"), std::string::npos) << e;
  std::vector<std::string> wrong_world = args;
  wrong_world[7] = "3";  // --world-size 3 nodes x 8 is not WORLD_SIZE 16
  e = error_of(wrong_world, env);
  EXPECT_NE(e.find("WORLD_SIZE=16 is not 3 node(s) x 8 processes"), std::string::npos) << e;
  e = error_of({"/data", "-b", "4", "--multiprocessing-distributed", "--world-size", "2", "--rank", "1"}, env);
  EXPECT_NE(e.find("--batch-size 4 is the node's batch"), std::string::npos) << e;
}

TEST(LearningRate, CosineAtIntegerEpochs) {
  // lr = base * 0.5 * (1 + cos(pi * epoch / epochs)) (SPEC 2), by hand at a few epochs of 200
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 0, 200, true, {}), 0.03f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 50, 200, true, {}), 0.0256066017f);   // 0.015 (1 + sqrt(2)/2)
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 100, 200, true, {}), 0.015f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 150, 200, true, {}), 0.00439339828f);  // 0.015 (1 - sqrt(2)/2)
  EXPECT_NEAR(learning_rate(0.03f, 199, 200, true, {}), 1.8505e-6, 1e-9);
  // the milestones do not apply to the cosine
  EXPECT_FLOAT_EQ(learning_rate(0.06f, 100, 200, true, {120, 160}), 0.03f);
}

TEST(LearningRate, StepDropsTenfoldAtEachMilestone) {
  const std::vector<int> m = {120, 160};
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 0, 200, false, m), 0.03f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 119, 200, false, m), 0.03f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 120, 200, false, m), 0.003f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 159, 200, false, m), 0.003f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 160, 200, false, m), 0.0003f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 199, 200, false, m), 0.0003f);
  EXPECT_FLOAT_EQ(learning_rate(0.03f, 199, 200, false, {}), 0.03f);
}
