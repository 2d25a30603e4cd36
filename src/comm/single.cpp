#include <cstring>

#include "moco/comm.h"
#include "moco/error.h"

namespace moco {

void SingleCommunicator::all_gather(const float* send, int64_t n, float* recv) {
  if (send != recv) std::memmove(recv, send, (size_t)n * sizeof(float));
}

void SingleCommunicator::all_to_all(const float* send, const int64_t* send_counts, float* recv,
                                    const int64_t* recv_counts) {
  MOCO_CHECK(send_counts[0] == recv_counts[0], "all_to_all on one rank sends ", send_counts[0],
             " floats to itself but expects to receive ", recv_counts[0]);
  if (send != recv) std::memmove(recv, send, (size_t)send_counts[0] * sizeof(float));
}

}  // namespace moco
