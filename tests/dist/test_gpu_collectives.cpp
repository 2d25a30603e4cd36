// Every collective of NcclCommunicator on W GPU ranks, each against values written down from its definition:
// every rank knows what every other rank sent, so it computes the expected result itself. The one-rank tests
// (tests/gpu/test_nccl_communicator.cpp) cannot tell an in-place reduction that does nothing from one that
// works, since over one rank the sum is the input; here it can. Outputs are poisoned first (NaN), so an
// element a collective forgot to write fails. Run as moco_emu_dist_tests (ctest emu.dist.gpu_equivalence_np2
// and _np4) on the CUDA emulator, and as `mpirun -np W build/moco_gpu_dist_tests` on a node with W GPUs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "../../src/cuda/nccl_communicator.h"
#include "gpu_ranks.h"
#include "gpu_test.h"

using namespace moco;
using namespace moco::test;
using cuda::DeviceBuffer;

namespace {

// What rank r contributes at position i: small multiples of 1/2, so that every sum over ranks is exact in
// float whatever order NCCL adds in, and the results can be compared bit for bit.
float contribution(int r, int64_t i) { return (float)r + 0.5f * (float)(i % 1000) - 7.f; }

// The W ranks' NCCL communicator on its own stream, after every rank found its GPU.
struct Ranks {
  MpiCommunicator host = test_comm();
  LaunchInfo li = launch_from_env(process_environment());
  int missing = ranks_without_their_gpu(host, li);
  std::unique_ptr<Stream> stream;
  std::unique_ptr<cuda::NcclCommunicator> nccl;
  Ranks() {
    if (missing > 0) return;
    stream = std::make_unique<Stream>();
    nccl = std::make_unique<cuda::NcclCommunicator>(li, stream->s, comm_timeout_seconds(process_environment()), &host);
  }
};

// Every rank takes the same path through a test (an assertion that returned early on one rank would leave the
// others waiting in the next collective): checks inside the tests count mismatches and assert after the loops.
#define MOCO_REQUIRE_RANKS(ranks)                                                                          \
  MOCO_REQUIRE_GPU();                                                                                      \
  Ranks ranks;                                                                                             \
  ASSERT_EQ(ranks.missing, 0) << ranks.missing << " rank(s) found no GPU of their own (see above)";       \
  ASSERT_EQ(ranks.li.world, ranks.host.world_size()) << "the launcher's world size";                      \
  if (ranks.li.world < 2) GTEST_SKIP() << "one rank: a reduction is its input; run under mpirun -np 2 or more"

}  // namespace

TEST(DistGpuCollectives, AllReduceSumAndMeanInPlace) {
  MOCO_REQUIRE_RANKS(ranks);
  cuda::NcclCommunicator& comm = *ranks.nccl;
  const int w = comm.world_size(), me = comm.rank();
  for (int64_t n : {1, 7, 4099}) {
    std::vector<float> mine((size_t)n), sum((size_t)n);  // (n) each
    for (int64_t i = 0; i < n; ++i) {
      mine[(size_t)i] = contribution(me, i);
      for (int r = 0; r < w; ++r) sum[(size_t)i] += contribution(r, i);
    }
    DeviceBuffer<float> s(mine, "sum"), m(mine, "mean"), started(mine, "started mean");  // (n) each, in place
    buffers_ready();
    comm.all_reduce_sum(s.get(), n);
    comm.all_reduce_mean(m.get(), n);
    comm.start_all_reduce_mean(started.get(), n);  // the gradient's path in the step: started, then joined
    comm.join();
    comm.synchronize();
    const std::vector<float> got_sum = s.download(), got_mean = m.download(), got_started = started.download();
    int64_t bad_sum = 0, bad_mean = 0, bad_started = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float mean = sum[(size_t)i] / (float)w;  // one rounding of the exact sum: what NCCL's average gives
      bad_sum += got_sum[(size_t)i] != sum[(size_t)i];
      bad_mean += std::fabs(got_mean[(size_t)i] - mean) > 1e-6f * (1.f + std::fabs(mean));
      bad_started += std::fabs(got_started[(size_t)i] - mean) > 1e-6f * (1.f + std::fabs(mean));
    }
    EXPECT_EQ(bad_sum, 0) << "all_reduce_sum elements that differ, n " << n;
    EXPECT_EQ(bad_mean, 0) << "all_reduce_mean elements that differ, n " << n;
    EXPECT_EQ(bad_started, 0) << "start_all_reduce_mean elements that differ, n " << n;
  }
}

