// The NCCL of the emulated tests (include/nccl.h).
//
// One rank: collectives copy (a sum or mean over one rank is the value itself), and sends and receives to
// oneself are matched in issue order when their group ends, as NCCL pairs them. Every operation is queued on
// its stream (emu_streams.h) and runs when the host next needs it, so a missing wait between the compute and
// the communication stream shows.
//
// Several ranks, two ways of reaching each other, as the launch provides:
// - under mpirun (one process per rank, built with MPI): each operation is carried out over MPI on a duplicate
//   of MPI_COMM_WORLD;
// - otherwise, with NCCL_COMM_ID=<host>:<port> (torchrun, srun, moco's --multiprocessing-distributed): the
//   ranks join at that address and talk over TCP (emu_nccl_mesh.h), as real NCCL's bootstrap does there. A
//   reduction sums the ranks' values in rank order on every rank, so every rank has the same bits. The join
//   goes on in a thread of its own; a non-blocking one (ncclCommInitRankConfig with blocking = 0) answers
//   ncclInProgress until every rank came, so the caller's watchdog can end the wait for a rank that never
//   starts, as with NCCL, and a blocking one (ncclCommInitRank) waits for that thread in the call.
// In both cases device memory is host memory here, so MPI and the sockets read and write it directly. The
// operation runs at the call, after the work queued on its stream before it: a blocking call must run on the
// host thread that issued it, and every rank issues its collectives in the same order, as NCCL requires.
// What that gives up, with several ranks (one rank keeps all of it):
// - a missing wait *after* a collective cannot show, since its result exists when the call returns (a
//   missing wait before it still shows: the collective then runs before the work it should follow);
// - a peer that hangs blocks this rank inside MPI or a socket wait, where the communicator's watchdog cannot
//   fire; the test's own time limit ends it. (A peer that exits closes its connections: the TCP mesh reports
//   that as ncclRemoteError.)
// What it checks is the traffic itself: which rank sends which rows where.
//
// Arguments are checked at the call in both cases.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>
#include <unistd.h>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "include/nccl.h"
#include "emu_nccl_mesh.h"
#include "emu_streams.h"
#ifdef MOCO_EMU_MPI
#include <mpi.h>
#endif

// A join at NCCL_COMM_ID, running on a thread of its own (start_join); the thread sets `done` last.
struct PendingJoin {
  std::atomic<bool> done{false};
  std::string address;
  std::unique_ptr<emu_nccl::Mesh> mesh;  // null when the join failed
  std::string error;
};

