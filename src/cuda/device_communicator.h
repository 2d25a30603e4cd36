// DeviceCommunicator: the Communicator of GPU ranks. Every buffer passed to a collective is DEVICE memory
// (floats; bytes for permute_row_bytes), except broadcast's, which is host memory (the shuffle permutation,
// small configuration).
//
// Ordering with the caller's compute stream: a collective runs after all the work enqueued on the compute
// stream before the call, and work enqueued on the compute stream after the call sees its result. The host
// does not wait (except in barrier, broadcast and synchronize), so the host can run ahead of the GPU.
//
// For overlap with backward (cuda::GradientBuckets), start_all_reduce_mean issues a mean all-reduce that the
// compute stream does NOT wait for; join() then makes it wait for everything started so far. The shuffle of
// the key images overlaps the query forward the same way (start_permute_row_bytes, then join()).
//
// Use on GPU ranks:
//   cuda::select_device(li);                 // cudaSetDevice(the rank's GPU), before creating the compute stream
//   cudaStream_t s; cudaStreamCreate(&s);
//   auto comm = cuda::make_gpu_communicator(li, s, mpi_comm_or_null);
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "moco/comm.h"
#include "moco/launch.h"

namespace moco::cuda {

class DeviceCommunicator : public Communicator {
 public:
  Device memory() const override { return Device::CUDA; }
  // The stream given at construction: the collectives are ordered with it.
  virtual cudaStream_t compute_stream() const = 0;
  // permute_rows on rows of `row_bytes` bytes, whatever they hold: the shuffle moves the key images as the
  // uint8 the loader made (a quarter of their fp32 size). send and recv may be the same buffer.
  virtual void permute_row_bytes(const void* send, int64_t n, int64_t row_bytes, const std::vector<int64_t>& perm,
                                 void* recv) = 0;
  // permute_row_bytes whose result the compute stream does NOT wait for: send is read in stream order (the
  // caller may overwrite it afterwards), but recv is written later, so nothing on the compute stream may touch
  // recv until join(). With one device it is permute_row_bytes (nothing to overlap).
  virtual void start_permute_row_bytes(const void* send, int64_t n, int64_t row_bytes,
                                       const std::vector<int64_t>& perm, void* recv) {
    permute_row_bytes(send, n, row_bytes, perm, recv);
  }
  // Rows of floats are rows of bytes.
  void permute_rows(const float* send, int64_t n, int64_t row, const std::vector<int64_t>& perm,
                    float* recv) final {
    permute_row_bytes(send, n, row * (int64_t)sizeof(float), perm, recv);
  }
  // In place over data (n floats, device): the mean over ranks, ordered after the compute stream's work so far,
  // but the compute stream does not wait for it: nothing on the compute stream may read or write data[0, n)
  // until join(). Collectives (started or not) must be issued in the same order on every rank.
  virtual void start_all_reduce_mean(float* data, int64_t n) = 0;
  // The compute stream waits for every collective started so far (the wait is placed even when the
  // communicator was aborted, which it then reports by throwing).
  virtual void join() = 0;
  // The host waits until the compute stream's work and every collective are done; under the watchdog
  // (MOCO_COMM_TIMEOUT_S) where peers are involved.
  virtual void synchronize() = 0;
  // For teardown after an error: ends this rank's part at once, without waiting for peers (a dead one would
  // never answer) and cancelling its collectives still queued, so that freeing device memory afterwards does
  // not wait behind them. The communicator is unusable after it. Nothing to do for one device.
  virtual void abandon() noexcept {}
};

// The GPU of a rank among the `visible` devices of its process: the one --gpu named (li.gpu >= 0, one process),
// else its local rank (one rank per GPU of the node),
// or device 0 when only one is visible, which is how a launcher that binds each rank to its own GPU shows it
// (srun --gpus-per-task=1, or a CUDA_VISIBLE_DEVICES per rank; two ranks on one GPU are refused by NCCL).
// Throws, naming the fix, when several are visible and local_rank is not below their number.
int device_of_rank(const LaunchInfo& li, int visible);

// Makes device_of_rank's device current (cudaSetDevice), so streams and buffers are created on the rank's GPU.
// Returns the device.
int select_device(const LaunchInfo& li);

// One rank -> SingleDeviceCommunicator; several -> NcclCommunicator (its constructor says how the NCCL id is
// shared: over `bootstrap`, the MPI communicator under mpirun, or NCCL's NCCL_COMM_ID rendezvous otherwise).
// Calls select_device(li). The watchdog's limit is MOCO_COMM_TIMEOUT_S (comm_timeout_seconds).
std::unique_ptr<DeviceCommunicator> make_gpu_communicator(const LaunchInfo& li, cudaStream_t compute,
                                                          Communicator* bootstrap = nullptr);

}  // namespace moco::cuda
