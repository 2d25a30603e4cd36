// An environment variable set (or removed) for one scope, and put back as it was when the scope ends, however
// it ends: a test's failed assertion returns early, and the next test in the binary must not inherit it.
#pragma once
#include <cstdlib>
#include <optional>
#include <string>

namespace moco::test {

class ScopedEnv {
 public:
  // value null: the variable is removed for the scope
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* before = std::getenv(name)) before_ = before;
    set(value);
  }
  ~ScopedEnv() { set(before_ ? before_->c_str() : nullptr); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  // another value within the same scope; the one restored at its end stays the first one's
  void set(const char* value) {
    if (value)
      ::setenv(name_.c_str(), value, 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> before_;  // empty: it was not set
};

}  // namespace moco::test
