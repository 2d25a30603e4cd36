// SingleDeviceCommunicator: one GPU rank. The reductions and broadcast are the identity, the all-gather and
// all-to-all are device copies and permute_row_bytes is one row gather, all on the compute stream, so the MoCo step
// for one GPU is the same code as for W (the device twin of SingleCommunicator).
#pragma once
#include "device_buffer.h"
#include "device_communicator.h"
#include "pinned_host.h"

namespace moco::cuda {

class SingleDeviceCommunicator final : public DeviceCommunicator {
 public:
  // compute: the stream the caller computes on (nullptr: the legacy default stream).
  explicit SingleDeviceCommunicator(cudaStream_t compute) : compute_(compute) {}

  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_mean(float*, int64_t) override {}
  // send and recv (n floats) must be the same buffer or disjoint.
  void all_gather(const float* send, int64_t n, float* recv) override;
  void all_to_all(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override;
  // recv (n, row_bytes) row i = send row perm[i]; send and recv may be the same buffer.
  void permute_row_bytes(const void* send, int64_t n, int64_t row_bytes, const std::vector<int64_t>& perm,
                         void* recv) override;
  void broadcast(void*, size_t, int root) override;
  void barrier() override {}
  bool any(bool mine) override { return mine; }

  cudaStream_t compute_stream() const override { return compute_; }
  void start_all_reduce_mean(float*, int64_t) override {}
  void join() override {}
  void synchronize() override;

 private:
  cudaStream_t compute_;
  DeviceBuffer<int64_t> perm_;   // (n) the permutation, on the device
  DeviceBuffer<char> scratch_;   // (n, row_bytes) permute_row_bytes when send and recv overlap
  PinnedUploads uploads_;
};

}  // namespace moco::cuda
