// NcclCommunicator: the Communicator of GPU ranks over NCCL (one rank per GPU, device = local rank).
//
// Streams: every collective runs on the communicator's own stream, ordered with the caller's compute stream
// by events: record on compute -> the comm stream waits -> the collective -> record on comm -> the compute
// stream waits. The host never blocks on a collective, except in barrier, broadcast and synchronize, which
// wait under a watchdog: the comm stream is polled against a deadline of MOCO_COMM_TIMEOUT_S seconds, and on
// timeout (or an NCCL asynchronous error) the communicator is aborted (ncclCommAbort) and a moco::Error names
// the collective and the timeout. After that every call throws; the process should exit non-zero.
// The communicator is NCCL's non-blocking kind: joining it, and the connections NCCL makes lazily at the first
// collective between two ranks, return ncclInProgress instead of blocking the host, and are waited for under
// the same watchdog (settle), so a rank that never starts or dies early cannot hang the others either.
//
// The NCCL unique id (the rendezvous of ncclCommInitRank) comes from, in this order:
//   - world size 1: a local id;
//   - `bootstrap`, a host communicator of the same ranks (MPI under mpirun): rank 0 makes the id with
//     ncclGetUniqueId and broadcasts it;
//   - NCCL_COMM_ID=<host>:<port> (torchrun, srun): every rank calls ncclGetUniqueId, which then returns the
//     same id naming that address, and rank 0's ncclCommInitRank listens there (NCCL's own rendezvous; the
//     host must be rank 0's and the port free on it);
//   - otherwise, with several ranks, an error saying how to launch.
#pragma once
#include <nccl.h>

#include <functional>

#include "device_buffer.h"
#include "device_communicator.h"
#include "pinned_host.h"

namespace moco::cuda {

class NcclCommunicator final : public DeviceCommunicator {
 public:
  // Joins the NCCL communicator of li.world ranks as li.rank on device li.local_rank (made current here).
  // compute: the caller's stream on that device (nullptr: the legacy default stream). timeout_s > 0: the
  // watchdog's limit. Returns when every rank has joined; throws after timeout_s if one does not.
  NcclCommunicator(const LaunchInfo& li, cudaStream_t compute, double timeout_s, Communicator* bootstrap = nullptr);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void all_reduce_sum(float* data, int64_t n) override;
  void all_reduce_mean(float* data, int64_t n) override;  // ncclAvg: one pass, no separate scaling
  void all_gather(const float* send, int64_t n, float* recv) override;
  // ncclSend / ncclRecv pairs in one group; zero counts are skipped (the counts agree pairwise, so both sides
  // skip the same pair).
  void all_to_all(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override;
  // Pack (row gather by RowRoute::pack) -> all-to-all of bytes -> unpack (row gather by RowRoute::unpack), on
  // the device. send and recv may be the same buffer.
  void permute_row_bytes(const void* send, int64_t n, int64_t row_bytes, const std::vector<int64_t>& perm,
                         void* recv) override;
  // The same with the unpack on the comm stream after the all-to-all: the compute stream goes on at once and
  // waits at join().
  void start_permute_row_bytes(const void* send, int64_t n, int64_t row_bytes, const std::vector<int64_t>& perm,
                               void* recv) override;
  // data is HOST memory, bounced through pinned host and device buffers. Waits under the watchdog.
  void broadcast(void* data, size_t bytes, int root) override;
  // A one-float all-reduce, waited for under the watchdog.
  void barrier() override;
  // A one-float sum through the broadcast's bounce buffers, waited for under the watchdog.
  bool any(bool mine) override;

  cudaStream_t compute_stream() const override { return compute_; }
  cudaStream_t comm_stream() const { return comm_stream_; }
  void start_all_reduce_mean(float* data, int64_t n) override;
  void join() override;
  void synchronize() override;
  void abandon() noexcept override;  // ncclCommAbort

 private:
  void check_usable(const char* what) const;
  // An NCCL call's result: ncclInProgress is settled; a failure aborts the communicator (the ranks may no
  // longer agree) and throws.
  void check(ncclResult_t st, const char* what);
  // The communicator is non-blocking: after a call returns ncclInProgress, polls its state until it is
  // ncclSuccess (NCCL allows no other NCCL call, and no work on its stream, before that), under the watchdog.
  // `hint` is added to the error, and `if_invalid_usage` too when that is NCCL's answer.
  void settle(const char* what, const std::string& hint, const char* if_invalid_usage);
  // all_to_all's body for elements of `elem_bytes` bytes of NCCL type `type` (counts are in elements).
  void send_recv_all(const void* send, const int64_t* send_counts, void* recv, const int64_t* recv_counts,
                     ncclDataType_t type, size_t elem_bytes, bool compute_waits = true);
  // Both permutes; `started`: the unpack runs on the comm stream and the compute stream does not wait.
  void permute(const void* send, int64_t n, int64_t row_bytes, const std::vector<int64_t>& perm, void* recv,
               bool started);
  void comm_waits_for_compute();
  void compute_waits_for_comm();
  // Polls `query` (cudaStreamQuery / cudaEventQuery) until it stops returning cudaErrorNotReady, watching
  // NCCL's asynchronous errors and the deadline.
  void wait_bounded(const char* what, const std::function<cudaError_t()>& query);
  [[noreturn]] void abort_and_fail(const char* what, const std::string& why);
  void release() noexcept;

  int rank_ = 0, world_ = 1, device_ = 0;
  double timeout_s_ = 300;
  bool broken_ = false;
  ncclComm_t comm_ = nullptr;
  cudaStream_t compute_ = nullptr, comm_stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr, comm_done_ = nullptr;
  // The last permute's unpack has run: packed_, arrived_ and route_ are free to refill (a started permute
  // reads them on the comm stream while the compute stream runs ahead).
  cudaEvent_t permute_done_ = nullptr;
  DeviceBuffer<char> packed_, arrived_;   // (n, row_bytes) permute_row_bytes: rows by destination / by source
  DeviceBuffer<int64_t> route_;           // (2n) RowRoute::pack then RowRoute::unpack, on the device
  DeviceBuffer<char> bounce_;             // (bytes) broadcast
  DeviceBuffer<float> barrier_word_;      // (1)
  PinnedBuffer bounce_host_;              // (bytes) broadcast
  PinnedUploads uploads_;
};

}  // namespace moco::cuda
