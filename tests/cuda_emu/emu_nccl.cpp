// The NCCL of the emulated tests (include/nccl.h).
//
// One rank: collectives copy (a sum or mean over one rank is the value itself), and sends and receives to
// oneself are matched in issue order when their group ends, as NCCL pairs them. Every operation is queued on
// its stream (emu_streams.h) and runs when the host next needs it, so a missing wait between the compute and
// the communication stream shows.
//
// Several ranks (under mpirun, one process per rank, built with MPI): each operation is carried out over MPI
// on a duplicate of MPI_COMM_WORLD. Device memory is host memory here, so MPI reads and writes it directly. The
// operation runs at the call, after the work queued on its stream before it: a blocking MPI call must run on
// the host thread that issued it, and every rank issues its collectives in the same order, as NCCL requires.
// What that gives up, with several ranks (one rank keeps all of it):
// - a missing wait *after* a collective cannot show, since its result exists when the call returns (a
//   missing wait before it still shows: the collective then runs before the work it should follow);
// - a peer that hangs blocks this rank inside MPI, where the communicator's watchdog cannot fire; the test's
//   own time limit ends it.
// What it checks is the traffic itself: which rank sends which rows where.
//
// Arguments are checked at the call in both cases.
#include <climits>
#include <unistd.h>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "include/nccl.h"
#include "emu_streams.h"
#ifdef MOCO_EMU_MPI
#include <mpi.h>
#endif

struct ncclComm {
  int nranks = 1, rank = 0;
  bool aborted = false;
  bool finalized = false;
  // Non-blocking (ncclConfig_t::blocking = 0): every operation answers ncclInProgress and leaves `state` so
  // until the caller polls it (ncclCommGetAsyncError reports ncclInProgress once, then ncclSuccess).
  bool blocking = true;
  ncclResult_t state = ncclSuccess;
  bool never_joins = false;  // MOCO_EMU_NCCL_JOIN=never: a peer that never starts; the join stays in progress
  std::string last_error;
#ifdef MOCO_EMU_MPI
  MPI_Comm mpi = MPI_COMM_NULL;  // with nranks > 1
#endif
};

namespace {

size_t type_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
  }
  return 0;
}

struct PendingSend {
  const void* data;
  size_t bytes;
  int peer;
  cudaStream_t stream;
};
struct PendingRecv {
  void* data;
  size_t bytes;
  int peer;
  cudaStream_t stream;
};

// The open group of this host thread (NCCL's groups are per thread).
struct Group {
  int depth = 0;
  ncclComm_t comm = nullptr;
  std::vector<PendingSend> sends;
  std::vector<PendingRecv> recvs;
};
thread_local Group group;

ncclResult_t refuse(ncclComm_t comm, ncclResult_t r, const std::string& why) {
  if (comm) comm->last_error = why;
  return r;
}

ncclResult_t usable(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  if (comm->aborted || comm->finalized) return ncclInvalidUsage;
  if (comm->state == ncclInProgress)
    return refuse(comm, ncclInvalidUsage, "an NCCL call on a non-blocking communicator before the previous call's "
                                          "ncclInProgress was polled to ncclSuccess (ncclCommGetAsyncError)");
  return ncclSuccess;
}

// What an operation that was issued answers: ncclSuccess, or ncclInProgress on a non-blocking communicator.
ncclResult_t issued(ncclComm_t comm) {
  if (comm->blocking) return ncclSuccess;
  comm->state = ncclInProgress;
  return ncclInProgress;
}

ncclResult_t check_peer(ncclComm_t comm, int peer) {
  if (peer < 0 || peer >= comm->nranks)
    return refuse(comm, ncclInvalidArgument, "peer " + std::to_string(peer) + " of " + std::to_string(comm->nranks) +
                                                 " ranks");
  return ncclSuccess;
}

// Runs an operation of comm on `stream`: queued with one rank, at the call (after the stream's earlier work)
// with several.
void run_on(ncclComm_t comm, cudaStream_t stream, std::function<void()> work) {
  if (comm->nranks == 1)
    cuda_emu::enqueue(stream, std::move(work));
  else
    cuda_emu::run_blocking(stream, std::move(work));
}

