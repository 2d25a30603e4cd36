// --multiprocessing-distributed: the plan of a node's ranks against main_moco.py's arithmetic (world = nodes x
// GPUs, rank = node x GPUs + GPU), and the starter run on /bin/sh copies that report what they were given.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "moco/error.h"
#include "moco/local_ranks.h"
#include "scoped_env.h"
#include "temp_dir.h"

using namespace moco;

namespace {

std::string error_of(int gpus, int64_t world, int64_t rank, const std::string& url) {
  try {
    plan_local_ranks(gpus, world, rank, url);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

std::vector<std::string> sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

}  // namespace

TEST(LocalRanks, PlanIsTheAuthorsArithmetic) {
  const LocalRanksPlan p = plan_local_ranks(8, 2, 1, "tcp://node0:10001");
  EXPECT_EQ(p.per_node, 8);
  EXPECT_EQ(p.nodes, 2);
  EXPECT_EQ(p.node_rank, 1);
  EXPECT_EQ(p.host, "node0");
  EXPECT_EQ(p.port, 10001);
  const Environment e = local_rank_environment(p, 3);
  EXPECT_EQ(e.at("RANK"), "11");  // 1 * 8 + 3
  EXPECT_EQ(e.at("WORLD_SIZE"), "16");
  EXPECT_EQ(e.at("LOCAL_RANK"), "3");
  EXPECT_EQ(e.at("MASTER_ADDR"), "node0");
  EXPECT_EQ(e.at("MASTER_PORT"), "10001");
  EXPECT_EQ(e.at("NCCL_COMM_ID"), "node0:10001");
  EXPECT_EQ(e.at("MOCO_RANKS_PER_NODE"), "8");
  // what the rank makes of it: the launch the engine reads, and the authors' share of the node
  const LocalRankShare s = local_rank_share(e, 2, 1, 256, 32);
  EXPECT_EQ(s.launch.rank, 11);
  EXPECT_EQ(s.launch.world, 16);
  EXPECT_EQ(s.launch.local_rank, 3);
  EXPECT_EQ(s.batch_size, 32);
  EXPECT_EQ(s.workers, 4);
  EXPECT_EQ(local_rank_share(e, 2, 1, 100, 7).batch_size, 12) << "int(100 / 8), as main_worker floors it";
  EXPECT_EQ(local_rank_share(e, 2, 1, 100, 7).workers, 1) << "ceil(7 / 8)";
}

TEST(LocalRanks, OneNodeNeedsNoFlags) {
  const LocalRanksPlan p = plan_local_ranks(4, -1, -1, "");
  EXPECT_EQ(p.nodes, 1);
  EXPECT_EQ(p.node_rank, 0);
  EXPECT_EQ(p.host, "127.0.0.1");
  EXPECT_GE(p.port, 1);
  EXPECT_LE(p.port, 65535);
  EXPECT_EQ(local_rank_environment(p, 0).at("WORLD_SIZE"), "4");
  EXPECT_EQ(ranks_per_node_from_env({}), 0);
}

TEST(LocalRanks, BadFlagsAreNamed) {
  EXPECT_NE(error_of(0, 1, 0, "").find("none is visible"), std::string::npos);
  EXPECT_NE(error_of(8, 2, -1, "tcp://a:1").find("give each node its --rank (0 to 1)"), std::string::npos);
  EXPECT_NE(error_of(8, 2, 2, "tcp://a:1").find("--rank 2: with --multiprocessing-distributed it is this node's"),
            std::string::npos);
  EXPECT_NE(error_of(8, 2, 0, "").find("give --dist-url tcp://HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of(8, 1, 0, "env://").find("--dist-url env://: expected tcp://HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of(8, 1, 0, "tcp://host:0").find("the port '0' is not in [1, 65535]"), std::string::npos);
  EXPECT_NE(error_of(8, 1, 0, "tcp://host:http").find("the port 'http'"), std::string::npos);
  EXPECT_NE(error_of(8, 0, 0, "").find("--world-size 0"), std::string::npos);
}

TEST(LocalRanks, EachCopyGetsItsOwnVariablesOnTopOfThisProcesssEnvironment) {
  test::TempDir dir;
  test::ScopedEnv kept("MOCO_TEST_KEPT", "kept");
  const int code = run_local_ranks(sh("echo \"$RANK $WORLD_SIZE $MOCO_TEST_KEPT\" > " + dir.path() + "/$LOCAL_RANK"), 3,
                                   [](int i) {
                                     return Environment{{"RANK", std::to_string(10 + i)}, {"WORLD_SIZE", "3"},
                                                        {"LOCAL_RANK", std::to_string(i)}};
                                   });
  EXPECT_EQ(code, 0);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(read_file(dir.file(std::to_string(i))), std::to_string(10 + i) + " 3 kept") << "copy " << i;
}

TEST(LocalRanks, AFailingCopyStopsTheOthersAndGivesItsStatus) {
  test::TempDir dir;
  // copy 1 fails once the others are ready; copies 0 and 2 would sleep a minute but note the SIGTERM and leave
  const std::string d = dir.path();
  const std::string script = "if [ $LOCAL_RANK = 1 ]; then while [ ! -e " + d + "/ready0 ] || [ ! -e " + d +
                             "/ready2 ]; do sleep 0.05; done; exit 3; fi; sleep 60 & p=$!; trap \"kill $p; echo "
                             "stopped > " + d + "/$LOCAL_RANK; exit 0\" TERM; touch " + d + "/ready$LOCAL_RANK; wait";
  const auto t0 = std::chrono::steady_clock::now();
  ::testing::internal::CaptureStderr();
  const int code = run_local_ranks(sh(script), 3, [](int i) { return Environment{{"LOCAL_RANK", std::to_string(i)}}; });
  const std::string said = ::testing::internal::GetCapturedStderr();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(code, 3);
  EXPECT_LT(s, 30.0) << "the sleeping copies were not stopped";
  EXPECT_NE(said.find("local rank 1 (pid "), std::string::npos) << said;
  EXPECT_NE(said.find("failed with exit status 3"), std::string::npos) << said;
  EXPECT_EQ(read_file(dir.file("0")), "stopped");
  EXPECT_EQ(read_file(dir.file("2")), "stopped");
}

TEST(LocalRanks, ACopyThatIgnoresTheStopIsKilledAfterTheGrace) {
  test::TempDir dir;
  // copy 0 fails once copy 1 ignores SIGTERM; copy 1 outlives the grace and is killed
  const std::string d = dir.path();
  const std::string script = "if [ $LOCAL_RANK = 0 ]; then while [ ! -e " + d + "/ready ]; do sleep 0.05; done; "
                             "exit 2; fi; trap '' TERM; touch " + d + "/ready; sleep 60";
  const auto t0 = std::chrono::steady_clock::now();
  const int code = run_local_ranks(sh(script), 2, [](int i) { return Environment{{"LOCAL_RANK", std::to_string(i)}}; },
                                   0.5);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(code, 2);
  EXPECT_GE(s, 0.5) << "the copy ended before the grace: it did not ignore SIGTERM";
  EXPECT_LT(s, 30.0) << "the copy that ignores SIGTERM was not killed";
}

TEST(LocalRanks, ACopyKilledBySigkillIsNamedWithTheOutOfMemoryHint) {
  // copy 1 kills itself as the out-of-memory killer would; copy 0 sleeps until it is stopped
  const std::string script = "if [ $LOCAL_RANK = 1 ]; then kill -9 $$; fi; sleep 60";
  ::testing::internal::CaptureStderr();
  const int code = run_local_ranks(sh(script), 2, [](int i) { return Environment{{"LOCAL_RANK", std::to_string(i)}}; },
                                   0.5);
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 128 + SIGKILL);
  EXPECT_NE(said.find("local rank 1 (pid "), std::string::npos) << said;
  EXPECT_NE(said.find("was killed by SIGKILL"), std::string::npos) << said;
  EXPECT_NE(said.find("out-of-memory killer"), std::string::npos) << said;
}

TEST(LocalRanks, CopiesStoppedByAPassedOnSignalAreNotStoppedAgain) {
  test::TempDir dir;
  // like a training rank: the first SIGTERM asks it to stop (it takes a moment, then exits 143), a second one
  // would end it at once (here: exit 99). Copy 0 stops quickly, copy 1 slowly; copy 1 must see one SIGTERM.
  const std::string d = dir.path();
  const std::string script = "n=0; sleep 60 & p=$!; trap 'n=$((n+1)); if [ $n -gt 1 ]; then kill $p; exit 99; fi; "
                             "kill $p' TERM; touch " + d + "/ready$LOCAL_RANK; wait; [ $LOCAL_RANK = 1 ] && sleep 1; "
                             "echo $n > " + d + "/$LOCAL_RANK; exit 143";
  std::thread signaller([&] {
    for (int tries = 0; tries < 1000; ++tries) {
      if (std::filesystem::exists(dir.file("ready0")) && std::filesystem::exists(dir.file("ready1"))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(getpid(), SIGTERM);
  });
  const int code = run_local_ranks(sh(script), 2, [](int i) { return Environment{{"LOCAL_RANK", std::to_string(i)}}; });
  signaller.join();
  EXPECT_EQ(code, 143);
  EXPECT_EQ(read_file(dir.file("0")), "1");
  EXPECT_EQ(read_file(dir.file("1")), "1") << "the slow copy was sent SIGTERM again when the quick one ended";
}

TEST(LocalRanks, SignalsArePassedOnToEveryCopy) {
  test::TempDir dir;
  // each copy says it is ready once its trap is set, then waits; SIGTERM makes it write and exit 143, as a
  // training rank does after its checkpoint
  const std::string script = "sleep 60 & p=$!; trap \"kill $p; echo got > " + dir.path() +
                             "/$LOCAL_RANK; exit 143\" TERM; touch " + dir.path() + "/ready$LOCAL_RANK; wait";
  std::thread signaller([&] {
    for (int tries = 0; tries < 1000; ++tries) {
      if (std::filesystem::exists(dir.file("ready0")) && std::filesystem::exists(dir.file("ready1"))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(getpid(), SIGTERM);  // to the parent only: the copies have process groups of their own
  });
  const int code = run_local_ranks(sh(script), 2, [](int i) { return Environment{{"LOCAL_RANK", std::to_string(i)}}; });
  signaller.join();
  EXPECT_EQ(code, 143);
  EXPECT_EQ(read_file(dir.file("0")), "got");
  EXPECT_EQ(read_file(dir.file("1")), "got");
}
