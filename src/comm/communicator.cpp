// The collectives every communicator shares, written once on top of its primitives.
#include <cstring>

#include "moco/comm.h"
#include "moco/error.h"

namespace moco {

bool Communicator::any(bool mine) {
  float votes = mine ? 1.f : 0.f;
  all_reduce_sum(&votes, 1);
  return votes > 0.f;
}

void Communicator::all_reduce_mean(float* data, int64_t n) {
  all_reduce_sum(data, n);
  const float inv = 1.f / (float)world_size();
  if (world_size() > 1)
    for (int64_t i = 0; i < n; ++i) data[i] *= inv;
}

RowRoute route_rows(int rank, int world, int64_t n, int64_t row, const std::vector<int64_t>& perm) {
  const int w = world, me = rank;
  MOCO_CHECK((int64_t)perm.size() == n * w, "permute_rows: permutation has ", perm.size(), " entries, expected ",
             n * w, " (", w, " ranks x ", n, " rows)");
  for (int64_t p : perm)
    MOCO_CHECK(p >= 0 && p < n * w, "permute_rows: permutation entry ", p, " is outside [0, ", n * w, ")");
  // Global row perm[j] lives on rank perm[j] / n and is needed by rank j / n.
  RowRoute r;
  std::vector<int64_t> from(w, 0);  // (W) rows arriving from each source
  r.send_counts.assign(w, 0);
  for (int64_t j = 0; j < n * w; ++j) {
    if (perm[j] / n == me) {
      r.send_counts[j / n] += row;
      r.pack.push_back(perm[j] % n);  // j ascends, so destinations come in rank order
    }
    if (j / n == me) ++from[perm[j] / n];
  }
  r.recv_counts.assign(w, 0);
  std::vector<int64_t> arrived_at(w, 0);  // (W) next arrived row from each source
  for (int s = 0; s < w; ++s) {
    r.recv_counts[s] = from[s] * row;
    if (s > 0) arrived_at[s] = arrived_at[s - 1] + from[s - 1];
  }
  r.unpack.resize((size_t)n);
  for (int64_t i = 0; i < n; ++i) r.unpack[(size_t)i] = arrived_at[perm[me * n + i] / n]++;
  return r;
}

void Communicator::permute_rows(const float* send, int64_t n, int64_t row, const std::vector<int64_t>& perm,
                                float* recv) {
  const RowRoute r = route_rows(rank(), world_size(), n, row, perm);
  std::vector<float> packed((size_t)(n * row));    // (n, row) this rank's rows, grouped by destination
  std::vector<float> arrived((size_t)(n * row));   // (n, row) rows for this rank, grouped by source
  for (int64_t k = 0; k < n; ++k)
    std::memcpy(packed.data() + k * row, send + r.pack[(size_t)k] * row, (size_t)row * sizeof(float));
  all_to_all(packed.data(), r.send_counts.data(), arrived.data(), r.recv_counts.data());
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(recv + i * row, arrived.data() + r.unpack[(size_t)i] * row, (size_t)row * sizeof(float));
}

}  // namespace moco