// The checks every collective makes at the call; *bytes is then the element size.
ncclResult_t check_collective(ncclComm_t comm, ncclDataType_t type, size_t count, size_t* bytes) {
  if (const ncclResult_t r = usable(comm); r != ncclSuccess) return r;
  *bytes = type_bytes(type);
  if (*bytes == 0) return refuse(comm, ncclInvalidArgument, "unknown data type");
  // MPI's counts are int; the emulator's transfers are counted in bytes
  if (comm->nranks > 1 && count * *bytes > (size_t)INT_MAX)
    return refuse(comm, ncclInvalidArgument, "the emulated NCCL moves at most INT_MAX bytes per call");
  return ncclSuccess;
}

// A collective over one rank moves the data to its place, if it is not there already.
ncclResult_t copy_on_one_rank(ncclComm_t comm, cudaStream_t stream, const void* send, void* recv, size_t bytes) {
  if (send != recv) run_on(comm, stream, [=] { std::memmove(recv, send, bytes); });
  return issued(comm);
}

#ifdef MOCO_EMU_MPI
// MPI's type for a reduction over NCCL's; MPI_DATATYPE_NULL for the types moco never reduces (fp16, bf16).
MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    default: return MPI_DATATYPE_NULL;
  }
}
MPI_Op mpi_op(ncclRedOp_t op) {
  switch (op) {
    case ncclProd: return MPI_PROD;
    case ncclMax: return MPI_MAX;
    case ncclMin: return MPI_MIN;
    default: return MPI_SUM;  // ncclSum, and ncclAvg before its division
  }
}
// ncclAvg: the sum divided by the number of ranks, in the data's type (float or double: what moco averages).
template <class T>
void divide(void* p, size_t count, int by) {
  T* v = static_cast<T*>(p);
  for (size_t i = 0; i < count; ++i) v[i] = v[i] / (T)by;
}
void average(void* p, size_t count, ncclDataType_t t, int nranks) {
  if (t == ncclFloat32) divide<float>(p, count, nranks);
  else divide<double>(p, count, nranks);
}
#endif

}  // namespace

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
  }
  return "unknown result code";
}
const char* ncclGetLastError(ncclComm_t comm) { return comm ? comm->last_error.c_str() : ""; }

