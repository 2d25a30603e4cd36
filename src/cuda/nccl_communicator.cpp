// NcclCommunicator: collectives on a dedicated stream, ordered with the compute stream by events, and a
// polling watchdog wherever the host waits (nccl_communicator.h).
#include "nccl_communicator.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "row_gather.cuh"

namespace moco::cuda {

static_assert(NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0),
              "non-blocking communicators, ncclInProgress and ncclCommFinalize need NCCL 2.14 or later");

namespace {

// How this rank obtains the NCCL unique id (see the header's list).
enum class IdSource { Local, Bootstrap, CommIdEnv };

IdSource id_source(const LaunchInfo& li, const Communicator* bootstrap) {
  if (li.world == 1) return IdSource::Local;
  if (bootstrap && bootstrap->world_size() > 1) {
    MOCO_CHECK(bootstrap->world_size() == li.world && bootstrap->rank() == li.rank, "NCCL bootstrap: the host "
               "communicator is rank ", bootstrap->rank(), " of ", bootstrap->world_size(), " but the launcher (",
               li.source, ") says rank ", li.rank, " of ", li.world);
    MOCO_CHECK(bootstrap->memory() == Device::CPU, "NCCL bootstrap: the host communicator must take host memory");
    return IdSource::Bootstrap;
  }
  const char* env = std::getenv("NCCL_COMM_ID");
  MOCO_CHECK(env && *env, "GPU rank ", li.rank, " of ", li.world, " (", li.source, " launch) has no way to share the "
             "NCCL unique id: start the ranks with mpirun (the id then travels over MPI), or set "
             "NCCL_COMM_ID=<rank-0 host>:<free port> identically for every rank (NCCL's own rendezvous; the port "
             "must differ from MASTER_PORT, which torchrun's own rendezvous uses)");
  return IdSource::CommIdEnv;
}

std::string nccl_text(ncclResult_t st) { return ncclGetErrorString(st); }

// Between two polls of a wait: spin briefly (collectives on a quiet node finish in microseconds), then leave
// the core to others.
void pause(int polls) {
  if (polls < 1000)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 10000 ? 20 : 200));
}

// NCCL's answer when two ranks share a GPU ("Duplicate GPU detected"), which a launch can cause.
constexpr const char* kSharedGpu = "; NCCL refuses two ranks on one GPU: give each rank its own";

size_t as_size(int64_t n, const char* what) {
  MOCO_CHECK(n >= 0, "NCCL ", what, ": count ", n, " is negative");
  return (size_t)n;
}

}  // namespace

