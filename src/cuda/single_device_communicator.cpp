// SingleDeviceCommunicator: the collectives of one GPU rank as device copies on the compute stream.
#include "single_device_communicator.h"

#include "row_gather.cuh"

namespace moco::cuda {

namespace {

// Ranges [a, a + n) and [b, b + n) of floats share an element.
bool overlap(const float* a, const float* b, int64_t n) { return n > 0 && a < b + n && b < a + n; }

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

void SingleDeviceCommunicator::permute_rows(const float* send, int64_t n, int64_t row,
                                            const std::vector<int64_t>& perm, float* recv) {
  const RowRoute route = route_rows(0, 1, n, row, perm);  // checks perm; with one rank route.pack == perm
  if (n == 0 || row == 0) return;
  const bool aliased = overlap(send, recv, n * row);
  if (perm_.size() < (size_t)n || (aliased && scratch_.size() < (size_t)(n * row))) {
    // the old buffers may still be read by kernels in flight: let them finish before they are freed
    MOCO_CUDA_CHECK(cudaStreamSynchronize(compute_));
    if (perm_.size() < (size_t)n) perm_ = DeviceBuffer<int64_t>((size_t)n, "permute_rows permutation");
    if (aliased && scratch_.size() < (size_t)(n * row))
      scratch_ = DeviceBuffer<float>((size_t)(n * row), "permute_rows scratch");
  }
  uploads_.upload(perm_.get(), route.pack.data(), (size_t)n * sizeof(int64_t), compute_,
                  [](cudaEvent_t e) { MOCO_CUDA_CHECK(cudaEventSynchronize(e)); });
  float* out = aliased ? scratch_.get() : recv;  // (n, row)
  kernels::gather_rows(send, perm_.get(), n, row, out, compute_);
  if (aliased)
    MOCO_CUDA_CHECK(
        cudaMemcpyAsync(recv, out, (size_t)(n * row) * sizeof(float), cudaMemcpyDeviceToDevice, compute_));
}

void SingleDeviceCommunicator::broadcast(void*, size_t, int root) {
  MOCO_CHECK(root == 0, "broadcast root ", root, " is not a rank of 1");
}

void SingleDeviceCommunicator::synchronize() { MOCO_CUDA_CHECK(cudaStreamSynchronize(compute_)); }

}  // namespace moco::cuda