struct ncclComm {
  int nranks = 1, rank = 0;
  bool aborted = false;
  bool finalized = false;
  // Non-blocking (ncclConfig_t::blocking = 0): every operation answers ncclInProgress and leaves `state` so
  // until the caller polls it (ncclCommGetAsyncError reports ncclInProgress once, then ncclSuccess).
  bool blocking = true;
  ncclResult_t state = ncclSuccess;
  std::string last_error;
#ifdef MOCO_EMU_MPI
  MPI_Comm mpi = MPI_COMM_NULL;  // with nranks > 1 under mpirun
#endif
  std::unique_ptr<emu_nccl::Mesh> mesh;  // with nranks > 1 joined at NCCL_COMM_ID
  // A join at NCCL_COMM_ID still going on, on a thread of its own (as real NCCL's): the polls (or the blocking
  // call) take its mesh once it is done. Shared with that thread, which outlives an abort until its deadline.
  std::shared_ptr<struct PendingJoin> joining;
  // A mesh operation failed part-way: its byte streams are out of step, so every later call is refused.
  bool broken = false;
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
  if (comm->broken) return ncclRemoteError;
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

// ---- several ranks over the TCP mesh (NCCL_COMM_ID) ----

// Runs a mesh operation at the call, after the stream's earlier work; a failure (a lost peer) becomes the
// communicator's error: returned by a blocking one, reported by the next poll of a non-blocking one.
ncclResult_t on_mesh(ncclComm_t comm, cudaStream_t stream, const std::function<bool(std::string*)>& work) {
  std::string error;
  bool ok = true;
  cuda_emu::run_blocking(stream, [&] { ok = work(&error); });
  if (ok) return issued(comm);
  std::fprintf(stderr, "emulated NCCL, rank %d of %d: %s\n", comm->rank, comm->nranks, error.c_str());
  comm->state = ncclRemoteError;
  comm->broken = true;
  comm->last_error = error;
  return comm->blocking ? ncclRemoteError : ncclInProgress;
}

// out = parts[0] op parts[1] op ... in rank order (then / nranks for ncclAvg): the same bits on every rank.
template <class T>
void reduce_in_rank_order(const std::vector<const void*>& parts, void* out, size_t count, ncclRedOp_t op) {
  T* o = static_cast<T*>(out);
  for (size_t i = 0; i < count; ++i) {
    T acc = static_cast<const T*>(parts[0])[i];
    for (size_t r = 1; r < parts.size(); ++r) {
      const T v = static_cast<const T*>(parts[r])[i];
      acc = op == ncclProd ? (T)(acc * v) : op == ncclMax ? std::max(acc, v) : op == ncclMin ? std::min(acc, v)
                                                                                 : (T)(acc + v);
    }
    if (op == ncclAvg) acc = acc / (T)parts.size();
    o[i] = acc;
  }
}
void reduce_parts(const std::vector<const void*>& parts, void* out, size_t count, ncclDataType_t t, ncclRedOp_t op) {
  switch (t) {
    case ncclInt8: return reduce_in_rank_order<int8_t>(parts, out, count, op);
    case ncclUint8: return reduce_in_rank_order<uint8_t>(parts, out, count, op);
    case ncclInt32: return reduce_in_rank_order<int32_t>(parts, out, count, op);
    case ncclUint32: return reduce_in_rank_order<uint32_t>(parts, out, count, op);
    case ncclInt64: return reduce_in_rank_order<int64_t>(parts, out, count, op);
    case ncclUint64: return reduce_in_rank_order<uint64_t>(parts, out, count, op);
    case ncclFloat32: return reduce_in_rank_order<float>(parts, out, count, op);
    default: return reduce_in_rank_order<double>(parts, out, count, op);  // ncclFloat64 (fp16/bf16 refused)
  }
}

bool mesh_all_reduce(ncclComm_t comm, const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                     std::string* error) {
  const size_t bytes = count * type_bytes(t);
  const emu_nccl::Mesh& m = *comm->mesh;
  std::vector<char> own(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);  // (bytes)
  std::vector<std::vector<char>> theirs((size_t)m.nranks());  // (nranks, bytes) each peer's values
  std::vector<emu_nccl::Mesh::Transfer> sends, recvs;
  for (int p = 0; p < m.nranks(); ++p) {
    if (p == m.rank()) continue;
    theirs[(size_t)p].resize(bytes);
    sends.push_back({p, own.data(), bytes});
    recvs.push_back({p, theirs[(size_t)p].data(), bytes});
  }
  if (!comm->mesh->exchange(sends, recvs, error)) return false;
  std::vector<const void*> parts((size_t)m.nranks());
  for (int r = 0; r < m.nranks(); ++r) parts[(size_t)r] = r == m.rank() ? own.data() : theirs[(size_t)r].data();
  reduce_parts(parts, recv, count, t, op);
  return true;
}

bool mesh_all_gather(ncclComm_t comm, const void* send, void* recv, size_t chunk, std::string* error) {
  const emu_nccl::Mesh& m = *comm->mesh;
  char* base = static_cast<char*>(recv);
  char* mine = base + (size_t)m.rank() * chunk;
  if (send != mine) std::memmove(mine, send, chunk);
  std::vector<emu_nccl::Mesh::Transfer> sends, recvs;
  for (int p = 0; p < m.nranks(); ++p) {
    if (p == m.rank()) continue;
    sends.push_back({p, mine, chunk});
    recvs.push_back({p, base + (size_t)p * chunk, chunk});
  }
  return comm->mesh->exchange(sends, recvs, error);
}

bool mesh_broadcast(ncclComm_t comm, const void* send, void* recv, size_t bytes, int root, std::string* error) {
  const emu_nccl::Mesh& m = *comm->mesh;
  std::vector<emu_nccl::Mesh::Transfer> sends, recvs;
  if (m.rank() == root) {
    if (send != recv) std::memmove(recv, send, bytes);
    for (int p = 0; p < m.nranks(); ++p)
      if (p != root) sends.push_back({p, recv, bytes});
  } else {
    recvs.push_back({root, recv, bytes});
  }
  return comm->mesh->exchange(sends, recvs, error);
}

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

// The id is "cuda_emu", then rank 0's address when NCCL_COMM_ID gives one (real NCCL's id likewise carries the
// address its ranks meet at).
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, "cuda_emu", 8);
  const char* address = std::getenv("NCCL_COMM_ID");
  if (address && *address) {
    if (std::strlen(address) >= sizeof id->internal - 8) return ncclInvalidArgument;
    std::memcpy(id->internal + 8, address, std::strlen(address));
  }
  return ncclSuccess;
}
namespace {

// Seconds a rank waits for the others to join at NCCL_COMM_ID (MOCO_EMU_NCCL_JOIN_TIMEOUT_S, default 120).
double join_timeout_s() {
  const char* v = std::getenv("MOCO_EMU_NCCL_JOIN_TIMEOUT_S");
  const double t = v ? std::atof(v) : 0;
  return t > 0 ? t : 120;
}

// As NCCL does, refuse two ranks on one GPU ("Duplicate GPU detected"): the GPU is the host and the device
// each rank made current. The failure is left in the communicator's state.
void refuse_shared_gpus(ncclComm_t c, const std::vector<emu_nccl::Mesh::Gpu>& all) {
  const emu_nccl::Mesh::Gpu& mine = all[(size_t)c->rank];
  for (int r = 0; r < c->nranks; ++r)
    if (r != c->rank && all[(size_t)r].device == mine.device && std::strcmp(all[(size_t)r].host, mine.host) == 0) {
      c->state = ncclInvalidUsage;
      c->last_error = "Duplicate GPU detected: ranks " + std::to_string(r) + " and " + std::to_string(c->rank) +
                      " are both on device " + std::to_string(mine.device);
    }
}

// The GPU this rank made current: its host and device. MOCO_EMU_HOSTNAME stands in for the host's name, so
// that processes of one machine can play the nodes of a multi-node launch (each node's GPU 0 is then not
// "the same GPU").
emu_nccl::Mesh::Gpu this_gpu() {
  emu_nccl::Mesh::Gpu mine{};
  const char* as = std::getenv("MOCO_EMU_HOSTNAME");
  if (as && *as)
    std::strncpy(mine.host, as, sizeof mine.host - 1);
  else
    gethostname(mine.host, sizeof mine.host - 1);
  cudaGetDevice(&mine.device);
  return mine;
}

// Starts c's join at `address` on a thread of its own, as real NCCL's bootstrap runs: c is in progress until
// take_join finds the thread done. The thread owns a share of the join, so it outlives an aborted c.
void start_join(ncclComm_t c, const std::string& address) {
  auto pending = std::make_shared<PendingJoin>();
  pending->address = address;
  const emu_nccl::Mesh::Gpu mine = this_gpu();  // the caller's device, asked on the caller's thread
  const double limit = join_timeout_s();
  const int nranks = c->nranks, rank = c->rank;
  std::thread([pending, nranks, rank, mine, limit] {
    pending->mesh = emu_nccl::Mesh::join(pending->address, nranks, rank, mine, limit, &pending->error);
    pending->done = true;
  }).detach();
  c->joining = std::move(pending);
  c->state = ncclInProgress;
}

// Takes c's finished join: its mesh, and the GPUs' check (two ranks on one GPU fail there); or its failure.
// Either way the outcome is left in c's state.
void take_join(ncclComm_t c) {
  const std::shared_ptr<PendingJoin> p = std::move(c->joining);
  if (p->mesh) {
    c->mesh = std::move(p->mesh);
    c->state = ncclSuccess;
    refuse_shared_gpus(c, c->mesh->gpus());
  } else {
    std::fprintf(stderr, "emulated NCCL: rank %d of %d could not join at %s: %s\n", c->rank, c->nranks,
                 p->address.c_str(), p->error.c_str());
    c->state = ncclSystemError;
    c->last_error = p->error;
  }
}

// The join of ncclCommInitRank*: a new communicator, or an error found before there is one. A failure NCCL
// finds inside the join itself (two ranks on one GPU, a rank that never came) is left in the communicator's
// state, for the caller to return (blocking) or for the polls to report (non-blocking).
ncclResult_t join(int nranks, int rank, const ncclUniqueId& id, ncclComm_t* out, bool in_background = false) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  auto c = new ncclComm;
  c->nranks = nranks;
  c->rank = rank;
  if (nranks > 1) {
    // MPI's ranks when this process is one of them (mpirun, with the id bootstrapped over MPI); else the
    // address in the id (NCCL_COMM_ID)
    bool under_mpi = false;
#ifdef MOCO_EMU_MPI
    int initialised = 0, size = 0, me = -1;
    MPI_Initialized(&initialised);
    if (initialised) {
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      MPI_Comm_rank(MPI_COMM_WORLD, &me);
    }
    under_mpi = initialised && size == nranks && me == rank;
#endif
    const std::string address(id.internal + 8, strnlen(id.internal + 8, sizeof id.internal - 8));
    if (!under_mpi && !address.empty()) {
      // non-blocking: the join goes on while the caller polls (ncclCommGetAsyncError), so its watchdog can
      // end the wait; blocking: the call waits for it here
      start_join(c, address);
      if (!in_background) {
        while (!c->joining->done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        take_join(c);
      }
      *out = c;
      return ncclSuccess;
    }
#ifdef MOCO_EMU_MPI
    if (!under_mpi) {
      delete c;
      return ncclSystemError;  // neither MPI's ranks nor an address to meet at
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    const emu_nccl::Mesh::Gpu mine = this_gpu();
    std::vector<emu_nccl::Mesh::Gpu> all((size_t)nranks);
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all.data(), (int)sizeof mine, MPI_BYTE, c->mpi);
    refuse_shared_gpus(c, all);
#else
    delete c;
    return ncclSystemError;  // built without MPI and given no address: the other ranks cannot be reached
#endif
  }
  *out = c;
  return ncclSuccess;
}

}  // namespace

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  ncclComm_t c = nullptr;
  if (const ncclResult_t r = join(nranks, rank, id, &c); r != ncclSuccess) return r;
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
  ncclComm_t c = nullptr;
  if (const ncclResult_t r = join(nranks, rank, id, &c, /*in_background=*/true); r != ncclSuccess) return r;
  c->blocking = false;
  *comm = c;
  if (c->state != ncclSuccess) return ncclInProgress;  // the polls report the join, or its failure
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
  if (comm->joining) {  // a join at NCCL_COMM_ID: in progress until its thread is done
    if (!comm->joining->done) {
      *async_error = ncclInProgress;
      return ncclSuccess;
    }
    take_join(comm);
  }
  // operations either ran at their call or cannot fail (one rank); a non-blocking one is done at its first poll
  *async_error = comm->state;
  if (comm->state == ncclInProgress) comm->state = ncclSuccess;  // errors stay
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  size_t b = 0;
  if (const ncclResult_t r = check_collective(comm, type, count, &b); r != ncclSuccess) return r;
  if (op < ncclSum || op > ncclAvg) return refuse(comm, ncclInvalidArgument, "unknown reduction");
  if (count == 0) return ncclSuccess;
  if (comm->nranks == 1) return copy_on_one_rank(comm, stream, send, recv, count * b);
  if (type == ncclFloat16 || type == ncclBfloat16)
    return refuse(comm, ncclInvalidArgument, "the emulator reduces no fp16/bf16");
  if (op == ncclAvg && type != ncclFloat32 && type != ncclFloat64)
    return refuse(comm, ncclInvalidArgument, "the emulator averages only float and double");
  if (comm->mesh)
    return on_mesh(comm, stream, [=](std::string* e) { return mesh_all_reduce(comm, send, recv, count, type, op, e); });
