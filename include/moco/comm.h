// Communicator: the collectives the MoCo step needs. The single-rank implementation makes every collective
// the identity, so MoCo code is written once for W ranks and has no `if (world_size > 1)`.
// (MPI for CPU ranks and NCCL for GPU ranks implement the same interface.)
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace moco {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place over n floats.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  void all_reduce_mean(float* data, int64_t n);
  // recv (world_size * n) = concatenation of every rank's send (n), in rank order.
  virtual void all_gather(const float* send, int64_t n, float* recv) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
};

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_gather(const float* send, int64_t n, float* recv) override;
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
};

}  // namespace moco
