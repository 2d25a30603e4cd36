// The device communicators of one GPU rank (NcclCommunicator with world size 1, SingleDeviceCommunicator)
// against the host SingleCommunicator as the oracle: every collective, permute_rows on the same data and
// permutation as the host Communicator::permute_rows, and GradientBuckets end to end. Outputs are poisoned
// with NaN first, so an element a collective forgot to write fails. All comparisons are exact: with one rank
// every collective moves or keeps floats without arithmetic (ncclAvg over one rank divides by 1).
//
// Over one rank a sum is its input, so these cannot tell an in-place reduction that does nothing from one that
// works. The collectives over several ranks are tests/dist/test_gpu_collectives.cpp's: on the emulator's
// ranks in ctest, and `mpirun -np W build/moco_gpu_dist_tests` on a multi-GPU node (NCCL refuses two ranks
// on one device); `mpirun -np W build/bench_comm` there also checks them before timing them.
#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../../src/cuda/device_buffer.h"
#include "../../src/cuda/grad_buckets.h"
#include "../../src/cuda/nccl_communicator.h"
#include "../../src/cuda/single_device_communicator.h"
#include "../scoped_env.h"
#include "gpu_test.h"
#include "moco/host_layout.h"
#include "moco/local_ranks.h"
#include "moco/comm.h"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

std::vector<float> normal_floats(size_t n, uint64_t stream) { return moco::normal_floats(n, 4321, stream); }

// A random permutation of [0, n) (Fisher-Yates), as rank 0 draws the shuffle.
std::vector<int64_t> random_perm(int64_t n, uint64_t stream) {
  Rng r(99, stream);
  std::vector<int64_t> p((size_t)n);
  for (int64_t i = 0; i < n; ++i) p[(size_t)i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[(size_t)i], p[(size_t)r.below((uint64_t)(i + 1))]);
  return p;
}

// Bitwise equality, so a NaN left by the poison fails too.
void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(std::memcmp(&got[i], &want[i], sizeof(float)) == 0)
        << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { MOCO_CUDA_CHECK(cudaStreamCreate(&s)); }
  ~Stream() { cudaStreamDestroy(s); }
};

// Both device communicators of one rank, on `compute`.
std::vector<std::unique_ptr<cuda::DeviceCommunicator>> one_rank_communicators(cudaStream_t compute) {
  std::vector<std::unique_ptr<cuda::DeviceCommunicator>> v;
  // the product's watchdog limit (MOCO_COMM_TIMEOUT_S, default 300 s): on the CUDA emulator the queued kernels
  // run inside the bounded waits, and the largest case here takes a minute there
  v.push_back(std::make_unique<cuda::NcclCommunicator>(LaunchInfo{}, compute,
                                                       comm_timeout_seconds(process_environment())));
  v.push_back(std::make_unique<cuda::SingleDeviceCommunicator>(compute));
  return v;
}

const char* name_of(const cuda::DeviceCommunicator& c) {
  return dynamic_cast<const cuda::NcclCommunicator*>(&c) ? "NcclCommunicator" : "SingleDeviceCommunicator";
}

}  // namespace

