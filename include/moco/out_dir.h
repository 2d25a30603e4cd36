// The --out folder of `moco train` and `moco lincls`: made with its parents, and checked to be writable
// before the run starts, so a bad path stops it with the reason instead of at its first checkpoint.
#pragma once
#include <string>

namespace moco {

void make_out_dir(const std::string& dir);

}  // namespace moco
