// Checked errors. Public entry points validate their arguments and throw moco::Error with a message that
// names the bad value and what was expected; main() catches it and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace moco {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The training diverged: a loss (or an update) that is not finite. Its own type, because what to do differs:
// resume from the last good checkpoint with a lower learning rate, where any other failure of a step (a lost
// rank, a device error) is resumed as it was.
struct Diverged : Error {
  using Error::Error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from pieces: fail("batch size ", n, " exceeds dataset size ", m).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

// fail() for a diverged run: throws moco::Diverged.
template <class... Parts>
[[noreturn]] void fail_diverged(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Diverged(os.str());
}

}  // namespace moco

// MOCO_CHECK(cond, "message pieces", ...): throws moco::Error with the pieces when cond is false.
#define MOCO_CHECK(cond, ...)                      \
  do {                                             \
    if (!(cond)) ::moco::fail(__VA_ARGS__);        \
  } while (0)
