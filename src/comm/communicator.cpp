// The collectives every communicator shares, written once on top of its primitives.
#include <cstring>

#include "moco/comm.h"
#include "moco/error.h"

namespace moco {

void Communicator::all_reduce_mean(float* data, int64_t n) {
  all_reduce_sum(data, n);
  const float inv = 1.f / (float)world_size();
  if (world_size() > 1)
    for (int64_t i = 0; i < n; ++i) data[i] *= inv;
}

void Communicator::permute_rows(const float* send, int64_t n, int64_t row, const std::vector<int64_t>& perm,
                                float* recv) {
  const int w = world_size(), me = rank();
  MOCO_CHECK((int64_t)perm.size() == n * w, "permute_rows: permutation has ", perm.size(), " entries, expected ",
             n * w, " (", w, " ranks x ", n, " rows)");
  for (int64_t p : perm)
    MOCO_CHECK(p >= 0 && p < n * w, "permute_rows: permutation entry ", p, " is outside [0, ", n * w, ")");
  // Global row perm[j] lives on rank perm[j] / n and is needed by rank j / n. Every rank derives the same
  // traffic from `perm`; rows to one destination are packed in the order the destination will place them.
  std::vector<int64_t> send_counts(w, 0), recv_counts(w, 0);  // (W) floats per peer
  for (int64_t j = 0; j < n * w; ++j) {
    if (perm[j] / n == me) send_counts[j / n] += row;
    if (j / n == me) recv_counts[perm[j] / n] += row;
  }
  std::vector<int64_t> send_at(w, 0), recv_at(w, 0);  // (W) running offsets in floats
  for (int d = 1; d < w; ++d) {
    send_at[d] = send_at[d - 1] + send_counts[d - 1];
    recv_at[d] = recv_at[d - 1] + recv_counts[d - 1];
  }
  std::vector<float> packed((size_t)(n * row));    // (n, row) this rank's rows, grouped by destination
  std::vector<float> arrived((size_t)(n * row));   // (n, row) rows for this rank, grouped by source
  for (int64_t j = 0; j < n * w; ++j)
    if (perm[j] / n == me) {
      std::memcpy(packed.data() + send_at[j / n], send + (perm[j] % n) * row, (size_t)row * sizeof(float));
      send_at[j / n] += row;
    }
  all_to_all(packed.data(), send_counts.data(), arrived.data(), recv_counts.data());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t src = perm[me * n + i] / n;
    std::memcpy(recv + i * row, arrived.data() + recv_at[src], (size_t)row * sizeof(float));
    recv_at[src] += row;
  }
}

}  // namespace moco
