// The emulated NCCL's blocking join at NCCL_COMM_ID (ncclCommInitRank without a non-blocking config): it runs
// the same threaded join as the non-blocking one and waits for it, so it returns only once every rank came or
// the join's limit passed, with the join's outcome. moco's own communicator joins non-blocking
// (GpuCommunicator.*); these hold the blocking call to the same join.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "include/nccl.h"
#include "moco/local_ranks.h"
#include "scoped_env.h"

using moco::test::ScopedEnv;

namespace {

std::string free_address() { return "127.0.0.1:" + std::to_string(moco::free_local_port()); }

}  // namespace

// Two ranks of this process, each on a thread of its own: both wait in the call until the other came, then find
// they share one GPU (the emulator shows one device, and both threads run on it), as real NCCL refuses it.
TEST(EmulatedNcclJoin, BlockingJoinWaitsForEveryRankAndReturnsItsOutcome) {
  ScopedEnv at("NCCL_COMM_ID", free_address().c_str());
  ScopedEnv limit("MOCO_EMU_NCCL_JOIN_TIMEOUT_S", "10");  // should rank 0 fail early, rank 1 does not wait 120 s
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  ncclResult_t result[2] = {ncclSuccess, ncclSuccess};
  std::thread rank1([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rank 0 must wait for it in the call
    ncclComm_t c = nullptr;
    result[1] = ncclCommInitRank(&c, 2, id, 1);
  });
  const auto start = std::chrono::steady_clock::now();
  ncclComm_t c = nullptr;
  result[0] = ncclCommInitRank(&c, 2, id, 0);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rank1.join();
  EXPECT_GE(waited, 0.25) << "rank 0 returned before rank 1 joined";
  EXPECT_EQ(result[0], ncclInvalidUsage) << ncclGetErrorString(result[0]);
  EXPECT_EQ(result[1], ncclInvalidUsage) << ncclGetErrorString(result[1]);
  EXPECT_EQ(c, nullptr) << "a failed blocking join hands out no communicator";
}

// A rank whose peer never comes: the blocking call returns a system error at the join's limit, not never.
TEST(EmulatedNcclJoin, BlockingJoinOfAnAbsentPeerEndsAtTheLimit) {
  ScopedEnv at("NCCL_COMM_ID", free_address().c_str());
  ScopedEnv limit("MOCO_EMU_NCCL_JOIN_TIMEOUT_S", "0.5");
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  const auto start = std::chrono::steady_clock::now();
  ncclComm_t c = nullptr;
  EXPECT_EQ(ncclCommInitRank(&c, 2, id, 0), ncclSystemError);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.4);
  EXPECT_LT(waited, 10.0);
  EXPECT_EQ(c, nullptr);
}
