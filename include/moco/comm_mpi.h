// The communicator for CPU ranks, on MPI (compiled when CMake finds MPI; MOCO_HAVE_MPI is then defined).
//
// Every collective is started nonblocking (MPI_I*) and completed by polling MPI_Test against a deadline, so
// a rank that died or hangs makes the others throw a moco::Error naming the collective and the timeout
// instead of waiting forever. After such an error the communicator is broken: MPI_Finalize is skipped (it
// would wait for the lost rank) and the process should exit non-zero, which makes mpirun end the whole job.
#pragma once
#include <memory>

#include "moco/comm.h"

namespace moco {

struct MpiState;  // keeps <mpi.h> out of this header

class MpiCommunicator final : public Communicator {
 public:
  // Calls MPI_Init unless the program already did (then the program also calls MPI_Finalize).
  // timeout_s: the most one collective may wait for the other ranks.
  explicit MpiCommunicator(double timeout_s);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  void all_reduce_sum(float* data, int64_t n) override;
  void all_gather(const float* send, int64_t n, float* recv) override;
  void all_to_all(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;

 private:
  std::unique_ptr<MpiState> impl_;
  int rank_ = 0, world_ = 1;
};

}  // namespace moco
