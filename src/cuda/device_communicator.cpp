// Choosing the GPU of a rank and the communicator of GPU ranks (device_communicator.h).
#include "device_communicator.h"

#include "check.h"
#include "moco/cuda_runtime.h"
#include "nccl_communicator.h"
#include "single_device_communicator.h"

namespace moco::cuda {

int device_of_rank(const LaunchInfo& li, int visible) {
  MOCO_CHECK(visible > 0, "GPU rank ", li.rank, " of ", li.world, ": no CUDA device is visible");
  if (li.gpu >= 0) {  // --gpu N: a single process on the GPU it names
    MOCO_CHECK(li.gpu < visible, "--gpu ", li.gpu, " but this process sees ", visible,
               " CUDA device(s) (numbered from 0; CUDA_VISIBLE_DEVICES limits them)");
    return li.gpu;
  }
  if (visible == 1) return 0;
  MOCO_CHECK(li.local_rank < visible, "GPU rank ", li.rank, " of ", li.world, " has local rank ", li.local_rank,
             " but this process sees ", visible, " CUDA devices (CUDA_VISIBLE_DEVICES limits them); start at most ",
             visible, " ranks per node, one per GPU, or show each rank only its own GPU");
  return li.local_rank;
}

int select_device(const LaunchInfo& li) {
  const int count = device_count();
  MOCO_CHECK(count > 0, "GPU rank ", li.rank, " of ", li.world, ": ", no_device_reason());
  const int device = device_of_rank(li, count);
  MOCO_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

std::unique_ptr<DeviceCommunicator> make_gpu_communicator(const LaunchInfo& li, cudaStream_t compute,
                                                          Communicator* bootstrap) {
  select_device(li);
  if (li.world == 1) return std::make_unique<SingleDeviceCommunicator>(compute);
  return std::make_unique<NcclCommunicator>(li, compute, comm_timeout_seconds(process_environment()), bootstrap);
}

}  // namespace moco::cuda
