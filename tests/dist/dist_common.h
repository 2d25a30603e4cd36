// Helpers shared by the dist tests: the communicator for a test and values every rank can recompute.
#pragma once
#include <cstdint>
#include <vector>

#include "moco/comm_mpi.h"
#include "moco/launch.h"
#include "moco/rng.h"

namespace moco::test {

// A fresh communicator per test (a duplicate of MPI_COMM_WORLD); the watchdog is short so that a test
// whose ranks disagree fails in seconds instead of hanging (MOCO_COMM_TIMEOUT_S overrides it).
inline MpiCommunicator test_comm() {
  const Environment env = process_environment();
  return MpiCommunicator(env.count("MOCO_COMM_TIMEOUT_S") ? comm_timeout_seconds(env) : 30.0);
}

// A random permutation of n that every rank draws identically from `seed` (Fisher-Yates).
inline std::vector<int64_t> shared_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> perm((size_t)n);
  for (int64_t i = 0; i < n; ++i) perm[(size_t)i] = i;
  Rng rng(seed, 7);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[(size_t)i], perm[(size_t)rng.below((uint64_t)i + 1)]);
  return perm;
}

}  // namespace moco::test