ncclResult_t ncclGetVersion(int* version) {
  if (!version) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, "cuda_emu", 8);
  return ncclSuccess;
}
namespace {

// The join of ncclCommInitRank*: a new communicator, or an error found before there is one. A failure NCCL
// finds inside the join itself (two ranks on one GPU) is left in the communicator's state, for the caller to
// return (blocking) or for the polls to report (non-blocking).
ncclResult_t join(int nranks, int rank, ncclComm_t* out) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  auto c = new ncclComm;
  c->nranks = nranks;
  c->rank = rank;
  if (nranks > 1) {
#ifdef MOCO_EMU_MPI
    // The ranks must be MPI's: the same processes in the same order (mpirun, with the id bootstrapped over MPI).
    int initialised = 0, size = 0, me = -1;
    MPI_Initialized(&initialised);
    if (initialised) {
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      MPI_Comm_rank(MPI_COMM_WORLD, &me);
    }
    if (!initialised || size != nranks || me != rank) {
      delete c;
      return ncclSystemError;  // the emulator's peers can only be MPI's ranks, started by mpirun
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    // As NCCL does, refuse two ranks on one GPU ("Duplicate GPU detected"): the GPU is the host and the device
    // each rank made current.
    struct Gpu {
      char host[64];
      int device;
    } mine{};
    std::vector<Gpu> all((size_t)nranks);
    gethostname(mine.host, sizeof mine.host - 1);
    cudaGetDevice(&mine.device);
    MPI_Allgather(&mine, (int)sizeof(Gpu), MPI_BYTE, all.data(), (int)sizeof(Gpu), MPI_BYTE, c->mpi);
    for (int r = 0; r < nranks; ++r)
      if (r != rank && all[(size_t)r].device == mine.device && std::strcmp(all[(size_t)r].host, mine.host) == 0) {
        c->state = ncclInvalidUsage;
        c->last_error = "Duplicate GPU detected: ranks " + std::to_string(r) + " and " + std::to_string(rank) +
                        " are both on device " + std::to_string(mine.device);
      }
#else
    delete c;
    return ncclSystemError;  // built without MPI: the other ranks would be processes it cannot reach
#endif
  }
  *out = c;
  return ncclSuccess;
}

}  // namespace

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId, int rank) {
  ncclComm_t c = nullptr;
  if (const ncclResult_t r = join(nranks, rank, &c); r != ncclSuccess) return r;
  if (c->state != ncclSuccess) {  // a blocking join returns its failure
    const ncclResult_t r = c->state;
    delete c;
    return r;
  }
  *comm = c;
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t* config) {
  if (config && (config->size != sizeof(ncclConfig_t) || config->magic != 0xcafebeef)) return ncclInvalidArgument;
  // unset (NCCL_CONFIG_UNDEF_INT) or 1: blocking
  if (!config || config->blocking != 0) return ncclCommInitRank(comm, nranks, id, rank);
  const char* never = std::getenv("MOCO_EMU_NCCL_JOIN");
  if (never && std::string(never) == "never") {
    if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    auto c = new ncclComm;  // no peers to reach: it never leaves ncclInProgress, until aborted
    c->nranks = nranks, c->rank = rank, c->blocking = false, c->never_joins = true;
    c->state = ncclInProgress;
    *comm = c;
    return ncclInProgress;
  }
  ncclComm_t c = nullptr;
  if (const ncclResult_t r = join(nranks, rank, &c); r != ncclSuccess) return r;
  c->blocking = false;
  *comm = c;
  if (c->state != ncclSuccess) return ncclInProgress;  // the polls report the failure
  return issued(c);
}
ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (const ncclResult_t r = usable(comm); r != ncclSuccess) return r;
  cuda_emu::sync_device();  // its queued operations finish first
  comm->finalized = true;
  return issued(comm);
}
// Neither frees the MPI communicator: MPI_Comm_free is collective and would wait for ranks that may be gone.
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  cuda_emu::sync_device();  // the communicator's queued operations finish first
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  cuda_emu::sync_device();  // nothing queued can hang: several ranks' operations ran at their call
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (!comm) return ncclInvalidArgument;
  // operations either ran at their call or cannot fail (one rank); a non-blocking one is done at its first poll
  *async_error = comm->state;
  if (comm->state == ncclInProgress && !comm->never_joins) comm->state = ncclSuccess;  // errors stay
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  size_t b = 0;
  if (const ncclResult_t r = check_collective(comm, type, count, &b); r != ncclSuccess) return r;
  if (op < ncclSum || op > ncclAvg) return refuse(comm, ncclInvalidArgument, "unknown reduction");
  if (count == 0) return ncclSuccess;
  if (comm->nranks == 1) return copy_on_one_rank(comm, stream, send, recv, count * b);
#ifdef MOCO_EMU_MPI
  if (mpi_type(type) == MPI_DATATYPE_NULL) return refuse(comm, ncclInvalidArgument, "the emulator reduces no fp16/bf16");
  if (op == ncclAvg && type != ncclFloat32 && type != ncclFloat64)
    return refuse(comm, ncclInvalidArgument, "the emulator averages only float and double");
  run_on(comm, stream, [=] {
    MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mpi_type(type), mpi_op(op), comm->mpi);
    if (op == ncclAvg) average(recv, count, type, comm->nranks);
  });
#endif
  return issued(comm);
}
ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
  size_t b = 0;
  if (const ncclResult_t r = check_collective(comm, type, count, &b); r != ncclSuccess) return r;
  if (count == 0) return ncclSuccess;
  if (comm->nranks == 1) return copy_on_one_rank(comm, stream, send, recv, count * b);
#ifdef MOCO_EMU_MPI
  const bool in_place = send == static_cast<const char*>(recv) + comm->rank * count * b;
  run_on(comm, stream, [=] {
    MPI_Allgather(in_place ? MPI_IN_PLACE : send, (int)(count * b), MPI_BYTE, recv, (int)(count * b), MPI_BYTE,
                  comm->mpi);
  });
