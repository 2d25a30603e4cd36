// What a call refuses with: the moco::Error's message, or "(accepted)" when it returns normally.
#pragma once
#include <string>

#include "moco/error.h"

namespace moco::test {

template <class Call>
std::string error_text(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace moco::test