TEST(GpuCommunicator, CollectivesOfOneRankMatchTheHostCommunicator) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  SingleCommunicator host;
  for (auto& comm : one_rank_communicators(stream.s)) {
    const std::string who = name_of(*comm);
    EXPECT_EQ(comm->rank(), 0) << who;
    EXPECT_EQ(comm->world_size(), 1) << who;
    EXPECT_EQ(comm->memory(), Device::CUDA) << who;
    EXPECT_EQ(host.memory(), Device::CPU);
    for (int64_t n : {1, 7, 4099}) {
      const std::vector<float> x = normal_floats((size_t)n, (uint64_t)n);
      // reductions, in place
      for (bool mean : {false, true}) {
        std::vector<float> want = x;
        DeviceBuffer<float> d(x, "reduced");
        buffers_ready();
        if (mean) {
          host.all_reduce_mean(want.data(), n);
          comm->all_reduce_mean(d.get(), n);
        } else {
          host.all_reduce_sum(want.data(), n);
          comm->all_reduce_sum(d.get(), n);
        }
        comm->synchronize();
        expect_same(d.download(), want, who + (mean ? " all_reduce_mean" : " all_reduce_sum"));
      }
      // all-gather and all-to-all into poisoned outputs
      {
        std::vector<float> want((size_t)n);
        host.all_gather(x.data(), n, want.data());
        DeviceBuffer<float> send(x, "all_gather send"), recv((size_t)n, "all_gather recv");
        recv.poison();
        buffers_ready();
        comm->all_gather(send.get(), n, recv.get());
        comm->synchronize();
        expect_same(recv.download(), want, who + " all_gather");
      }
      {
        const int64_t counts[1] = {n};
        std::vector<float> want((size_t)n);
        host.all_to_all(x.data(), counts, want.data(), counts);
        DeviceBuffer<float> send(x, "all_to_all send"), recv((size_t)n, "all_to_all recv");
        recv.poison();
        buffers_ready();
        comm->all_to_all(send.get(), counts, recv.get(), counts);
        comm->synchronize();
        expect_same(recv.download(), want, who + " all_to_all");
      }
    }
    // broadcast takes host memory and leaves the root's data as it is; barrier returns
    std::vector<int64_t> perm = random_perm(37, 5), sent = perm;
    comm->broadcast(perm.data(), perm.size() * sizeof(int64_t), 0);
    EXPECT_EQ(perm, sent) << who;
    EXPECT_THROW(comm->broadcast(perm.data(), perm.size() * sizeof(int64_t), 1), Error) << who;
    comm->barrier();
    // any: one rank's vote is the answer
    EXPECT_TRUE(comm->any(true)) << who;
    EXPECT_FALSE(comm->any(false)) << who;
    // what a rank sends to itself must be what it expects from itself (the rest only the peers can check)
    const int64_t bad[1] = {3}, good[1] = {4};
    DeviceBuffer<float> a(4, "a"), b(4, "b");
    EXPECT_THROW(comm->all_to_all(a.get(), bad, b.get(), good), Error) << who;
  }
}

// permute_rows on the device against the host Communicator::permute_rows of SingleCommunicator, on the same
// rows and permutation: row widths on the float4 path (multiples of 4) and off it, one row, the shuffle and
// the unshuffle, and recv aliasing send.
TEST(GpuCommunicator, PermuteRowsMatchesTheHostPermuteRows) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  SingleCommunicator host;
  for (auto& comm : one_rank_communicators(stream.s)) {
    const std::string who = name_of(*comm);
    struct Case { int64_t n, row; };
    for (const Case c : {Case{1, 5}, Case{7, 3}, Case{32, 128}, Case{9, 3 * 17 * 17}, Case{70000, 4}}) {
      const std::string what = who + " permute_rows n=" + std::to_string(c.n) + " row=" + std::to_string(c.row);
      const std::vector<float> x = normal_floats((size_t)(c.n * c.row), (uint64_t)c.n);  // (n, row)
      const std::vector<int64_t> perm = random_perm(c.n, (uint64_t)c.row);
      std::vector<int64_t> inverse((size_t)c.n);
      for (int64_t i = 0; i < c.n; ++i) inverse[(size_t)perm[(size_t)i]] = i;

      std::vector<float> want((size_t)(c.n * c.row)), back((size_t)(c.n * c.row));
      host.permute_rows(x.data(), c.n, c.row, perm, want.data());
      DeviceBuffer<float> send(x, "permute send"), recv((size_t)(c.n * c.row), "permute recv");
      recv.poison();
      buffers_ready();
      comm->permute_rows(send.get(), c.n, c.row, perm, recv.get());
      comm->synchronize();
      expect_same(recv.download(), want, what);

      // the unshuffle restores the input; here in place (recv aliases send)
      comm->permute_rows(recv.get(), c.n, c.row, inverse, recv.get());
      comm->synchronize();
      expect_same(recv.download(), x, what + " unshuffled in place");
    }
    DeviceBuffer<float> a(6, "a"), b(6, "b");
    EXPECT_THROW(comm->permute_rows(a.get(), 3, 2, {0, 1}, b.get()), Error) << who;
    EXPECT_THROW(comm->permute_rows(a.get(), 3, 2, {0, 1, 3}, b.get()), Error) << who;
  }
}