#ifdef MOCO_EMU_MPI
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
  if (comm->mesh)
    return on_mesh(comm, stream, [=](std::string* e) { return mesh_all_gather(comm, send, recv, count * b, e); });
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
  if (comm->mesh)
    return on_mesh(comm, stream, [=](std::string* e) { return mesh_broadcast(comm, send, recv, count * b, root, e); });
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
  if (g.comm->mesh) {
    // sends to itself meet its receives from itself in issue order, as on one rank; the rest go over the mesh
    std::vector<emu_nccl::Mesh::Transfer> sends, recvs, self_sends, self_recvs;
    for (const PendingSend& t : g.sends)
      (t.peer == g.comm->rank ? self_sends : sends).push_back({t.peer, const_cast<void*>(t.data), t.bytes});
    for (const PendingRecv& t : g.recvs) (t.peer == g.comm->rank ? self_recvs : recvs).push_back({t.peer, t.data, t.bytes});
    if (self_sends.size() != self_recvs.size()) return ncclInvalidUsage;
    for (size_t i = 0; i < self_sends.size(); ++i)
      if (self_sends[i].bytes != self_recvs[i].bytes) return ncclInvalidUsage;
    ncclComm_t comm = g.comm;
    return on_mesh(comm, stream, [=](std::string* e) {
      for (size_t i = 0; i < self_sends.size(); ++i)
        if (self_sends[i].bytes) std::memmove(self_recvs[i].data, self_sends[i].data, self_sends[i].bytes);
      return comm->mesh->exchange(sends, recvs, e);
    });
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
