// The emulated NCCL's TCP mesh (emu_nccl_mesh.h).
//
// Joining, in three steps, each under the join's deadline:
// 1. every rank but 0 opens a listening socket of its own (any free port), connects to rank 0 at HOST:PORT
//    (retrying while rank 0 is not listening yet) and says hello: its rank, the rank count, its port, its GPU;
// 2. rank 0 answers everyone with the table of all ranks' addresses (as rank 0 saw each connection come),
//    ports and GPUs;
// 3. each rank connects to every lower rank but 0 and accepts a connection from every higher one. A rank
//    listens before it connects anywhere, so a connection never waits for the peer's accept.
// Each message of an exchange is its size (8 bytes) then its bytes; the exchange polls every connection at
// once, so two ranks that both send before they receive cannot block each other.
#include "emu_nccl_mesh.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>

namespace emu_nccl {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x6e63636c;  // "nccl"

struct Hello {
  uint32_t magic;
  int32_t rank, nranks;
  uint16_t port;  // where this rank listens for its higher peers
  Mesh::Gpu gpu;
};
struct Entry {  // one rank in the table rank 0 sends back
  uint32_t ip;  // network order, as rank 0 saw the rank's connection come from
  uint16_t port;
  Mesh::Gpu gpu;
};

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : (int)left;
}

// Waits until fd is ready for `events`; false at the deadline.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool read_full(int fd, void* data, size_t n, Clock::time_point deadline, std::string* error) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (!wait_for(fd, POLLIN, deadline)) return *error = "timed out waiting for a peer's message", false;
    const ssize_t r = recv(fd, p, n, 0);
    if (r == 0) return *error = "a peer closed its connection", false;
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return *error = errno_text("recv"), false;
    }
    p += r, n -= (size_t)r;
  }
  return true;
}

bool write_full(int fd, const void* data, size_t n, Clock::time_point deadline, std::string* error) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (!wait_for(fd, POLLOUT, deadline)) return *error = "timed out sending to a peer", false;
    const ssize_t r = send(fd, p, n, MSG_NOSIGNAL);  // a gone peer is an error here, not a SIGPIPE
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return *error = errno_text("send"), false;
    }
    p += r, n -= (size_t)r;
  }
  return true;
}

void tune(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small collectives must not wait on Nagle
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// A listening socket on addr (any address when null) and port (any when 0); -1 with *error set.
int listen_on(const sockaddr_in& addr, int backlog, std::string* error) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return *error = errno_text("socket"), -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, backlog) != 0) {
    *error = errno_text("bind/listen");
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// The next connection on a listening socket, before the deadline; -1 with *error set.
int accept_one(int listener, Clock::time_point deadline, sockaddr_in* from, std::string* error) {
  for (;;) {
    if (!wait_for(listener, POLLIN, deadline)) return *error = "timed out waiting for the other ranks to join", -1;
    socklen_t len = sizeof *from;
    const int fd = accept(listener, reinterpret_cast<sockaddr*>(from), &len);
    if (fd >= 0) return tune(fd), fd;
    if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
      return *error = errno_text("accept"), -1;
  }
}

// A connection to addr (`whom` names it in errors), retried until the deadline while nobody listens there yet;
// -1 with *error set. Each try waits at most until the deadline, and a socket that the kernel connected to
// itself (a free port chosen from the ephemeral range can be its own source port) is dropped and tried again.
int connect_to(const sockaddr_in& addr, const std::string& whom, Clock::time_point deadline, std::string* error) {
  for (;;) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return *error = errno_text("socket"), -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int err = 0;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        err = ETIMEDOUT;
        if (wait_for(fd, POLLOUT, deadline)) {
          socklen_t len = sizeof err;
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    if (err == 0) {
      sockaddr_in self{}, peer{};
      socklen_t a = sizeof self, b = sizeof peer;
      getsockname(fd, reinterpret_cast<sockaddr*>(&self), &a);
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &b);
      if (self.sin_port != peer.sin_port || self.sin_addr.s_addr != peer.sin_addr.s_addr) return tune(fd), fd;
      err = ECONNREFUSED;  // connected to itself: nobody listens there yet
    }
    close(fd);
    if (err != ECONNREFUSED && err != EINTR && err != ETIMEDOUT && err != ENOENT)
      return errno = err, *error = errno_text(("connect to " + whom).c_str()), -1;
    if (Clock::now() >= deadline) return *error = "timed out connecting to " + whom, -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool resolve(const std::string& host_port, sockaddr_in* addr, std::string* error) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0) return *error = "NCCL_COMM_ID=" + host_port + " is not HOST:PORT", false;
  const std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found)
    return *error = "cannot resolve NCCL_COMM_ID=" + host_port, false;
  std::memcpy(addr, found->ai_addr, sizeof *addr);
  freeaddrinfo(found);
  return true;
}

}  // namespace