TEST(DistGpuCollectives, AllGatherIsInRankOrder) {
  MOCO_REQUIRE_RANKS(ranks);
  cuda::NcclCommunicator& comm = *ranks.nccl;
  const int w = comm.world_size(), me = comm.rank();
  const int64_t n = 13;
  std::vector<float> mine((size_t)n);  // (n)
  for (int64_t i = 0; i < n; ++i) mine[(size_t)i] = contribution(me, i);
  DeviceBuffer<float> send(mine, "all_gather send"), recv((size_t)(w * n), "all_gather recv");  // (n), (W, n)
  recv.poison();
  buffers_ready();
  comm.all_gather(send.get(), n, recv.get());
  comm.synchronize();
  std::vector<float> want;  // (W, n)
  for (int r = 0; r < w; ++r)
    for (int64_t i = 0; i < n; ++i) want.push_back(contribution(r, i));
  EXPECT_EQ(recv.download(), want);
}

TEST(DistGpuCollectives, AllToAllWithUnevenCounts) {
  MOCO_REQUIRE_RANKS(ranks);
  cuda::NcclCommunicator& comm = *ranks.nccl;
  const int w = comm.world_size(), me = comm.rank();
  // rank r sends (r + d + 1) floats of value 1000 r + d to rank d
  std::vector<int64_t> sc((size_t)w), rc((size_t)w);  // (W) each
  std::vector<float> send, expect;
  for (int d = 0; d < w; ++d) {
    sc[(size_t)d] = me + d + 1;
    rc[(size_t)d] = d + me + 1;
    send.insert(send.end(), (size_t)sc[(size_t)d], 1000.f * (float)me + (float)d);
    expect.insert(expect.end(), (size_t)rc[(size_t)d], 1000.f * (float)d + (float)me);
  }
  DeviceBuffer<float> s(send, "all_to_all send"), r(expect.size(), "all_to_all recv");
  r.poison();
  buffers_ready();
  comm.all_to_all(s.get(), sc.data(), r.get(), rc.data());
  comm.synchronize();
  EXPECT_EQ(r.download(), expect);
}

// The key images' shuffle: rows of bytes (an odd row length, as a crop's bytes can be) moved by a permutation
// of the global batch, in place as the step does it; afterwards row i on rank r is global row perm[r n + i].
TEST(DistGpuCollectives, PermuteRowBytesInPlace) {
  MOCO_REQUIRE_RANKS(ranks);
  cuda::NcclCommunicator& comm = *ranks.nccl;
  const int w = comm.world_size(), me = comm.rank();
  const int64_t n = 5, row = 7;
  auto byte_of = [&](int64_t global_row, int64_t j) { return (uint8_t)(31 * global_row + 3 * j + 1); };
  for (uint64_t seed = 0; seed < 3; ++seed) {
    const std::vector<int64_t> perm = shared_permutation(w * n, seed);  // (W n) the same on every rank
    std::vector<uint8_t> mine((size_t)(n * row)), expect((size_t)(n * row));  // (n, row) each
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < row; ++j) {
        mine[(size_t)(i * row + j)] = byte_of(me * n + i, j);
        expect[(size_t)(i * row + j)] = byte_of(perm[(size_t)(me * n + i)], j);
      }
    DeviceBuffer<uint8_t> rows(mine, "rows");  // (n, row) sent and received in place
    buffers_ready();
    comm.permute_row_bytes(rows.get(), n, row, perm, rows.get());
    comm.synchronize();
    EXPECT_EQ(rows.download(), expect) << "permutation seed " << seed;
  }
}

TEST(DistGpuCollectives, BroadcastAndAny) {
  MOCO_REQUIRE_RANKS(ranks);
  cuda::NcclCommunicator& comm = *ranks.nccl;
  const int w = comm.world_size(), me = comm.rank(), root = w - 1;
  std::vector<int64_t> data(33, me);  // (33) host memory; only the root's values survive
  if (me == root)
    for (size_t i = 0; i < data.size(); ++i) data[i] = (int64_t)(i * i) - 5;
  comm.broadcast(data.data(), data.size() * sizeof(int64_t), root);
  for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(data[i], (int64_t)(i * i) - 5) << "element " << i;
  for (int voter = 0; voter < w; ++voter) EXPECT_TRUE(comm.any(me == voter)) << "rank " << voter << " voted true";
  EXPECT_FALSE(comm.any(false));
}