NcclCommunicator::NcclCommunicator(const LaunchInfo& li, cudaStream_t compute, double timeout_s,
                                   Communicator* bootstrap)
    : rank_(li.rank), world_(li.world), timeout_s_(timeout_s), compute_(compute) {
  MOCO_CHECK(timeout_s > 0, "communicator timeout must be > 0 seconds, got ", timeout_s);
  MOCO_CHECK(li.world >= 1 && li.rank >= 0 && li.rank < li.world, "NCCL communicator: rank ", li.rank,
             " is outside [0, ", li.world, ")");
  const IdSource source = id_source(li, bootstrap);  // before any device work: a bad launch fails fast
  device_ = select_device(li);
#if CUDART_VERSION >= 12080  // cudaStreamGetDevice is CUDA 12.8's
  if (compute) {
    int stream_device = -1;
    MOCO_CUDA_CHECK(cudaStreamGetDevice(compute, &stream_device));
    MOCO_CHECK(stream_device == device_, "NCCL communicator for rank ", rank_, " (device ", device_,
               ") was given a compute stream of device ", stream_device, "; call cuda::select_device before "
               "creating the stream");
  }
#endif
  try {
    // non-blocking: the comm stream must not serialise with the legacy default stream, or nothing overlaps
    MOCO_CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
    MOCO_CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
    MOCO_CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
    MOCO_CUDA_CHECK(cudaEventCreateWithFlags(&permute_done_, cudaEventDisableTiming));
    barrier_word_ = DeviceBuffer<float>(1, "barrier word");
    // the barrier sums it in place: 0 stays 0 (on the comm stream, which does not wait for the legacy one)
    MOCO_CUDA_CHECK(cudaMemsetAsync(barrier_word_.get(), 0, sizeof(float), comm_stream_));

    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (source == IdSource::Bootstrap) {
      if (rank_ == 0) MOCO_NCCL_CHECK(ncclGetUniqueId(&id));
      bootstrap->broadcast(&id, sizeof id, 0);
    } else {
      // Local, or NCCL_COMM_ID: NCCL then fills the id from the variable on every rank
      MOCO_NCCL_CHECK(ncclGetUniqueId(&id));
    }
    // Non-blocking: joining, and later the connections NCCL makes at a peer's first collective, return at once
    // (ncclInProgress) and are waited for under the watchdog (settle), so a rank that never arrives ends the
    // others' wait after MOCO_COMM_TIMEOUT_S instead of blocking them inside NCCL for ever.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t st = ncclCommInitRankConfig(&comm_, world_, id, rank_, &config);
    const std::string hint = std::string(source == IdSource::CommIdEnv
                                             ? "; check that NCCL_COMM_ID names rank 0's host and a free port"
                                             : "") +
                             " (NCCL_DEBUG=WARN prints NCCL's reason)";
    if (st != ncclSuccess && st != ncclInProgress)
      fail("ncclCommInitRank(rank ", rank_, " of ", world_, ", device ", device_, ") failed: ", nccl_text(st),
           st == ncclInvalidUsage ? kSharedGpu : "", hint);
    // a non-blocking join reports its failures here, two ranks on one GPU among them
    settle("ncclCommInitRank (waiting for every rank to join)", hint, kSharedGpu);
  } catch (...) {
    release();
    throw;
  }
}

void NcclCommunicator::release() noexcept {
  if (comm_) {
    // A clean end: nothing queued here, and finalizing (which flushes this rank's NCCL work and, in recent
    // NCCL, meets the node's other ranks) completes within the limit; then destroy frees without blocking.
    // Otherwise (an exception left a collective unfinished, or a peer is gone) abort, so the process can exit.
    bool quiet = comm_stream_ && cudaStreamQuery(comm_stream_) == cudaSuccess;
    if (quiet) {
      const ncclResult_t f = ncclCommFinalize(comm_);
      quiet = f == ncclSuccess || f == ncclInProgress;
    }
    if (quiet) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
      ncclResult_t state = ncclInProgress;
      while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
             std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      quiet = state == ncclSuccess;
    }
    if (quiet)
      ncclCommDestroy(comm_);
    else
      ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  if (compute_ready_) cudaEventDestroy(compute_ready_);
  if (comm_done_) cudaEventDestroy(comm_done_);
  if (permute_done_) cudaEventDestroy(permute_done_);
  if (comm_stream_) cudaStreamDestroy(comm_stream_);
  compute_ready_ = comm_done_ = permute_done_ = nullptr;
  comm_stream_ = nullptr;
  cudaGetLastError();  // a query's "not ready" must not surface at the next unrelated check
}

NcclCommunicator::~NcclCommunicator() { release(); }

void NcclCommunicator::abandon() noexcept {
  broken_ = true;
  if (comm_) ncclCommAbort(comm_);  // cancels this rank's queued NCCL kernels and returns without the peers
  comm_ = nullptr;
  cudaGetLastError();
}

void NcclCommunicator::check_usable(const char* what) const {
  MOCO_CHECK(!broken_ && comm_, "NCCL ", what, " on rank ", rank_, " of ", world_, ": the communicator was aborted "
             "after an earlier error (reported first); the ranks no longer agree, so the run cannot continue");
}

void NcclCommunicator::comm_waits_for_compute() {
  MOCO_CUDA_CHECK(cudaEventRecord(compute_ready_, compute_));
  MOCO_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0));
}

void NcclCommunicator::compute_waits_for_comm() {
  MOCO_CUDA_CHECK(cudaEventRecord(comm_done_, comm_stream_));
  MOCO_CUDA_CHECK(cudaStreamWaitEvent(compute_, comm_done_, 0));
}

