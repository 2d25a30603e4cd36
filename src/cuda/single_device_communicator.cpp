// SingleDeviceCommunicator: the collectives of one GPU rank as device copies on the compute stream.
#include "single_device_communicator.h"

#include "row_gather.cuh"

namespace moco::cuda {

namespace {

// Ranges [a, a + n) and [b, b + n) of elements share one.
template <class T>
bool overlap(const T* a, const T* b, int64_t n) { return n > 0 && a < b + n && b < a + n; }

}  // namespace

void SingleDeviceCommunicator::all_gather(const float* send, int64_t n, float* recv) {
  MOCO_CHECK(n >= 0, "all_gather of ", n, " floats; expected n >= 0");
  MOCO_CHECK(send == recv || !overlap(send, recv, n), "all_gather on one GPU: send and recv overlap without being "
             "the same buffer");
  if (send != recv && n > 0)
    MOCO_CUDA_CHECK(cudaMemcpyAsync(recv, send, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, compute_));
}

void SingleDeviceCommunicator::all_to_all(const float* send, const int64_t* send_counts, float* recv,
                                          const int64_t* recv_counts) {
  MOCO_CHECK(send_counts[0] == recv_counts[0] && send_counts[0] >= 0, "all_to_all on one GPU sends ",
             send_counts[0], " floats to itself but expects to receive ", recv_counts[0]);
  const int64_t n = send_counts[0];
  MOCO_CHECK(send == recv || !overlap(send, recv, n), "all_to_all on one GPU: send and recv overlap without being "
             "the same buffer");
  if (send != recv && n > 0)
    MOCO_CUDA_CHECK(cudaMemcpyAsync(recv, send, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, compute_));
}

void SingleDeviceCommunicator::permute_row_bytes(const void* send, int64_t n, int64_t row_bytes,
                                                 const std::vector<int64_t>& perm, void* recv) {
  const RowRoute route = route_rows(0, 1, n, row_bytes, perm);  // checks perm; with one rank route.pack == perm
  if (n == 0 || row_bytes == 0) return;
  const int64_t bytes = n * row_bytes;
  const bool aliased = overlap(static_cast<const char*>(send), static_cast<const char*>(recv), bytes);
  if (perm_.size() < (size_t)n || (aliased && scratch_.size() < (size_t)bytes)) {
    // the old buffers may still be read by kernels in flight: let them finish before they are freed
    MOCO_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (perm_.size() < (size_t)n) perm_ = DeviceBuffer<int64_t>((size_t)n, "permute_rows permutation");
    if (aliased && scratch_.size() < (size_t)bytes) scratch_ = DeviceBuffer<char>((size_t)bytes, "permute_rows scratch");
  }
  uploads_.upload(perm_.get(), route.pack.data(), (size_t)n * sizeof(int64_t), compute_,
                  [](cudaEvent_t e) { MOCO_CUDA_CHECK(cudaEventSynchronize(e)); });
  void* out = aliased ? static_cast<void*>(scratch_.get()) : recv;  // (n, row_bytes)
  kernels::gather_rows(send, perm_.get(), n, row_bytes, out, compute_);
  if (aliased) MOCO_CUDA_CHECK(cudaMemcpyAsync(recv, out, (size_t)bytes, cudaMemcpyDeviceToDevice, compute_));
}

void SingleDeviceCommunicator::broadcast(void*, size_t, int root) {
  MOCO_CHECK(root == 0, "broadcast root ", root, " is not a rank of 1");
}

void SingleDeviceCommunicator::synchronize() { MOCO_CUDA_CHECK(cudaStreamSynchronize(compute_)); }

}  // namespace moco::cuda
