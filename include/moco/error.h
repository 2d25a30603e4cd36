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

}  // namespace moco

// MOCO_CHECK(cond, "message pieces", ...): throws moco::Error with the pieces when cond is false.
#define MOCO_CHECK(cond, ...)                      \
  do {                                             \
    if (!(cond)) ::moco::fail(__VA_ARGS__);        \
  } while (0)