// permute_row_bytes (the key images as uint8) against a plain loop: recv row i = send row perm[i]. Widths on
// each of the gather's paths (16-byte, 4-byte and single-byte units), rows starting off alignment (one byte
// into the buffers), one row, and the unshuffle in place. Bytes are poisoned with 0xA5 first.
TEST(GpuCommunicator, PermuteRowBytesMovesWholeRowsOfAnyWidth) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  for (auto& comm : one_rank_communicators(stream.s)) {
    const std::string who = name_of(*comm);
    struct Case { int64_t n, row_bytes, offset; };
    for (const Case c : {Case{1, 3, 0}, Case{5, 1, 0}, Case{7, 105, 0}, Case{9, 48, 0}, Case{6, 12, 0},
                         Case{8, 48, 1}, Case{4, 3 * 16 * 16, 0}, Case{3, 3 * 16 * 16, 1}}) {
      const std::string what = who + " permute_row_bytes n=" + std::to_string(c.n) + " row_bytes=" +
                               std::to_string(c.row_bytes) + " offset=" + std::to_string(c.offset);
      const size_t bytes = (size_t)(c.n * c.row_bytes);
      std::vector<uint8_t> x(bytes + (size_t)c.offset);  // (offset + n * row_bytes)
      Rng r(17, (uint64_t)c.row_bytes);
      for (auto& b : x) b = (uint8_t)r.below(256);
      const std::vector<int64_t> perm = random_perm(c.n, (uint64_t)(c.row_bytes + c.offset));
      std::vector<uint8_t> want(bytes);  // (n, row_bytes)
      for (int64_t i = 0; i < c.n; ++i)
        std::memcpy(&want[(size_t)(i * c.row_bytes)], &x[(size_t)(c.offset + perm[(size_t)i] * c.row_bytes)],
                    (size_t)c.row_bytes);
      std::vector<int64_t> inverse((size_t)c.n);
      for (int64_t i = 0; i < c.n; ++i) inverse[(size_t)perm[(size_t)i]] = i;

      DeviceBuffer<uint8_t> send(x, "permute send");
      DeviceBuffer<uint8_t> recv(std::vector<uint8_t>(bytes + (size_t)c.offset, 0xA5), "permute recv");
      buffers_ready();
      comm->permute_row_bytes(send.get() + c.offset, c.n, c.row_bytes, perm, recv.get() + c.offset);
      comm->synchronize();
      std::vector<uint8_t> got = recv.download();
      ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + c.offset)) << what;

      comm->permute_row_bytes(recv.get() + c.offset, c.n, c.row_bytes, inverse, recv.get() + c.offset);
      comm->synchronize();
      got = recv.download();
      ASSERT_TRUE(std::equal(x.begin() + c.offset, x.end(), got.begin() + c.offset)) << what << " unshuffled in place";
    }
    DeviceBuffer<uint8_t> a(6, "a"), b(6, "b");
    EXPECT_THROW(comm->permute_row_bytes(a.get(), 3, 2, {0, 1}, b.get()), Error) << who;
  }
}