void NcclCommunicator::abort_and_fail(const char* what, const std::string& why) {
  broken_ = true;
  if (comm_) ncclCommAbort(comm_);  // frees the GPU from the stuck collective; its result no longer matters
  comm_ = nullptr;
  fail("NCCL ", what, " on rank ", rank_, " of ", world_, ": ", why);
}

void NcclCommunicator::check(ncclResult_t st, const char* what) {
  if (st == ncclInProgress) return settle(what, "", "");
  if (st != ncclSuccess)  // the ranks may now disagree on what was issued: nothing after this can be trusted
    abort_and_fail(what, nccl_text(st) + " (" + ncclGetLastError(comm_) + ")");
}

void NcclCommunicator::settle(const char* what, const std::string& hint, const char* if_invalid_usage) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (int polls = 0;; ++polls) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
    if (q != ncclSuccess) abort_and_fail(what, "ncclCommGetAsyncError failed: " + nccl_text(q) + hint);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress)
      abort_and_fail(what, nccl_text(state) + " (" + ncclGetLastError(comm_) + ")" +
                               (state == ncclInvalidUsage ? if_invalid_usage : "") + hint);
    if (std::chrono::duration<double>(clock::now() - start).count() > timeout_s_)
      abort_and_fail(what, "did not complete within " + std::to_string(timeout_s_) +
                               " s (MOCO_COMM_TIMEOUT_S): another rank died, hangs or never started" + hint);
    pause(polls);
  }
}

void NcclCommunicator::wait_bounded(const char* what, const std::function<cudaError_t()>& query) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (int polls = 0;; ++polls) {
    const cudaError_t st = query();
    if (st == cudaSuccess) return;
    cudaGetLastError();  // "not ready" is no error: clear it so the next checked call does not report it
    if (st != cudaErrorNotReady)
      abort_and_fail(what, std::string("CUDA error while waiting: ") + cudaGetErrorString(st));
    ncclResult_t async = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &async);
    if (q != ncclSuccess) abort_and_fail(what, "ncclCommGetAsyncError failed: " + nccl_text(q));
    if (async != ncclSuccess && async != ncclInProgress)
      abort_and_fail(what, "NCCL reported an asynchronous error: " + nccl_text(async) + " (" +
                               ncclGetLastError(comm_) + ")");
    const double waited = std::chrono::duration<double>(clock::now() - start).count();
    if (waited > timeout_s_)
      abort_and_fail(what, "did not complete within " + std::to_string(timeout_s_) +
                               " s (MOCO_COMM_TIMEOUT_S): another rank died, hangs or called a different collective");
    pause(polls);
  }
}

void NcclCommunicator::all_reduce_sum(float* data, int64_t n) {
  check_usable("all_reduce_sum");
  if (as_size(n, "all_reduce_sum") == 0) return;
  comm_waits_for_compute();
  check(ncclAllReduce(data, data, (size_t)n, ncclFloat, ncclSum, comm_, comm_stream_), "ncclAllReduce (sum)");
  compute_waits_for_comm();
}

void NcclCommunicator::all_reduce_mean(float* data, int64_t n) {
  start_all_reduce_mean(data, n);
  compute_waits_for_comm();
}

void NcclCommunicator::start_all_reduce_mean(float* data, int64_t n) {
  check_usable("all_reduce_mean");
  if (as_size(n, "all_reduce_mean") == 0) return;
  comm_waits_for_compute();
  check(ncclAllReduce(data, data, (size_t)n, ncclFloat, ncclAvg, comm_, comm_stream_), "ncclAllReduce (mean)");
}

void NcclCommunicator::join() {
  // The wait goes in even on an aborted communicator: the stream's non-NCCL work (a started permute's unpack)
  // still runs and writes, and the caller is about to free what it writes. Then the abort is reported.
  if (comm_stream_) compute_waits_for_comm();
  check_usable("join");
}

void NcclCommunicator::all_gather(const float* send, int64_t n, float* recv) {
  check_usable("all_gather");
  if (as_size(n, "all_gather") == 0) return;
  comm_waits_for_compute();
  check(ncclAllGather(send, recv, (size_t)n, ncclFloat, comm_, comm_stream_), "ncclAllGather");
  compute_waits_for_comm();
}

