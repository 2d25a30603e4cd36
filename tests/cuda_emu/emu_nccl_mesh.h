// The emulated NCCL's ranks joined over TCP, as real NCCL joins them under NCCL_COMM_ID=<host>:<port>: the
// launches that set that variable (torchrun, srun, and `moco train --multiprocessing-distributed`) start
// their ranks as separate processes with no MPI between them. Rank 0 listens at the address; every other
// rank connects to it, and the ranks then connect to each other, one TCP connection per pair (a full mesh).
// emu_nccl.cpp carries every collective and every send and receive over it.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace emu_nccl {

class Mesh {
 public:
  // Joins the ranks at host_port ("HOST:PORT", rank 0's address). Each rank tells the others its host name
  // and device, so that two ranks on one GPU can be refused as NCCL refuses them. Waits at most timeout_s for
  // the other ranks; returns null with *error set when they do not all come, or on a network error.
  struct Gpu {
    char host[64];
    int device;
  };
  static std::unique_ptr<Mesh> join(const std::string& host_port, int nranks, int rank, const Gpu& mine,
                                    double timeout_s, std::string* error);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  const std::vector<Gpu>& gpus() const { return gpus_; }  // (nranks) as each rank told

  // One transfer between this rank and `peer` (not itself).
  struct Transfer {
    int peer;
    void* data;    // read for a send, written for a receive
    size_t bytes;
  };
  // Carries all the sends and receives at once, each pair's in its order, so that no order of calls between
  // the ranks can deadlock. The k-th send to a peer is that peer's k-th receive from this rank; their sizes
  // must agree (each message carries its size, and a disagreement is an error, as it would hang NCCL).
  // False with *error set on a size disagreement or a lost peer.
  bool exchange(const std::vector<Transfer>& sends, const std::vector<Transfer>& recvs, std::string* error);

 private:
  Mesh(int nranks, int rank) : nranks_(nranks), rank_(rank), fd_((size_t)nranks, -1) {}
  int nranks_, rank_;
  std::vector<int> fd_;  // (nranks) the connection to each peer; -1 for this rank
  std::vector<Gpu> gpus_;
};

}  // namespace emu_nccl
