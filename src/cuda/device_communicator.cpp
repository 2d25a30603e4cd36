// Choosing the GPU of a rank and the communicator of GPU ranks (device_communicator.h).
#include "device_communicator.h"

#include "check.h"
#include "moco/cuda_runtime.h"
#include "nccl_communicator.h"
#include "single_device_communicator.h"

namespace moco::cuda {

int select_device(const LaunchInfo& li) {
  const int count = device_count();
  MOCO_CHECK(count > 0, "GPU rank ", li.rank, " of ", li.world, ": ", no_device_reason());
  MOCO_CHECK(li.local_rank < count, "GPU rank ", li.rank, " of ", li.world, " has local rank ", li.local_rank,
             " but this node shows only ", count, " CUDA device(s) (CUDA_VISIBLE_DEVICES limits them); start at "
             "most ", count, " ranks per node, one per GPU");
  MOCO_CUDA_CHECK(cudaSetDevice(li.local_rank));
  return li.local_rank;
}

std::unique_ptr<DeviceCommunicator> make_gpu_communicator(const LaunchInfo& li, cudaStream_t compute,
                                                          Communicator* bootstrap) {
  select_device(li);
  if (li.world == 1) return std::make_unique<SingleDeviceCommunicator>(compute);
  return std::make_unique<NcclCommunicator>(li, compute, comm_timeout_seconds(process_environment()), bootstrap);
}

}  // namespace moco::cuda
