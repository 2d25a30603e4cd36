// The one-rank NCCL of the emulated tests (include/nccl.h): collectives copy, sends and receives to oneself are
// matched in issue order when their group ends, as NCCL pairs them. Every operation is queued on its stream
// (emu_streams.h) and runs when the host next needs it; arguments are checked at the call.
#include <cstring>
#include <string>
#include <vector>

#include "include/nccl.h"
#include "emu_streams.h"

struct ncclComm {
  bool aborted = false;
  std::string last_error;
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
  cudaStream_t stream;
};
struct PendingRecv {
  void* data;
  size_t bytes;
  cudaStream_t stream;
};

// The open group of this host thread (NCCL's groups are per thread).
struct Group {
  int depth = 0;
  std::vector<PendingSend> sends;
  std::vector<PendingRecv> recvs;
};
thread_local Group group;

ncclResult_t usable(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  return comm->aborted ? ncclInvalidUsage : ncclSuccess;
}

ncclResult_t refuse(ncclComm_t comm, ncclResult_t r, const std::string& why) {
  if (comm) comm->last_error = why;
  return r;
}

ncclResult_t copy(const void* send, void* recv, size_t count, ncclDataType_t type, ncclComm_t comm,
                  cudaStream_t stream) {
  if (const ncclResult_t r = usable(comm); r != ncclSuccess) return r;
  const size_t b = type_bytes(type);
  if (b == 0) return refuse(comm, ncclInvalidArgument, "unknown data type");
  if (count && send != recv) cuda_emu::enqueue(stream, [=] { std::memmove(recv, send, count * b); });
  return ncclSuccess;
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

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, "cuda_emu", 8);
  return ncclSuccess;
}
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  if (nranks != 1) return ncclSystemError;  // the other ranks would be other processes; the emulator has none
  *comm = new ncclComm;
  return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  cuda_emu::sync_device();  // the communicator's queued operations finish first
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  cuda_emu::sync_device();  // nothing can hang on one rank: its queued operations just finish
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (!comm) return ncclInvalidArgument;
  *async_error = ncclSuccess;  // nothing can fail asynchronously on one rank
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (op < ncclSum || op > ncclAvg) return refuse(comm, ncclInvalidArgument, "unknown reduction");
  return copy(send, recv, count, type, comm, stream);  // any reduction over one rank is that rank's value
}
ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
  return copy(send, recv, count, type, comm, stream);
}
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  if (root != 0) return refuse(comm, ncclInvalidArgument, "root " + std::to_string(root) + " of 1 rank");
  return copy(send, recv, count, type, comm, stream);
}

ncclResult_t ncclSend(const void* send, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  if (const ncclResult_t r = usable(comm); r != ncclSuccess) return r;
  if (peer != 0) return refuse(comm, ncclInvalidArgument, "peer " + std::to_string(peer) + " of 1 rank");
  if (group.depth == 0) return refuse(comm, ncclInvalidUsage, "a send to oneself outside a group never completes");
  group.sends.push_back({send, count * type_bytes(type), stream});
  return ncclSuccess;
}
ncclResult_t ncclRecv(void* recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  if (const ncclResult_t r = usable(comm); r != ncclSuccess) return r;
  if (peer != 0) return refuse(comm, ncclInvalidArgument, "peer " + std::to_string(peer) + " of 1 rank");
  if (group.depth == 0) return refuse(comm, ncclInvalidUsage, "a receive from oneself outside a group never completes");
  group.recvs.push_back({recv, count * type_bytes(type), stream});
  return ncclSuccess;
}
ncclResult_t ncclGroupStart() {
  ++group.depth;
  return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
  if (group.depth == 0) return ncclInvalidUsage;
  if (--group.depth > 0) return ncclSuccess;
  // The k-th send to a peer meets the k-th receive from it, and their sizes must agree.
  // The whole group is one piece of work on one stream (moco issues each group on one stream; several
  // streams in one group would need their cross-stream joins modelled).
  ncclResult_t r = ncclSuccess;
  if (group.sends.size() != group.recvs.size()) r = ncclInvalidUsage;
  for (size_t i = 0; r == ncclSuccess && i < group.sends.size(); ++i)
    if (group.sends[i].bytes != group.recvs[i].bytes || group.sends[i].stream != group.sends[0].stream ||
        group.recvs[i].stream != group.sends[0].stream)
      r = ncclInvalidUsage;
  if (r == ncclSuccess && !group.sends.empty())
    cuda_emu::enqueue(group.sends[0].stream, [sends = group.sends, recvs = group.recvs] {
      for (size_t i = 0; i < sends.size(); ++i)
        if (sends[i].bytes) std::memmove(recvs[i].data, sends[i].data, sends[i].bytes);
    });
  group.sends.clear();
  group.recvs.clear();
  return r;
}