void NcclCommunicator::all_to_all(const float* send, const int64_t* send_counts, float* recv,
                                  const int64_t* recv_counts) {
  send_recv_all(send, send_counts, recv, recv_counts, ncclFloat, sizeof(float));
}

void NcclCommunicator::send_recv_all(const void* send, const int64_t* send_counts, void* recv,
                                     const int64_t* recv_counts, ncclDataType_t type, size_t elem_bytes,
                                     bool compute_waits) {
  check_usable("all_to_all");
  for (int p = 0; p < world_; ++p) {
    as_size(send_counts[p], "all_to_all");
    as_size(recv_counts[p], "all_to_all");
  }
  // Mismatched counts between two ranks hang NCCL; the pair with itself can at least be checked here.
  MOCO_CHECK(send_counts[rank_] == recv_counts[rank_], "all_to_all on rank ", rank_, " sends ", send_counts[rank_],
             " elements to itself but expects to receive ", recv_counts[rank_]);
  comm_waits_for_compute();
  // Every call inside the group is checked, but ncclGroupEnd must run even after a failure, or the next NCCL
  // call on this thread would still be inside the group.
  ncclResult_t first = ncclSuccess;
  check(ncclGroupStart(), "ncclGroupStart (all_to_all)");
  const char* out = static_cast<const char*>(send);
  char* in = static_cast<char*>(recv);
  auto ok = [](ncclResult_t r) { return r == ncclSuccess || r == ncclInProgress; };
  for (int p = 0; p < world_ && ok(first); ++p) {
    if (send_counts[p] > 0) first = ncclSend(out, (size_t)send_counts[p], type, p, comm_, comm_stream_);
    if (ok(first) && recv_counts[p] > 0)
      first = ncclRecv(in, (size_t)recv_counts[p], type, p, comm_, comm_stream_);
    out += (size_t)send_counts[p] * elem_bytes;
    in += (size_t)recv_counts[p] * elem_bytes;
  }
  const ncclResult_t end = ncclGroupEnd();
  if (first != ncclInProgress) check(first, "ncclSend/ncclRecv (all_to_all)");  // in progress: the group's end settles it
  check(end, "ncclGroupEnd (all_to_all)");
  if (compute_waits) compute_waits_for_comm();
}

void NcclCommunicator::permute_row_bytes(const void* send, int64_t n, int64_t row_bytes,
                                         const std::vector<int64_t>& perm, void* recv) {
  permute(send, n, row_bytes, perm, recv, /*started=*/false);
}

void NcclCommunicator::start_permute_row_bytes(const void* send, int64_t n, int64_t row_bytes,
                                               const std::vector<int64_t>& perm, void* recv) {
  permute(send, n, row_bytes, perm, recv, /*started=*/true);
}

