// --multiprocessing-distributed: planning the ranks of one node and starting them (local_ranks.h).
#include "moco/local_ranks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "moco/error.h"

extern char** environ;

namespace moco {

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  MOCO_CHECK(fd >= 0, "cannot open a socket to find a free port: ", std::strerror(errno),
             "; give --dist-url tcp://127.0.0.1:PORT");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = bind(fd, (sockaddr*)&addr, sizeof addr) == 0 && getsockname(fd, (sockaddr*)&addr, &len) == 0;
  close(fd);
  MOCO_CHECK(ok, "cannot find a free port: ", std::strerror(errno), "; give --dist-url tcp://127.0.0.1:PORT");
  return ntohs(addr.sin_port);
}

namespace {

int64_t env_integer(const Environment& env, const char* key) {
  const auto it = env.find(key);
  MOCO_CHECK(it != env.end(), "a rank of --multiprocessing-distributed has no ", key, " in its environment");
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  MOCO_CHECK(!it->second.empty() && *end == '\0', key, "=", it->second, " is not an integer");
  return v;
}

}  // namespace

// The flags' part of the plan (per_node 1; port 0 when one node leaves --dist-url out).
static LocalRanksPlan plan_from_flags(int64_t world_flag, int64_t rank_flag, const std::string& dist_url) {
  LocalRanksPlan p;
  MOCO_CHECK(world_flag == -1 || world_flag >= 1, "--world-size ", world_flag,
             ": with --multiprocessing-distributed it counts nodes, at least 1");
  p.nodes = world_flag == -1 ? 1 : (int)world_flag;
  MOCO_CHECK(rank_flag == -1 || (rank_flag >= 0 && rank_flag < p.nodes), "--rank ", rank_flag,
             ": with --multiprocessing-distributed it is this node's index, in [0, ", p.nodes, ")");
  MOCO_CHECK(p.nodes == 1 || rank_flag != -1, "--world-size ", p.nodes,
             " nodes with --multiprocessing-distributed: give each node its --rank (0 to ", p.nodes - 1, ")");
  p.node_rank = rank_flag == -1 ? 0 : (int)rank_flag;
  if (dist_url.empty()) {
    MOCO_CHECK(p.nodes == 1, "--world-size ", p.nodes, " nodes with --multiprocessing-distributed: give --dist-url "
               "tcp://HOST:PORT, HOST being node 0 and PORT a free port there, the same on every node");
    p.host = "127.0.0.1";  // on a free port, found once the node's GPUs are known
    return p;
  }
  const std::string tcp = "tcp://";
  const size_t colon = dist_url.rfind(':');
  MOCO_CHECK(dist_url.compare(0, tcp.size(), tcp) == 0 && colon != std::string::npos && colon > tcp.size(),
             "--dist-url ", dist_url, ": expected tcp://HOST:PORT (with --multiprocessing-distributed, node 0's "
             "address, where rank 0 listens)");
  p.host = dist_url.substr(tcp.size(), colon - tcp.size());
  const std::string port = dist_url.substr(colon + 1);
  char* end = nullptr;
  const long v = std::strtol(port.c_str(), &end, 10);
  MOCO_CHECK(!port.empty() && *end == '\0' && v >= 1 && v <= 65535, "--dist-url ", dist_url, ": the port '", port,
             "' is not in [1, 65535]");
  p.port = (int)v;
  return p;
}

LocalRanksPlan plan_local_ranks(int gpus, int64_t world_flag, int64_t rank_flag, const std::string& dist_url,
                                const std::string& no_gpu_reason) {
  LocalRanksPlan p = plan_from_flags(world_flag, rank_flag, dist_url);
  MOCO_CHECK(gpus > 0, "--multiprocessing-distributed starts one process per GPU, and none is visible",
             no_gpu_reason.empty() ? "" : ": ", no_gpu_reason);
  p.per_node = gpus;
  if (p.port == 0) p.port = free_local_port();  // one node without --dist-url
  return p;
}

Environment local_rank_environment(const LocalRanksPlan& p, int i) {
  MOCO_CHECK(i >= 0 && i < p.per_node, "local rank ", i, " outside [0, ", p.per_node, ")");
  const std::string port = std::to_string(p.port);
  return {{"RANK", std::to_string(p.node_rank * p.per_node + i)},
          {"WORLD_SIZE", std::to_string(p.nodes * p.per_node)},
          {"LOCAL_RANK", std::to_string(i)},
          {"MASTER_ADDR", p.host},
          {"MASTER_PORT", port},
          {"NCCL_COMM_ID", p.host + ":" + port},
          {"MOCO_RANKS_PER_NODE", std::to_string(p.per_node)}};
}

