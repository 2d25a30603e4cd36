// The --out folder of a run (out_dir.h).
#include "moco/out_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "moco/error.h"

namespace moco {

void make_out_dir(const std::string& dir) {
  std::string partial;
  std::stringstream ss(dir);
  if (!dir.empty() && dir[0] == '/') partial = "/";
  for (std::string part; std::getline(ss, part, '/');) {
    if (part.empty()) continue;
    partial += part + "/";
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      fail("cannot create --out ", dir, ": ", std::strerror(errno), " at ", partial);
  }
  const std::string probe = dir + "/.write_test";
  std::FILE* f = std::fopen(probe.c_str(), "w");
  MOCO_CHECK(f, "--out ", dir, " is not writable: ", std::strerror(errno), "; choose another folder with --out");
  std::fclose(f);
  std::remove(probe.c_str());
}

}  // namespace moco