void NcclCommunicator::permute(const void* send, int64_t n, int64_t row_bytes, const std::vector<int64_t>& perm,
                               void* recv, bool started) {
  check_usable("permute_rows");
  // checks perm; the same traffic on every rank; counts in bytes
  const RowRoute route = route_rows(rank_, world_, n, row_bytes, perm);
  MOCO_CHECK((int64_t)route.pack.size() == n && (int64_t)route.unpack.size() == n, "permute_rows: the ",
             "permutation routes ", route.pack.size(), " rows from this rank and ", route.unpack.size(),
             " to it, expected ", n, " each; it must be a permutation of [0, ", n * world_, ")");
  if (n == 0 || row_bytes == 0) return;  // n and row_bytes are the same on every rank, so all skip the all-to-all
  const size_t bytes = (size_t)(n * row_bytes);
  if (packed_.size() < bytes || route_.size() < (size_t)(2 * n)) {
    // the old buffers may still be used by work in flight on either stream: let it finish before freeing
    wait_bounded("permute_rows", [&] { return cudaStreamQuery(compute_); });
    wait_bounded("permute_rows", [&] { return cudaStreamQuery(comm_stream_); });
    if (packed_.size() < bytes) {
      packed_ = DeviceBuffer<char>(bytes, "permute_rows rows by destination");
      arrived_ = DeviceBuffer<char>(bytes, "permute_rows rows by source");
    }
    if (route_.size() < (size_t)(2 * n)) route_ = DeviceBuffer<int64_t>((size_t)(2 * n), "permute_rows routes");
  }
  std::vector<int64_t> routes(route.pack);  // (2n) pack then unpack
  routes.insert(routes.end(), route.unpack.begin(), route.unpack.end());
  // A started permute may still be reading route_ and arrived_ on the comm stream, and its all-to-all packed_.
  MOCO_CUDA_CHECK(cudaStreamWaitEvent(compute_, permute_done_, 0));
  uploads_.upload(route_.get(), routes.data(), routes.size() * sizeof(int64_t), compute_,
                  [&](cudaEvent_t e) { wait_bounded("permute_rows", [e] { return cudaEventQuery(e); }); });
  kernels::gather_rows(send, route_.get(), n, row_bytes, packed_.get(), compute_);
  send_recv_all(packed_.get(), route.send_counts.data(), arrived_.get(), route.recv_counts.data(), ncclUint8, 1,
                /*compute_waits=*/!started);
  cudaStream_t unpack_on = started ? comm_stream_ : compute_;
  kernels::gather_rows(arrived_.get(), route_.get() + n, n, row_bytes, recv, unpack_on);
  MOCO_CUDA_CHECK(cudaEventRecord(permute_done_, unpack_on));
}

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
  check_usable("broadcast");
  MOCO_CHECK(root >= 0 && root < world_, "broadcast root ", root, " is not a rank of ", world_);
  if (bytes == 0) return;
  // The previous broadcast finished before it returned, so both bounce buffers are free to refill or regrow.
  void* host = bounce_host_.reserve(bytes);
  if (bounce_.size() < bytes) bounce_ = DeviceBuffer<char>(bytes, "broadcast bounce buffer");
  std::memcpy(host, data, bytes);
  MOCO_CUDA_CHECK(cudaMemcpyAsync(bounce_.get(), host, bytes, cudaMemcpyHostToDevice, comm_stream_));
  check(ncclBroadcast(bounce_.get(), bounce_.get(), bytes, ncclUint8, root, comm_, comm_stream_), "ncclBroadcast");
  MOCO_CUDA_CHECK(cudaMemcpyAsync(host, bounce_.get(), bytes, cudaMemcpyDeviceToHost, comm_stream_));
  wait_bounded("broadcast", [&] { return cudaStreamQuery(comm_stream_); });
  std::memcpy(data, host, bytes);
}

bool NcclCommunicator::any(bool mine) {
  check_usable("any");
  // The previous broadcast or any finished before it returned, so the bounce buffers are free.
  float* host = static_cast<float*>(bounce_host_.reserve(sizeof(float)));
  if (bounce_.size() < sizeof(float)) bounce_ = DeviceBuffer<char>(sizeof(float), "broadcast bounce buffer");
  *host = mine ? 1.f : 0.f;
  float* votes = reinterpret_cast<float*>(bounce_.get());
  MOCO_CUDA_CHECK(cudaMemcpyAsync(votes, host, sizeof(float), cudaMemcpyHostToDevice, comm_stream_));
  check(ncclAllReduce(votes, votes, 1, ncclFloat, ncclSum, comm_, comm_stream_), "ncclAllReduce (any)");
  MOCO_CUDA_CHECK(cudaMemcpyAsync(host, votes, sizeof(float), cudaMemcpyDeviceToHost, comm_stream_));
  wait_bounded("any", [&] { return cudaStreamQuery(comm_stream_); });
  return *host > 0.f;
}

void NcclCommunicator::barrier() {
  check_usable("barrier");
  check(ncclAllReduce(barrier_word_.get(), barrier_word_.get(), 1, ncclFloat, ncclSum, comm_, comm_stream_),
        "ncclAllReduce (barrier)");
  wait_bounded("barrier", [&] { return cudaStreamQuery(comm_stream_); });
}

void NcclCommunicator::synchronize() {
  check_usable("synchronize");
  wait_bounded("synchronize", [&] { return cudaStreamQuery(compute_); });
  wait_bounded("synchronize", [&] { return cudaStreamQuery(comm_stream_); });
}

}  // namespace moco::cuda