#endif
  return issued(comm);
}
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  size_t b = 0;
  if (const ncclResult_t r = check_collective(comm, type, count, &b); r != ncclSuccess) return r;
  if (const ncclResult_t r = check_peer(comm, root); r != ncclSuccess) return r;
  if (count == 0) return ncclSuccess;
  if (comm->nranks == 1) return copy_on_one_rank(comm, stream, send, recv, count * b);
  const bool copy_first = comm->rank == root && send != recv;
#ifdef MOCO_EMU_MPI
  run_on(comm, stream, [=] {
    if (copy_first) std::memmove(recv, send, count * b);
    MPI_Bcast(recv, (int)(count * b), MPI_BYTE, root, comm->mpi);
  });
#endif
  return issued(comm);
}

namespace {

// A send or a receive joins the open group (to be matched when it ends) after the checks of a collective.
template <class Transfer, class Data>
ncclResult_t add_to_group(std::vector<Transfer>& list, Data data, size_t count, ncclDataType_t type, int peer,
                          ncclComm_t comm, cudaStream_t stream, const char* what) {
  size_t b = 0;
  if (const ncclResult_t r = check_collective(comm, type, count, &b); r != ncclSuccess) return r;
  if (const ncclResult_t r = check_peer(comm, peer); r != ncclSuccess) return r;
  if (group.depth == 0) return refuse(comm, ncclInvalidUsage, std::string(what) + " outside a group (moco always groups them)");
  group.comm = comm;
  list.push_back({data, count * b, peer, stream});
  return ncclSuccess;
}

}  // namespace

ncclResult_t ncclSend(const void* send, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return add_to_group(group.sends, send, count, type, peer, comm, stream, "a send");
}
ncclResult_t ncclRecv(void* recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return add_to_group(group.recvs, recv, count, type, peer, comm, stream, "a receive");
}
ncclResult_t ncclGroupStart() {
  ++group.depth;
  return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
  if (group.depth == 0) return ncclInvalidUsage;
  if (--group.depth > 0) return ncclSuccess;
  // The whole group is one operation on one stream (moco issues each group on one stream; several streams in
  // one group would need their cross-stream joins modelled). The k-th send to a peer meets that peer's k-th
  // receive from this rank; on one rank their sizes must agree.
  Group g;
  std::swap(g, group);
  if (g.sends.empty() && g.recvs.empty()) return ncclSuccess;
  const cudaStream_t stream = !g.sends.empty() ? g.sends[0].stream : g.recvs[0].stream;
  for (const PendingSend& s : g.sends)
    if (s.stream != stream) return ncclInvalidUsage;
  for (const PendingRecv& r : g.recvs)
    if (r.stream != stream) return ncclInvalidUsage;
  if (g.comm->nranks == 1) {
    if (g.sends.size() != g.recvs.size()) return ncclInvalidUsage;
    for (size_t i = 0; i < g.sends.size(); ++i)
      if (g.sends[i].bytes != g.recvs[i].bytes) return ncclInvalidUsage;
    run_on(g.comm, stream, [sends = g.sends, recvs = g.recvs] {
      for (size_t i = 0; i < sends.size(); ++i)
        if (sends[i].bytes) std::memmove(recvs[i].data, sends[i].data, sends[i].bytes);
    });
    return issued(g.comm);
  }
#ifdef MOCO_EMU_MPI
  run_on(g.comm, stream, [g] {
    std::vector<MPI_Request> reqs;
    for (const PendingRecv& r : g.recvs) {
      reqs.emplace_back();
      MPI_Irecv(r.data, (int)r.bytes, MPI_BYTE, r.peer, 0, g.comm->mpi, &reqs.back());
    }
    for (const PendingSend& s : g.sends) {
      reqs.emplace_back();
      MPI_Isend(s.data, (int)s.bytes, MPI_BYTE, s.peer, 0, g.comm->mpi, &reqs.back());
    }
    MPI_Waitall((int)reqs.size(), reqs.data(), MPI_STATUSES_IGNORE);
  });
#endif
  return issued(g.comm);
}
