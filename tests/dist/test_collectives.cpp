// The semantics of every collective of the MPI communicator, each against values written down from the
// definition (every rank knows what every other rank sent, so it can compute the expected result itself).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "dist_common.h"
#include "moco/moco.h"
#include "../tiny_moco.h"

using namespace moco;
using namespace moco::test;

// What rank r contributes at position i: exact in float, so sums over ranks are exact too.
static float contribution(int r, int64_t i) { return (float)r + 0.5f * (float)i; }

TEST(DistCollectives, AllReduceSumAndMean) {
  MpiCommunicator comm = test_comm();
  const int w = comm.world_size();
  const int64_t n = 1000;
  std::vector<float> sum(n), mean(n);  // (n)
  for (int64_t i = 0; i < n; ++i) sum[i] = mean[i] = contribution(comm.rank(), i);
  comm.all_reduce_sum(sum.data(), n);
  comm.all_reduce_mean(mean.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    double expect = 0;  // sum over r of (r + 0.5 i)
    for (int r = 0; r < w; ++r) expect += contribution(r, i);
    ASSERT_EQ(sum[i], (float)expect) << "element " << i;
    ASSERT_FLOAT_EQ(mean[i], (float)(expect / w)) << "element " << i;
  }
}

TEST(DistCollectives, AllGatherIsInRankOrder) {
  MpiCommunicator comm = test_comm();
  const int w = comm.world_size();
  const int64_t n = 7;
  std::vector<float> send(n), recv(n * w, -1.f);  // (n), (W, n)
  for (int64_t i = 0; i < n; ++i) send[i] = 100.f * comm.rank() + (float)i;
  comm.all_gather(send.data(), n, recv.data());
  for (int r = 0; r < w; ++r)
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(recv[r * n + i], 100.f * r + (float)i) << "rank " << r << " row " << i;
}

TEST(DistCollectives, BroadcastFromTheLastRank) {
  MpiCommunicator comm = test_comm();
  const int root = comm.world_size() - 1;
  std::vector<int64_t> data(33, comm.rank());  // (33) only the root's values survive
  if (comm.rank() == root)
    for (size_t i = 0; i < data.size(); ++i) data[i] = (int64_t)(i * i) - 5;
  comm.broadcast(data.data(), data.size() * sizeof(int64_t), root);
  for (size_t i = 0; i < data.size(); ++i) ASSERT_EQ(data[i], (int64_t)(i * i) - 5);
  EXPECT_THROW(comm.broadcast(data.data(), 8, comm.world_size()), Error);
}

// any: one rank's true vote, whichever, is every rank's answer; no vote, no rank's.
TEST(DistCollectives, AnyIsTrueEverywhereWhenOneRankVotesTrue) {
  MpiCommunicator comm = test_comm();
  for (int voter = 0; voter < comm.world_size(); ++voter)
    EXPECT_TRUE(comm.any(comm.rank() == voter)) << "rank " << voter << " voted true";
  EXPECT_FALSE(comm.any(false));
}

