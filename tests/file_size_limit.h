// A file size limit for one scope: the kernel refuses bytes written past it (EFBIG), which fails a write
// mid-way even as root, where a read-only folder would not. SIGXFSZ is ignored meanwhile, so the write
// returns the error instead of ending the process. Both come back as they were when the scope ends.
#pragma once
#include <signal.h>
#include <sys/resource.h>

#include <stdexcept>

namespace moco::test {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    if (getrlimit(RLIMIT_FSIZE, &saved_) != 0) throw std::runtime_error("getrlimit(RLIMIT_FSIZE) failed");
    struct rlimit small = saved_;
    small.rlim_cur = bytes;
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &small) != 0) {
      signal(SIGXFSZ, old_handler_);
      throw std::runtime_error("setrlimit(RLIMIT_FSIZE) failed");
    }
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  struct rlimit saved_;
  void (*old_handler_)(int) = nullptr;
};

}  // namespace moco::test