// The shuffle started before other work (as the step starts the key images' shuffle before the query forward):
// the caller may overwrite `send` on the compute stream at once, and `recv` holds the permuted rows once the
// compute stream has joined. Two started back to back: the second refills the communicator's staging buffers,
// which the first may still be reading on NCCL's stream; the second shuffles its rows in place (send == recv).
// The emulator's stream model runs the streams in the most hostile order the events allow, so a missing wait
// shows here (on a device the race would rarely show at this size).
TEST(GpuCommunicator, StartedPermuteIsReadyAfterJoin) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  for (auto& comm : one_rank_communicators(stream.s)) {
    const std::string who = name_of(*comm);
    const int64_t n = 6, row_bytes = 40;
    const size_t bytes = (size_t)(n * row_bytes);
    std::vector<uint8_t> x(bytes), y(bytes);  // (n, row_bytes) each
    Rng r(19, 0);
    for (auto& b : x) b = (uint8_t)r.below(256);
    for (auto& b : y) b = (uint8_t)r.below(256);
    const std::vector<int64_t> p1 = random_perm(n, 1), p2 = random_perm(n, 2);
    auto permuted = [&](const std::vector<uint8_t>& v, const std::vector<int64_t>& perm) {
      std::vector<uint8_t> out(bytes);  // (n, row_bytes)
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(&out[(size_t)(i * row_bytes)], &v[(size_t)(perm[(size_t)i] * row_bytes)], (size_t)row_bytes);
      return out;
    };
    DeviceBuffer<uint8_t> send1(x, "send 1"), send2(y, "send 2 and recv 2"), recv1(bytes, "recv 1");
    DeviceBuffer<uint8_t> seen1(bytes, "recv 1 as the compute stream sees it"), seen2(bytes, "recv 2 likewise");
    MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads ran on the legacy stream
    comm->start_permute_row_bytes(send1.get(), n, row_bytes, p1, recv1.get());
    MOCO_CUDA_CHECK(cudaMemsetAsync(send1.get(), 0, bytes, stream.s));  // allowed at once: send is read in order
    comm->start_permute_row_bytes(send2.get(), n, row_bytes, p2, send2.get());
    comm->join();
    MOCO_CUDA_CHECK(cudaMemcpyAsync(seen1.get(), recv1.get(), bytes, cudaMemcpyDeviceToDevice, stream.s));
    MOCO_CUDA_CHECK(cudaMemcpyAsync(seen2.get(), send2.get(), bytes, cudaMemcpyDeviceToDevice, stream.s));
    comm->synchronize();
    EXPECT_EQ(seen1.download(), permuted(x, p1)) << who << ": the first shuffle";
    EXPECT_EQ(seen2.download(), permuted(y, p2)) << who << ": the second shuffle";
  }
}

// Marks in backward's order (high offsets first, uneven pieces): each bucket is launched once, as soon as it is
// full; finish() launches nothing more when everything was marked, launches the rest when not; with one rank
// the mean leaves the gradients bit for bit as they were.
TEST(GpuCommunicator, GradientBucketsLaunchEachBucketOnceAndKeepOneRankGradients) {
  MOCO_REQUIRE_GPU();
  Stream stream;
  for (auto& comm : one_rank_communicators(stream.s)) {
    const std::string who = name_of(*comm);
    const int64_t n = 1000003;  // 4 buckets of 1 MiB (262,144 floats), the last one shorter
    const std::vector<float> g = normal_floats((size_t)n, 77);
    DeviceBuffer<float> grad(g, "flat gradients");
    buffers_ready();
    cuda::GradientBuckets buckets(*comm, grad.get(), n, size_t(1) << 20);
    ASSERT_EQ(buckets.plan().num_buckets(), 4) << who;

    // step 1: everything marked, from the end, in pieces of 100,000 floats (they straddle bucket borders)
    int64_t expected = 0;
    for (int64_t end = n; end > 0; end -= 100000) {
      const int64_t begin = end - 100000 > 0 ? end - 100000 : 0;
      buckets.mark_ready(begin, end);
      // the buckets completely inside [begin, n) are out; bucket k is [n - (k+1)B, n - kB) clamped at 0
      expected = 0;
      for (int k = 0; k < 4; ++k) expected += buckets.plan().bucket(k).begin >= begin;
      ASSERT_EQ(buckets.launches(), expected) << who << " after marking [" << begin << ", " << end << ")";
    }
    EXPECT_EQ(buckets.launches(), 4) << who;
    buckets.finish();
    EXPECT_EQ(buckets.launches(), 4) << who << ": finish() relaunched a bucket";

    // step 2: only the last bucket's range marked; finish() launches the other three
    buckets.mark_ready(buckets.plan().bucket(0).begin, n);
    EXPECT_EQ(buckets.launches(), 5) << who;
    buckets.finish();
    EXPECT_EQ(buckets.launches(), 8) << who;

    comm->synchronize();
    expect_same(grad.download(), g, who + " gradients after two bucketed all-reduces");
  }
}

