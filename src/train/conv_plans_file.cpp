// cuDNN's convolution plans beside a run's checkpoint (train.h: save_conv_plans, load_conv_plans): the GPU
// step's choices by timing, written at every checkpoint and given back to the run that resumes from it.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "moco/checkpoint.h"
#include "moco/comm.h"
#include "moco/error.h"
#include "moco/train.h"

namespace moco {

namespace {

std::string plans_path(const std::string& folder, int rank, int world) {
  const std::string dir = folder.empty() ? std::string(".") : folder;
  return world == 1 ? dir + "/conv_plans.txt" : dir + "/conv_plans.rank" + std::to_string(rank) + ".txt";
}

}  // namespace

void save_conv_plans(const DeviceStep& device, const std::string& out, int rank, int world) {
  static bool reported = false;  // once per process: a folder that cannot be written stays so
  try {
    write_file_atomically(plans_path(out, rank, world), device.conv_plans());
  } catch (const Error& e) {
    if (!reported)
      std::fprintf(stderr, "rank %d: cannot keep its convolution plans beside the checkpoint (%s); a resumed run "
                   "will search again and may round differently\n", rank, e.what());
    reported = true;
  }
}

void load_conv_plans(DeviceStep& device, Communicator& comm, const std::string& resume, int rank, int world) {
  std::string path, error;
  const char* env = std::getenv("MOCO_CONV_PLANS");
  if (env && *env) {
    path = env;  // a file for every rank, or a run folder: each rank its own file there
    if (std::filesystem::is_directory(path)) path = plans_path(path, rank, world);
  } else if (!resume.empty()) {
    const std::string beside = plans_path(std::filesystem::path(resume).parent_path().string(), rank, world);
    if (std::ifstream(beside).good()) path = beside;  // none: a run from before plans were kept, or CPU
  }
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in.good()) {
      error = "MOCO_CONV_PLANS: " + path + " cannot be read on rank " + std::to_string(rank) +
              "; unset it, or name a run folder or a conv_plans.txt a run wrote";
    } else {
      std::stringstream text;
      text << in.rdbuf();
      try {
        device.use_conv_plans(text.str());
      } catch (const Error& e) {
        error = path + ": " + e.what();
      }
    }
  }
  // every rank stops, or none: a rank alone in its error would leave the others waiting at a collective
  const bool failed = !error.empty();
  if (world > 1 ? comm.any(failed) : failed)
    fail(failed ? error : "another rank could not take its convolution plans (see its message)");
  if (!path.empty() && rank == 0) std::fprintf(stderr, "convolution plans from %s\n", path.c_str());
}

}  // namespace moco