TEST(DistCollectives, BarrierWaitsForTheSlowestRank) {
  MpiCommunicator comm = test_comm();
  using clock = std::chrono::steady_clock;
  comm.barrier();  // line up first
  const auto start = clock::now();
  if (comm.rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  comm.barrier();
  const double waited = std::chrono::duration<double>(clock::now() - start).count();
  EXPECT_GE(waited, 0.25) << "rank " << comm.rank() << " left the barrier before rank 0 arrived";
}

// Global row g = (g, g + 0.25, -g): recognisable wherever it lands.
static std::vector<float> my_rows(int rank, int64_t n, int64_t row) {
  std::vector<float> x((size_t)(n * row));  // (n, row)
  for (int64_t i = 0; i < n; ++i) {
    const float g = (float)(rank * n + i);
    x[i * row + 0] = g;
    x[i * row + 1] = g + 0.25f;
    x[i * row + 2] = -g;
  }
  return x;
}

static void expect_permuted(MpiCommunicator& comm, int64_t n, const std::vector<int64_t>& perm) {
  const int64_t row = 3;
  std::vector<float> send = my_rows(comm.rank(), n, row), recv((size_t)(n * row), -1.f);  // (n, row) each
  comm.permute_rows(send.data(), n, row, perm, recv.data());
  for (int64_t i = 0; i < n; ++i) {
    const float g = (float)perm[comm.rank() * n + i];
    ASSERT_EQ(recv[i * row + 0], g) << "row " << i;
    ASSERT_EQ(recv[i * row + 1], g + 0.25f) << "row " << i;
    ASSERT_EQ(recv[i * row + 2], -g) << "row " << i;
  }
}

TEST(DistCollectives, AllToAllByPermutation) {
  MpiCommunicator comm = test_comm();
  const int w = comm.world_size();
  for (int64_t n : {1, 3, 8}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    std::vector<int64_t> identity(n * w), shift(n * w);  // (W*n) each
    for (int64_t j = 0; j < n * w; ++j) {
      identity[j] = j;
      shift[j] = (j + n) % (n * w);  // every rank's whole batch goes to the previous rank
    }
    expect_permuted(comm, n, identity);
    expect_permuted(comm, n, shift);
    for (uint64_t seed = 0; seed < 5; ++seed) expect_permuted(comm, n, shared_permutation(n * w, seed));  // uneven counts
  }
}

TEST(DistCollectives, AllToAllWithUnevenCounts) {
  MpiCommunicator comm = test_comm();
  const int w = comm.world_size(), me = comm.rank();
  // rank r sends (r + d + 1) floats of value 1000 r + d to rank d
  std::vector<int64_t> sc(w), rc(w);  // (W) each
  std::vector<float> send, expect;
  for (int d = 0; d < w; ++d) {
    sc[d] = me + d + 1;
    rc[d] = d + me + 1;
    send.insert(send.end(), (size_t)sc[d], 1000.f * me + d);
    expect.insert(expect.end(), (size_t)rc[d], 1000.f * d + me);
  }
  std::vector<float> recv(expect.size(), -1.f);
  comm.all_to_all(send.data(), sc.data(), recv.data(), rc.data());
  EXPECT_EQ(recv, expect);
}

TEST(DistCollectives, ShuffleThenUnshuffleIsTheIdentity) {
  MpiCommunicator comm = test_comm();
  MocoConfig cfg = test::tiny_moco(4, 65536);
  Moco moco(cfg, comm);
  const int64_t n = 6, w = comm.world_size();
  Tensor x = Tensor::empty({n, 3, 2, 2}, DType::F32);  // (N, 3, 2, 2) image g filled with g + small offsets
  for (int64_t i = 0; i < n; ++i)
    for (int64_t e = 0; e < 12; ++e) x.data<float>()[i * 12 + e] = (float)(comm.rank() * n + i) + 0.01f * (float)e;
  for (uint64_t step = 0; step < 3; ++step) {
    moco.set_steps_done((int64_t)step);
    const std::vector<int64_t> perm = moco.draw_shuffle_permutation(n * w);  // rank 0's draw, broadcast
    std::vector<int64_t> check(perm);                                      // (W*N)
    comm.broadcast(check.data(), check.size() * sizeof(int64_t), 0);
    EXPECT_EQ(perm, check) << "ranks use different shuffle permutations";
    Tensor shuffled = moco.batch_shuffle(x, perm);  // (N, 3, 2, 2)
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(shuffled.data<float>()[i * 12], (float)perm[comm.rank() * n + i]) << "shuffled row " << i;
    Tensor back = moco.batch_unshuffle(shuffled, perm);
    for (int64_t e = 0; e < x.numel(); ++e) ASSERT_EQ(back.data<float>()[e], x.data<float>()[e]) << "element " << e;
  }
}
