// The collectives of data-parallel MoCo on GPU ranks over NCCL, reported like nccl-tests: time, algbw =
// bytes / time and busbw, the bandwidth each rank's links must sustain (all-reduce: algbw * 2(W-1)/W;
// all-to-all: algbw * (W-1)/W), comparable with the hardware's link bandwidth whatever W is.
//   - all-reduce (mean, as the gradients) of the ResNet-50 MoCo v2 gradients, 23,508,032 + 4,458,624 floats
//     (encoder + MLP head) in one call, and of one 25 MiB bucket (GradientBuckets' default);
//   - the all-to-all of the shuffled key images, N x 224 x 224 x 3 bytes per rank (the 8-bit views training
//     shuffles) for N = 32 and 256: as equal chunks (the raw all-to-all) and as permute_row_bytes with a
//     random shuffle (pack + all-to-all + unpack), as the MoCo step calls it.
// Every collective is checked across ranks first (values that only the right traffic produces); nothing is
// timed if any rank finds a wrong value. Times are the slowest rank's median.
//   build/bench_comm                  (one GPU: busbw is 0, the times measure only local copies)
//   mpirun -np 8 build/bench_comm     (the NCCL id travels over MPI)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../src/cuda/nccl_communicator.h"
#include "gpu_bench.h"
#include "moco/launch.h"
#include "moco/rng.h"

using namespace moco;
using cuda::DeviceBuffer;

namespace {

constexpr int64_t kGradFloats = 23508032 + 4458624;             // ResNet-50 encoder + MoCo v2 MLP head
constexpr int64_t kBucketFloats = (int64_t(25) << 20) / 4;      // 25 MiB
constexpr int64_t kImageBytes = 224 * 224 * 3;                  // one 8-bit key image (224, 224, 3)

// The first wrong value on this rank, or "" when all are right.
std::string first_mismatch(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 1e-5f * (1 + std::fabs(want[i]))))
      return std::string(what) + ": element " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
             std::to_string(want[i]);
  return "";
}

// Every collective with values that only the right traffic produces (small integers, exact in fp32; bytes).
std::string check_collectives(cuda::NcclCommunicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  const int64_t n = 1000003;
  std::vector<float> x((size_t)n), want((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    x[(size_t)i] = (float)(r + i % 13);
    want[(size_t)i] = (float)(w * (w - 1) / 2 + w * (i % 13));
  }
  DeviceBuffer<float> d(x, "check all_reduce");
  comm.all_reduce_sum(d.get(), n);
  comm.synchronize();
  std::string bad = first_mismatch(d.download(), want, "all_reduce_sum");
  if (!bad.empty()) return bad;

  d.upload(x);
  for (auto& v : want) v /= (float)w;
  comm.all_reduce_mean(d.get(), n);
  comm.synchronize();
  bad = first_mismatch(d.download(), want, "all_reduce_mean");
  if (!bad.empty()) return bad;

  const int64_t m = 1000;  // (m) per rank, gathered into (W, m)
  std::vector<float> mine((size_t)m), all((size_t)(w * m));
  for (int64_t i = 0; i < m; ++i) mine[(size_t)i] = (float)(r * m + i);
  for (int64_t i = 0; i < w * m; ++i) all[(size_t)i] = (float)i;
  DeviceBuffer<float> send(mine, "check all_gather send"), recv((size_t)(w * m), "check all_gather recv");
  recv.poison();
  comm.all_gather(send.get(), m, recv.get());
  comm.synchronize();
  bad = first_mismatch(recv.download(), all, "all_gather");
  if (!bad.empty()) return bad;

  // permute_rows with a shuffle drawn by rank 0 and broadcast (host memory), as the MoCo step does
  const int64_t rows = 5, row = 37;  // (rows, row) per rank; value = global row * 1000 + column
  std::vector<int64_t> perm((size_t)(w * rows));
  if (r == 0) {
    Rng rng(5, 0);
    for (int64_t i = 0; i < w * rows; ++i) perm[(size_t)i] = i;
    for (int64_t i = w * rows - 1; i > 0; --i) std::swap(perm[(size_t)i], perm[(size_t)rng.below((uint64_t)(i + 1))]);
  }
  comm.broadcast(perm.data(), perm.size() * sizeof(int64_t), 0);
  std::vector<float> rows_in((size_t)(rows * row)), rows_want((size_t)(rows * row));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < row; ++c) {
      rows_in[(size_t)(i * row + c)] = (float)((r * rows + i) * 1000 + c);
      rows_want[(size_t)(i * row + c)] = (float)(perm[(size_t)(r * rows + i)] * 1000 + c);
    }
  DeviceBuffer<float> ps(rows_in, "check permute send"), pr((size_t)(rows * row), "check permute recv");
  pr.poison();
  comm.permute_rows(ps.get(), rows, row, perm, pr.get());
  comm.synchronize();
  bad = first_mismatch(pr.download(), rows_want, "permute_rows");
  if (!bad.empty()) return bad;

  // the same shuffle on rows of 7 bytes (odd, so the single-byte gather), as the 8-bit key images move;
  // byte = (global row * 7 + column) mod 251
  const int64_t row_bytes = 7;
  std::vector<uint8_t> bytes_in((size_t)(rows * row_bytes)), bytes_want((size_t)(rows * row_bytes));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < row_bytes; ++c) {
      bytes_in[(size_t)(i * row_bytes + c)] = (uint8_t)(((r * rows + i) * row_bytes + c) % 251);
      bytes_want[(size_t)(i * row_bytes + c)] = (uint8_t)((perm[(size_t)(r * rows + i)] * row_bytes + c) % 251);
    }
  DeviceBuffer<uint8_t> bs(bytes_in, "check permute_row_bytes send"), br(bytes_in.size(), "check permute_row_bytes recv");
  br.poison();
  comm.permute_row_bytes(bs.get(), rows, row_bytes, perm, br.get());
  comm.synchronize();
  const std::vector<uint8_t> got = br.download();
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != bytes_want[i])
      return "permute_row_bytes: byte " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
             std::to_string(bytes_want[i]);
  // any: true on every rank when only the last votes true, false when none does
  const bool last = comm.rank() == comm.world_size() - 1;
  if (!comm.any(last)) return "any: the last rank's true vote did not reach rank " + std::to_string(comm.rank());
  if (comm.any(false)) return "any: true on rank " + std::to_string(comm.rank()) + " though no rank voted true";
  comm.barrier();
  return "";
}