int ranks_per_node_from_env(const Environment& env) {
  if (!env.count("MOCO_RANKS_PER_NODE")) return 0;
  const int64_t g = env_integer(env, "MOCO_RANKS_PER_NODE");
  MOCO_CHECK(g >= 1 && g <= 1 << 16, "MOCO_RANKS_PER_NODE=", g, " is not a number of processes per node");
  return (int)g;
}

LocalRankShare local_rank_share(const Environment& env, int64_t world_flag, int64_t rank_flag, int64_t node_batch,
                                int node_workers) {
  const int g = ranks_per_node_from_env(env);
  MOCO_CHECK(g > 0, "no MOCO_RANKS_PER_NODE: this process was not started by --multiprocessing-distributed");
  LocalRankShare s;
  s.launch = launch_from_env(env);
  MOCO_CHECK(s.launch.source == "torchrun", "a rank of --multiprocessing-distributed found the launcher '",
             s.launch.source, "' instead of the variables its parent set; do not start it under another launcher");
  const int64_t nodes = world_flag == -1 ? 1 : world_flag;
  MOCO_CHECK(s.launch.world == nodes * g, "rank ", s.launch.rank, ": WORLD_SIZE=", s.launch.world, " is not ",
             nodes, " node(s) x ", g, " processes");
  MOCO_CHECK(rank_flag == -1 || s.launch.rank / g == rank_flag, "rank ", s.launch.rank, " is not on node --rank ",
             rank_flag);
  const LocalRankShare share = share_of_node(node_batch, node_workers, g);
  s.batch_size = share.batch_size;
  s.workers = share.workers;
  return s;
}

LocalRankShare share_of_node(int64_t node_batch, int node_workers, int g) {
  MOCO_CHECK(node_batch >= g, "--batch-size ", node_batch, " is the node's batch under --multiprocessing-distributed "
             "and must give each of its ", g, " processes at least one image");
  LocalRankShare s;
  s.batch_size = node_batch / g;
  s.workers = (node_workers + g - 1) / g;
  return s;
}

namespace {

// SIGINT and SIGTERM that reach the parent while its ranks run, counted by a handler (which may run on any of
// its threads: the CUDA runtime's among them) and passed on by the waiting loop.
std::atomic<int> signals_seen[2];
void count_signal(int sig) { signals_seen[sig == SIGINT ? 0 : 1].fetch_add(1); }

}  // namespace