std::unique_ptr<Mesh> Mesh::join(const std::string& host_port, int nranks, int rank, const Gpu& mine,
                                 double timeout_s, std::string* error) {
  const auto deadline = Clock::now() + std::chrono::milliseconds((int64_t)(timeout_s * 1000));
  sockaddr_in root{};
  if (!resolve(host_port, &root, error)) return nullptr;
  std::unique_ptr<Mesh> m(new Mesh(nranks, rank));
  std::vector<Entry> table((size_t)nranks);
  int listener = -1;
  struct Closer {
    int& fd;
    ~Closer() {
      if (fd >= 0) close(fd);
    }
  } closer{listener};

  if (rank == 0) {
    listener = listen_on(root, nranks, error);
    if (listener < 0) return *error = "rank 0 cannot listen at " + host_port + ": " + *error, nullptr;
    table[0].gpu = mine;
    for (int joined = 1; joined < nranks; ++joined) {
      sockaddr_in from{};
      const int fd = accept_one(listener, deadline, &from, error);
      if (fd < 0) return nullptr;
      Hello h{};
      if (!read_full(fd, &h, sizeof h, deadline, error)) return close(fd), nullptr;
      if (h.magic != kMagic || h.nranks != nranks || h.rank <= 0 || h.rank >= nranks || m->fd_[(size_t)h.rank] >= 0) {
        *error = "a peer joined as rank " + std::to_string(h.rank) + " of " + std::to_string(h.nranks) +
                 ", which does not fit " + std::to_string(nranks) + " ranks";
        close(fd);
        return nullptr;
      }
      m->fd_[(size_t)h.rank] = fd;
      table[(size_t)h.rank] = Entry{from.sin_addr.s_addr, h.port, h.gpu};
    }
    for (int r = 1; r < nranks; ++r)
      if (!write_full(m->fd_[(size_t)r], table.data(), table.size() * sizeof(Entry), deadline, error)) return nullptr;
  } else {
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_ANY);
    listener = listen_on(any, nranks, error);
    if (listener < 0) return nullptr;
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
    const int fd = connect_to(root, "rank 0 at " + host_port, deadline, error);
    if (fd < 0) return nullptr;
    m->fd_[0] = fd;
    const Hello h{kMagic, rank, nranks, ntohs(bound.sin_port), mine};
    if (!write_full(fd, &h, sizeof h, deadline, error) ||
        !read_full(fd, table.data(), table.size() * sizeof(Entry), deadline, error))
      return nullptr;
    for (int q = 1; q < rank; ++q) {  // lower ranks: connect, say who this is
      sockaddr_in peer{};
      peer.sin_family = AF_INET;
      peer.sin_addr.s_addr = table[(size_t)q].ip;
      peer.sin_port = htons(table[(size_t)q].port);
      const int p = connect_to(peer, "rank " + std::to_string(q), deadline, error);
      if (p < 0) return nullptr;
      m->fd_[(size_t)q] = p;
      const int32_t me = rank;
      if (!write_full(p, &me, sizeof me, deadline, error)) return nullptr;
    }
    for (int q = rank + 1; q < nranks; ++q) {  // higher ranks: accept, learn who it is
      sockaddr_in from{};
      const int p = accept_one(listener, deadline, &from, error);
      if (p < 0) return nullptr;
      int32_t who = -1;
      if (!read_full(p, &who, sizeof who, deadline, error)) return close(p), nullptr;
      if (who <= rank || who >= nranks || m->fd_[(size_t)who] >= 0) {
        *error = "a peer connected as rank " + std::to_string(who);
        close(p);
        return nullptr;
      }
      m->fd_[(size_t)who] = p;
    }
  }
  for (const Entry& e : table) m->gpus_.push_back(e.gpu);
  return m;
}

