// moco_dist_tests: GoogleTest inside every rank of an mpirun job. Rank 0 prints the usual report; the other
// ranks print only their failures, tagged with the rank. The exit code is the same on every rank: the job
// fails when any rank saw a failure (the failure counts are summed over ranks).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

namespace {

// Prints a failed assertion of a rank other than 0 (whose default printer is removed).
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_ranks = 0;
  MPI_Allreduce(&failed_here, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0 && failed_ranks > 0) std::fprintf(stderr, "%d rank(s) saw failures\n", failed_ranks);
  MPI_Finalize();
  return failed_ranks > 0 ? 1 : 0;
}