int run_local_ranks(const std::vector<std::string>& argv, int n, const std::function<Environment(int)>& extra_env,
                    double grace_s) {
  MOCO_CHECK(!argv.empty() && n >= 1, "run_local_ranks needs a command and at least one copy");
  // Every copy's command line and environment first, so that nothing can throw once copies are running.
  // Copies only call async-signal-safe functions between fork and execve.
  const Environment base = process_environment();
  std::vector<std::vector<std::string>> env_texts((size_t)n);
  for (int i = 0; i < n; ++i) {
    Environment env = base;
    for (auto& [k, v] : extra_env(i)) env[k] = v;
    for (auto& [k, v] : env) env_texts[(size_t)i].push_back(k + "=" + v);
  }
  std::vector<std::string> argv_copy = argv;
  std::vector<char*> args;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<std::vector<char*>> envps((size_t)n);
  for (int i = 0; i < n; ++i) {
    for (auto& e : env_texts[(size_t)i]) envps[(size_t)i].push_back(e.data());
    envps[(size_t)i].push_back(nullptr);
  }

  signals_seen[0].store(0);
  signals_seen[1].store(0);
  struct sigaction sa {}, dfl {}, previous_int, previous_term, previous_chld;
  sa.sa_handler = count_signal;
  sigemptyset(&sa.sa_mask);
  dfl.sa_handler = SIG_DFL;  // SIGCHLD as ignored (inherited) would make waitpid never see a copy end
  sigemptyset(&dfl.sa_mask);
  MOCO_CHECK(sigaction(SIGINT, &sa, &previous_int) == 0 && sigaction(SIGTERM, &sa, &previous_term) == 0 &&
                 sigaction(SIGCHLD, &dfl, &previous_chld) == 0,
             "cannot install the signal handlers of --multiprocessing-distributed");
  auto restore = [&] {
    sigaction(SIGINT, &previous_int, nullptr);
    sigaction(SIGTERM, &previous_term, nullptr);
    sigaction(SIGCHLD, &previous_chld, nullptr);
  };
  const pid_t parent = getpid();
  // SIGINT and SIGTERM stay blocked across each fork, so that a copy cannot take one with this process's
  // handler before its own default actions are back: a signal that comes then waits, and ends the copy.
  sigset_t stop_signals, unblocked;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);

  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pthread_sigmask(SIG_BLOCK, &stop_signals, &unblocked);
    const pid_t pid = fork();
    if (pid == 0) {
      // Its own process group, so a Ctrl-C at the terminal reaches each copy once, through the parent.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(128 + SIGTERM);  // the parent died before the line above
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      sigprocmask(SIG_SETMASK, &unblocked, nullptr);
      execve(args[0], args.data(), envps[(size_t)i].data());
      _exit(127);
    }
    const int err = errno;
    pthread_sigmask(SIG_SETMASK, &unblocked, nullptr);
    if (pid < 0) {
      for (pid_t p : pids) kill(-p, SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      restore();
      MOCO_CHECK(false, "cannot start local rank ", i, ": fork failed: ", std::strerror(err));
    }
    setpgid(pid, pid);  // here too, so that a signal to the group cannot come before the copy made it
    pids.push_back(pid);
  }
  // Signals go to each copy's process group: the rank and whatever it started, as a terminal would send them.
  auto signal_copies = [&](const std::vector<bool>& alive, int sig) {
    for (int i = 0; i < n; ++i)
      if (alive[i]) kill(-pids[i], sig);
  };

  std::vector<bool> alive(n, true);
  int alive_count = n, status_out = 0, passed_on[2] = {0, 0};
  bool failing = false, killed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (alive_count > 0) {
    for (int k = 0; k < 2; ++k)  // each signal as often as it came: a second Ctrl-C ends the ranks at once
      for (; passed_on[k] < signals_seen[k].load(); ++passed_on[k])
        signal_copies(alive, k == 0 ? SIGINT : SIGTERM);
    for (int i = 0; i < n; ++i) {
      if (!alive[i]) continue;
      int st = 0;
      const pid_t r = waitpid(pids[i], &st, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      alive[i] = false;  // ended (r < 0: not this process's child any more, nothing left to wait for)
      --alive_count;
      const int code = r < 0 ? 1 : WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
      if (code == 0) continue;
      if (!failing) status_out = code;  // the result: the first copy's non-zero status
      // A copy that stops with 128 + a signal that was passed on has stopped as asked (and checkpointed): the
      // others are stopping the same way. Any other end is a failure, and the others are asked to stop.
      const bool asked = (code == 128 + SIGINT && passed_on[0] > 0) || (code == 128 + SIGTERM && passed_on[1] > 0);
      if (asked || failing) continue;
      failing = true;
      // the first failure says which copy and how: a rank killed by SIGKILL that nobody sent is, on a training
      // node, most often the kernel's out-of-memory killer (the data loaders' host memory)
      if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        std::fprintf(stderr, "moco: local rank %d (pid %d) was killed by SIGKILL; if nobody sent it, the kernel's "
                     "out-of-memory killer may have (dmesg says; fewer -j workers or a smaller -b use less host "
                     "memory); stopping the node's other ranks\n", i, (int)pids[i]);
      else if (WIFSIGNALED(st))
        std::fprintf(stderr, "moco: local rank %d (pid %d) was ended by signal %d (%s); stopping the node's other "
                     "ranks\n", i, (int)pids[i], WTERMSIG(st), strsignal(WTERMSIG(st)));
      else
        std::fprintf(stderr, "moco: local rank %d (pid %d) failed with exit status %d (its error is above); "
                     "stopping the node's other ranks\n", i, (int)pids[i], code);
      signal_copies(alive, SIGTERM);
      deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                         std::chrono::duration<double>(grace_s));
    }
    if (!killed && std::chrono::steady_clock::now() >= deadline) {
      killed = true;
      signal_copies(alive, SIGKILL);
    }
    if (alive_count > 0) usleep(20 * 1000);
  }
  restore();
  return status_out;
}

}  // namespace moco
