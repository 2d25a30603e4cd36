// MpiCommunicator: each collective is one nonblocking MPI call completed under a watchdog (comm_mpi.h).
#include <mpi.h>

#include <chrono>
#include <climits>
#include <exception>
#include <thread>
#include <vector>

#include "moco/comm_mpi.h"
#include "moco/error.h"

namespace moco {

struct MpiState {
  MPI_Comm comm = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD, so our traffic never mixes with others'
  double timeout_s = 300;
  bool we_initialised = false;
  bool broken = false;  // a collective timed out or failed: the ranks no longer agree on what comes next
};

static std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, (size_t)len);
}

// Throws with the collective's name when an MPI call returns an error (MPI_ERRORS_RETURN is set on our comm).
static void check_mpi(int code, const char* what, MpiState& impl) {
  if (code == MPI_SUCCESS) return;
  impl.broken = true;
  fail("MPI ", what, " failed: ", mpi_error_text(code));
}

// Completes `req`, polling so the wait is bounded. Spins briefly (collectives on a quiet node finish in
// microseconds), then sleeps between polls so waiting ranks leave the cores to the ranks still working.
static void wait_bounded(MPI_Request& req, const char* what, MpiState& impl, int rank, int world) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what, impl);
    if (done) return;
    const double waited = std::chrono::duration<double>(clock::now() - start).count();
    if (waited > impl.timeout_s) {
      impl.broken = true;
      fail("MPI ", what, " on rank ", rank, " of ", world, " did not complete within ", impl.timeout_s,
           " s (MOCO_COMM_TIMEOUT_S): another rank died, hangs or called a different collective");
    }
    if (polls < 1000)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(polls < 10000 ? 20 : 200));
  }
}

static int as_count(int64_t n, const char* what) {
  MOCO_CHECK(n >= 0 && n <= INT_MAX, "MPI ", what, ": count ", n, " does not fit MPI's int counts (max ", INT_MAX,
             "); use smaller batches");
  return (int)n;
}

MpiCommunicator::MpiCommunicator(double timeout_s) : impl_(new MpiState) {
  MOCO_CHECK(timeout_s > 0, "communicator timeout must be > 0 seconds, got ", timeout_s);
  impl_->timeout_s = timeout_s;
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    MOCO_CHECK(MPI_Init(nullptr, nullptr) == MPI_SUCCESS, "MPI_Init failed; start the ranks with mpirun");
    impl_->we_initialised = true;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm);
  MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(impl_->comm, &rank_);
  MPI_Comm_size(impl_->comm, &world_);
}

MpiCommunicator::~MpiCommunicator() {
  // Freeing or finalising would wait for the other ranks: after a lost rank (broken), or while an error of
  // this rank's own unwinds (the others wait for it at their next collective). The error is then printed and
  // the process exits without finalising, which makes mpirun end the job.
  if (impl_->broken || std::uncaught_exceptions() > 0) return;
  MPI_Comm_free(&impl_->comm);
  if (impl_->we_initialised) MPI_Finalize();
}

void MpiCommunicator::all_reduce_sum(float* data, int64_t n) {
  MPI_Request req;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, as_count(n, "all_reduce_sum"), MPI_FLOAT, MPI_SUM, impl_->comm, &req),
            "all_reduce_sum", *impl_);
  wait_bounded(req, "all_reduce_sum", *impl_, rank_, world_);
}

void MpiCommunicator::all_gather(const float* send, int64_t n, float* recv) {
  MPI_Request req;
  const int count = as_count(n, "all_gather");
  check_mpi(MPI_Iallgather(send, count, MPI_FLOAT, recv, count, MPI_FLOAT, impl_->comm, &req), "all_gather", *impl_);
  wait_bounded(req, "all_gather", *impl_, rank_, world_);
}

void MpiCommunicator::all_to_all(const float* send, const int64_t* send_counts, float* recv,
                                 const int64_t* recv_counts) {
  std::vector<int> sc(world_), sd(world_), rc(world_), rd(world_);  // (W) counts and offsets in floats
  int64_t s_at = 0, r_at = 0;
  for (int p = 0; p < world_; ++p) {
    sc[p] = as_count(send_counts[p], "all_to_all");
    rc[p] = as_count(recv_counts[p], "all_to_all");
    sd[p] = as_count(s_at, "all_to_all");
    rd[p] = as_count(r_at, "all_to_all");
    s_at += sc[p];
    r_at += rc[p];
  }
  MPI_Request req;
  check_mpi(MPI_Ialltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(), MPI_FLOAT, impl_->comm,
                           &req),
            "all_to_all", *impl_);
  wait_bounded(req, "all_to_all", *impl_, rank_, world_);
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  MOCO_CHECK(root >= 0 && root < world_, "broadcast root ", root, " is not a rank of ", world_);
  MPI_Request req;
  check_mpi(MPI_Ibcast(data, as_count((int64_t)bytes, "broadcast"), MPI_BYTE, root, impl_->comm, &req), "broadcast",
            *impl_);
  wait_bounded(req, "broadcast", *impl_, rank_, world_);
}

void MpiCommunicator::barrier() {
  MPI_Request req;
  check_mpi(MPI_Ibarrier(impl_->comm, &req), "barrier", *impl_);
  wait_bounded(req, "barrier", *impl_, rank_, world_);
}

}  // namespace moco