Mesh::~Mesh() {
  for (int fd : fd_)
    if (fd >= 0) close(fd);
}

bool Mesh::exchange(const std::vector<Transfer>& sends, const std::vector<Transfer>& recvs, std::string* error) {
  // Per peer: its queue of sends and of receives, in call order, and how far the current one has got (the
  // 8-byte size first, then the bytes).
  struct Side {
    std::vector<const Transfer*> queue;
    size_t at = 0, done = 0;  // the current transfer, and its bytes moved (size header included)
    uint64_t header = 0;      // the size being sent, or the size received
  };
  std::vector<Side> out((size_t)nranks_), in((size_t)nranks_);
  for (const Transfer& t : sends) {
    if (t.peer < 0 || t.peer >= nranks_ || t.peer == rank_) return *error = "a send to rank " + std::to_string(t.peer), false;
    out[(size_t)t.peer].queue.push_back(&t);
  }
  for (const Transfer& t : recvs) {
    if (t.peer < 0 || t.peer >= nranks_ || t.peer == rank_) return *error = "a receive from rank " + std::to_string(t.peer), false;
    in[(size_t)t.peer].queue.push_back(&t);
  }
  constexpr size_t kHead = sizeof(uint64_t);
  for (;;) {
    std::vector<pollfd> fds;
    for (int p = 0; p < nranks_; ++p) {
      short events = 0;
      if (out[(size_t)p].at < out[(size_t)p].queue.size()) events |= POLLOUT;
      if (in[(size_t)p].at < in[(size_t)p].queue.size()) events |= POLLIN;
      if (events) fds.push_back(pollfd{fd_[(size_t)p], events, 0});
    }
    if (fds.empty()) return true;
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return *error = errno_text("poll"), false;
    }
    for (const pollfd& f : fds) {
      int p = 0;
      while (fd_[(size_t)p] != f.fd) ++p;
      if (f.revents & (POLLERR | POLLNVAL)) return *error = "the connection to rank " + std::to_string(p) + " failed", false;
      Side& o = out[(size_t)p];
      if ((f.revents & POLLOUT) && o.at < o.queue.size()) {
        const Transfer& t = *o.queue[o.at];
        o.header = t.bytes;
        const char* src = o.done < kHead ? reinterpret_cast<const char*>(&o.header) + o.done
                                         : static_cast<const char*>(t.data) + (o.done - kHead);
        const size_t left = o.done < kHead ? kHead - o.done : t.bytes - (o.done - kHead);
        const ssize_t r = left ? send(f.fd, src, left, MSG_NOSIGNAL) : 0;
        if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
          return *error = errno_text("send") + " (to rank " + std::to_string(p) + ")", false;
        if (r > 0) o.done += (size_t)r;
        if (o.done == kHead + t.bytes) ++o.at, o.done = 0;
      }
      Side& i = in[(size_t)p];
      if ((f.revents & (POLLIN | POLLHUP)) && i.at < i.queue.size()) {
        const Transfer& t = *i.queue[i.at];
        char* dst = i.done < kHead ? reinterpret_cast<char*>(&i.header) + i.done
                                   : static_cast<char*>(t.data) + (i.done - kHead);
        const size_t left = i.done < kHead ? kHead - i.done : t.bytes - (i.done - kHead);
        const ssize_t r = left ? recv(f.fd, dst, left, 0) : 0;
        if (left && r == 0) return *error = "rank " + std::to_string(p) + " closed its connection", false;
        if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
          return *error = errno_text("recv") + " (from rank " + std::to_string(p) + ")", false;
        if (r > 0) i.done += (size_t)r;
        if (i.done == kHead && i.header != t.bytes)
          return *error = "rank " + std::to_string(p) + " sent " + std::to_string(i.header) + " bytes where " +
                          std::to_string(t.bytes) + " were to be received",
                 false;
        if (i.done == kHead + t.bytes) ++i.at, i.done = 0;
      }
    }
  }
}

}  // namespace emu_nccl