TEST(GpuCommunicator, LaunchErrorsNameTheFix) {
  MOCO_REQUIRE_GPU();
  // one rank per GPU: a local rank past the visible devices is refused before anything is created
  LaunchInfo li;
  li.world = 8;
  li.rank = li.local_rank = 5;
  EXPECT_EQ(cuda::device_of_rank(li, 8), 5);
  try {
    cuda::device_of_rank(li, 4);
    FAIL() << "local rank 5 of a process that sees 4 GPUs was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("local rank 5 but this process sees 4 CUDA devices"), std::string::npos)
        << e.what();
  }
  // a launcher that binds each rank to its own GPU shows it just that one, as device 0
  EXPECT_EQ(cuda::device_of_rank(li, 1), 0);
  if (cuda::device_count() == 1) {
    EXPECT_EQ(cuda::select_device(li), 0) << "select_device follows device_of_rank";
  }
  // --gpu N: one process on the device it names, whatever it sees, and a number past them is refused
  LaunchInfo one;
  one.gpu = 2;
  EXPECT_EQ(cuda::device_of_rank(one, 4), 2);
  try {
    cuda::device_of_rank(one, 1);
    FAIL() << "--gpu 2 in a process that sees 1 GPU was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu 2 but this process sees 1 CUDA device"), std::string::npos) << e.what();
  }
  // several ranks with neither a host communicator nor NCCL_COMM_ID: no way to share the NCCL id
  test::ScopedEnv no_comm_id("NCCL_COMM_ID", nullptr);
  LaunchInfo two;
  two.world = 2;
  two.source = "torchrun";
  try {
    cuda::NcclCommunicator comm(two, nullptr, 60.0);
    FAIL() << "an NCCL communicator of 2 ranks was made without a rendezvous";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL_COMM_ID"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mpirun"), std::string::npos) << e.what();
  }
}

// Rank 0 of 2 whose peer never starts: joining returns at once (non-blocking communicator) and is waited for
// under the watchdog, so the constructor throws after the timeout, naming the join and the limit, instead of
// blocking inside NCCL for ever. The peer is simply absent at NCCL_COMM_ID, on a GPU and on the emulator (whose
// NCCL joins there over TCP, on a thread of its own, as NCCL does).
TEST(GpuCommunicator, ARankThatNeverJoinsEndsTheWaitAtTheTimeout) {
  MOCO_REQUIRE_GPU();
  const std::string address = "127.0.0.1:" + std::to_string(free_local_port());
  test::ScopedEnv comm_id("NCCL_COMM_ID", address.c_str());
  LaunchInfo li;
  li.world = 2;
  li.source = "torchrun";
  const auto start = std::chrono::steady_clock::now();
  try {
    cuda::NcclCommunicator comm(li, nullptr, 1.0);
    FAIL() << "rank 0 of 2 joined without rank 1";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ncclCommInitRank"), std::string::npos) << what;
    EXPECT_NE(what.find("did not complete within 1.0"), std::string::npos) << what;
    EXPECT_NE(what.find("NCCL_COMM_ID"), std::string::npos) << what;
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 1.0);
  EXPECT_LT(waited, 30.0) << "the abort after the timeout took too long";
}