// The slowest rank's value (over the host communicator; all ranks get it).
double slowest(Communicator& host, double ms) {
  std::vector<float> all((size_t)host.world_size());
  const float mine = (float)ms;
  host.all_gather(&mine, 1, all.data());
  double worst = 0;
  for (float v : all) worst = v > worst ? v : worst;
  return worst;
}

void report(bool root, const char* what, int64_t byte_count, double ms, double bus_factor) {
  if (!root) return;
  const double bytes = (double)byte_count;
  const double algbw = bytes / (ms * 1e-3) / 1e9;
  std::printf("%-44s %11.1f MB  %9.3f ms  algbw %7.1f GB/s  busbw %7.1f GB/s\n", what, bytes / 1e6, ms, algbw,
              algbw * bus_factor);
}

}  // namespace

int main() {
  if (bench::no_device()) return 0;
  try {
    const LaunchInfo li = launch_from_env(process_environment());
    std::unique_ptr<Communicator> host = make_cpu_communicator(li);  // MPI under mpirun -np W > 1
    cuda::select_device(li);
    // compute stream = the legacy default stream, on which bench::Timer records its events
    cuda::NcclCommunicator comm(li, nullptr, comm_timeout_seconds(process_environment()), host.get());
    const int w = comm.world_size();
    const bool root = comm.rank() == 0;

    const std::string bad = check_collectives(comm);
    if (!bad.empty()) std::printf("rank %d: %s; refusing to time\n", comm.rank(), bad.c_str());
    float failures = bad.empty() ? 0.f : 1.f;
    host->all_reduce_sum(&failures, 1);
    if (failures > 0) return 1;
    if (std::getenv("MOCO_BENCH_CHECK_ONLY")) {
      if (root) std::printf("collectives checked; MOCO_BENCH_CHECK_ONLY is set, so nothing is timed\n");
      return 0;
    }

    bench::Timer timer;
    if (root) {
      std::printf("device (rank 0): %s; %d rank(s), NCCL %d\n", cuda::device_description(0).c_str(), w,
                  NCCL_VERSION_CODE);
      if (w == 1)
        std::printf("world size 1: busbw is 0 by definition (no byte crosses a link); the times measure only the "
                    "local copy (or nothing, for an in-place all-reduce), not communication\n");
    }
    const double ar_factor = 2.0 * (w - 1) / w, a2a_factor = (double)(w - 1) / w;

    for (const int64_t n : {kGradFloats, kBucketFloats}) {
      DeviceBuffer<float> g((size_t)n, "gradients");
      g.fill_bytes(0);
      host->barrier();
      const double ms = slowest(*host, timer.median_ms([&] { comm.all_reduce_mean(g.get(), n); }));
      report(root, n == kGradFloats ? "all_reduce_mean ResNet-50 MoCo v2 gradients" : "all_reduce_mean one 25 MiB bucket",
             n * (int64_t)sizeof(float), ms, ar_factor);
    }
    for (const int64_t batch : {32, 256}) {
      const int64_t bytes = batch * kImageBytes;  // (N, 224, 224, 3) uint8 per rank
      DeviceBuffer<uint8_t> send((size_t)bytes, "keys"), recv((size_t)bytes, "shuffled keys");
      send.fill_bytes(0);
      // equal chunks through the float all-to-all (the bytes are what counts); (W * chunk) floats move
      const int64_t chunk = bytes / (int64_t)sizeof(float) / w;
      float* send_f = reinterpret_cast<float*>(send.get());
      float* recv_f = reinterpret_cast<float*>(recv.get());
      const std::vector<int64_t> counts((size_t)w, chunk);
      host->barrier();
      double ms = slowest(*host, timer.median_ms([&] {
        comm.all_to_all(send_f, counts.data(), recv_f, counts.data());
      }));
      const std::string a2a = "all_to_all keys N=" + std::to_string(batch) + " (equal chunks)";
      report(root, a2a.c_str(), chunk * w * (int64_t)sizeof(float), ms, a2a_factor);

      std::vector<int64_t> perm((size_t)(w * batch));
      Rng rng(11, 0);  // the same shuffle on every rank
      for (int64_t i = 0; i < w * batch; ++i) perm[(size_t)i] = i;
      for (int64_t i = w * batch - 1; i > 0; --i) std::swap(perm[(size_t)i], perm[(size_t)rng.below((uint64_t)(i + 1))]);
      host->barrier();
      ms = slowest(*host, timer.median_ms([&] {
        comm.permute_row_bytes(send.get(), batch, kImageBytes, perm, recv.get());
      }));
      const std::string pr = "permute_row_bytes keys N=" + std::to_string(batch) + " (shuffle)";
      report(root, pr.c_str(), bytes, ms, a2a_factor);
    }
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
