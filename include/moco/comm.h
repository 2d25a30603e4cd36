// Communicator: the collectives the MoCo step needs. The single-rank implementation makes every collective
// the identity (and the all-to-all a local permutation), so MoCo code is written once for W ranks and has no
// `if (world_size > 1)`. MPI backs CPU ranks (comm_mpi.h); NCCL backs GPU ranks (src/cuda/nccl_communicator.h),
// whose collectives take device pointers: memory() says which kind of pointer a communicator expects.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "moco/tensor.h"  // Device

namespace moco {

// How permute_rows moves rows, derived from the permutation alone, so every rank (and every backend) computes
// the same traffic. Rows to one destination are packed in the order the destination will place them.
struct RowRoute {
  std::vector<int64_t> send_counts, recv_counts;  // (W) units of a row's element (floats; bytes for the device's
                                                  // permute_row_bytes) to / from each rank, as all_to_all takes them
  std::vector<int64_t> pack;    // (n) packed row k (grouped by destination, rank order) is send row pack[k]
  std::vector<int64_t> unpack;  // (n) recv row i is arrived row unpack[i] (arrived: grouped by source, rank order)
};
// Checks `perm` (W*n entries in [0, W*n)) and routes rank `rank`'s rows of `row` elements (floats, or bytes).
RowRoute route_rows(int rank, int world, int64_t n, int64_t row, const std::vector<int64_t>& perm);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Where the buffers passed to the collectives live (host memory unless a device communicator says otherwise;
  // broadcast always takes host memory).
  virtual Device memory() const { return Device::CPU; }
  // In place over n floats.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // The sum, then times 1/W. The default scales on the host; device communicators override it.
  virtual void all_reduce_mean(float* data, int64_t n);
  // recv (world_size * n) = concatenation of every rank's send (n), in rank order.
  virtual void all_gather(const float* send, int64_t n, float* recv) = 0;
  // Rank r sends send_counts[d] floats to rank d (send holds them back to back in rank order d = 0..W-1) and
  // receives recv_counts[s] floats from rank s (recv gets them back to back in rank order). Counts are
  // (world_size) floats each and must agree pairwise: send_counts[d] on r == recv_counts[r] on d.
  virtual void all_to_all(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) = 0;
  // The all-to-all by a permutation, on rows of `row` floats. The global batch is every rank's n rows
  // concatenated in rank order (W*n rows); afterwards recv row i on rank r is global row perm[r*n + i].
  // Each row travels once, straight to the rank that needs it. `perm` (W*n) must be the same on every rank.
  // The default packs and unpacks on the host (route_rows + all_to_all); device communicators override it.
  virtual void permute_rows(const float* send, int64_t n, int64_t row, const std::vector<int64_t>& perm, float* recv);
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // True on every rank when any rank passes true (a stop asked of one rank stops them all). The default sums
  // a host float; device communicators override it.
  virtual bool any(bool mine);
};

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_gather(const float* send, int64_t n, float* recv) override;
  void all_to_all(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override;
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
};

}  // namespace moco
