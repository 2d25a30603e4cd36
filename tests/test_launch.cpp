// The launcher's environment read into {rank, world, local rank, source}, with fake environments; the flag
// checks; the watchdog's timeout variable; and the single-rank all-to-all, which must be a local permutation.
#include <gtest/gtest.h>

#include <string>

#include "moco/launch.h"
#include "moco/moco.h"
#include "tiny_moco.h"

using namespace moco;

static void expect_error_mentions(const Environment& env, const std::string& needle) {
  try {
    launch_from_env(env);
    FAIL() << "expected an error mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Launch, NoLauncherIsOneRank) {
  const LaunchInfo li = launch_from_env({{"HOME", "/root"}});
  EXPECT_EQ(li.rank, 0);
  EXPECT_EQ(li.world, 1);
  EXPECT_EQ(li.local_rank, 0);
  EXPECT_EQ(li.source, "single");
}

TEST(Launch, OpenMpi) {
  const LaunchInfo li = launch_from_env(
      {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "16"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(li.rank, 5);
  EXPECT_EQ(li.world, 16);
  EXPECT_EQ(li.local_rank, 1);
  EXPECT_EQ(li.source, "openmpi");
}

TEST(Launch, TorchrunNeedsTheRendezvousWithSeveralRanks) {
  Environment env{{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "3"}, {"MASTER_ADDR", "node0"},
                  {"MASTER_PORT", "29500"}};
  const LaunchInfo li = launch_from_env(env);
  EXPECT_EQ(li.rank, 3);
  EXPECT_EQ(li.world, 8);
  EXPECT_EQ(li.source, "torchrun");
  EXPECT_EQ(li.master_addr, "node0");
  EXPECT_EQ(li.master_port, 29500);
  env.erase("MASTER_ADDR");
  expect_error_mentions(env, "MASTER_ADDR");
  env["MASTER_ADDR"] = "node0";
  env["MASTER_PORT"] = "70000";
  expect_error_mentions(env, "MASTER_PORT=70000");
}

// srun's task: the step's task count is the world, not the job's (an srun may start fewer tasks than the job has)
TEST(Launch, Slurm) {
  const LaunchInfo li = launch_from_env({{"SLURM_PROCID", "9"}, {"SLURM_STEP_NUM_TASKS", "16"},
                                         {"SLURM_NTASKS", "32"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(li.rank, 9);
  EXPECT_EQ(li.world, 16);
  EXPECT_EQ(li.local_rank, 1);
  EXPECT_EQ(li.source, "slurm");
  EXPECT_EQ(li.note, "");
}

// A batch script's own process (sbatch without srun) sees the job's SLURM_NTASKS and SLURM_PROCID=0, but no
// task is started beside it: it is one rank, and a job of several tasks gets a note saying how to start them.
TEST(Launch, SlurmBatchScriptOutsideSrunIsOneRank) {
  const LaunchInfo li = launch_from_env({{"SLURM_JOB_ID", "77"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"},
                                         {"SLURM_LOCALID", "0"}});
  EXPECT_EQ(li.world, 1);
  EXPECT_EQ(li.rank, 0);
  EXPECT_EQ(li.source, "single");
  EXPECT_NE(li.note.find("SLURM_NTASKS=8"), std::string::npos) << li.note;
  EXPECT_NE(li.note.find("srun"), std::string::npos) << li.note;
  const LaunchInfo one = launch_from_env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_LOCALID", "0"}});
  EXPECT_EQ(one.world, 1);
  EXPECT_EQ(one.note, "");  // a job of one task: nothing is left out
}

TEST(Launch, OpenMpiWinsOverSlurmAndTorchrun) {
  // mpirun inside a SLURM allocation: SLURM_PROCID is the one srun task that started mpirun, not the rank
  const LaunchInfo li = launch_from_env({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                         {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"SLURM_PROCID", "0"},
                                         {"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_LOCALID", "0"}, {"RANK", "0"},
                                         {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}});
  EXPECT_EQ(li.source, "openmpi");
  EXPECT_EQ(li.rank, 2);
  EXPECT_EQ(li.world, 4);
  // torchrun inside a SLURM job: torchrun's variables name the rank
  const LaunchInfo t = launch_from_env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"},
                                        {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}, {"SLURM_PROCID", "0"},
                                        {"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_LOCALID", "0"}});
  EXPECT_EQ(t.source, "torchrun");
  EXPECT_EQ(t.rank, 1);
}

TEST(Launch, InconsistentValuesAreNamed) {
  expect_error_mentions({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                         {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}},
                        "OMPI_COMM_WORLD_RANK=4 is outside [0, OMPI_COMM_WORLD_SIZE=4)");
  expect_error_mentions({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "0"}, {"SLURM_LOCALID", "0"}},
                        "SLURM_STEP_NUM_TASKS=0 must be at least 1");
  expect_error_mentions({{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_LOCALID", "2"}},
                        "SLURM_LOCALID=2 is outside");
  expect_error_mentions({{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_LOCALID", "0"}}, "SLURM_PROCID missing");
  expect_error_mentions({{"RANK", "x1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK='x1' is not an integer");
  expect_error_mentions({{"RANK", "-1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK=-1 is outside");
  expect_error_mentions({{"RANK", "0"}, {"LOCAL_RANK", "0"}}, "WORLD_SIZE missing");
}

TEST(Launch, FlagsMustAgreeWithTheLauncher) {
  LaunchInfo li;
  li.rank = 1;
  li.world = 4;
  li.source = "openmpi";
  EXPECT_NO_THROW(check_launch_flags(li, -1, -1, ""));
  EXPECT_NO_THROW(check_launch_flags(li, 4, 1, "tcp://localhost:10001"));  // no MASTER_* to compare with
  EXPECT_THROW(check_launch_flags(li, 2, -1, ""), Error);
  EXPECT_THROW(check_launch_flags(li, -1, 0, ""), Error);
  li.source = "torchrun";
  li.master_addr = "node0";
  li.master_port = 29500;
  EXPECT_NO_THROW(check_launch_flags(li, 4, 1, "tcp://node0:29500"));
  EXPECT_THROW(check_launch_flags(li, 4, 1, "tcp://node1:29500"), Error);
}

TEST(Launch, CpuRanksNeedMpirun) {
  LaunchInfo li;
  EXPECT_EQ(make_cpu_communicator(li)->world_size(), 1);
  li.world = 8;
  li.source = "torchrun";
  try {
    make_cpu_communicator(li);
    FAIL() << "8 torchrun ranks on the CPU must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mpirun -np 8"), std::string::npos) << e.what();
  }
}

TEST(Launch, CommTimeout) {
  EXPECT_EQ(comm_timeout_seconds({}), 300);
  EXPECT_EQ(comm_timeout_seconds({{"MOCO_COMM_TIMEOUT_S", "2.5"}}), 2.5);
  EXPECT_THROW(comm_timeout_seconds({{"MOCO_COMM_TIMEOUT_S", "0"}}), Error);
  EXPECT_THROW(comm_timeout_seconds({{"MOCO_COMM_TIMEOUT_S", "5s"}}), Error);
}

// One rank: permute_rows is recv[i] = send[perm[i]] (an independent loop written here), and the MoCo
// shuffle followed by the unshuffle gives back the input.
TEST(SingleCommunicator, AllToAllIsALocalPermutation) {
  SingleCommunicator comm;
  const int64_t n = 5, row = 3;
  const std::vector<int64_t> perm = {3, 0, 4, 1, 2};
  std::vector<float> send(n * row), recv(n * row);  // (n, row)
  for (size_t i = 0; i < send.size(); ++i) send[i] = (float)i;
  comm.permute_rows(send.data(), n, row, perm, recv.data());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < row; ++c) EXPECT_EQ(recv[i * row + c], send[perm[i] * row + c]);
  EXPECT_THROW(comm.permute_rows(send.data(), n, row, {0, 1}, recv.data()), Error);
  EXPECT_THROW(comm.permute_rows(send.data(), n, row, {0, 1, 2, 3, 5}, recv.data()), Error);

  MocoConfig cfg = test::tiny_moco(4, 8);
  Moco m(cfg, comm);
  Tensor x = Tensor::empty({n, 2, 2}, DType::F32);  // (n, 2, 2)
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 0.5f * (float)i;
  Tensor s = m.batch_shuffle(x, perm);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(s.data<float>()[i * 4], x.data<float>()[perm[i] * 4]);
  Tensor back = m.batch_unshuffle(s, perm);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(back.data<float>()[i], x.data<float>()[i]);
}
