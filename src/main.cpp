// The `moco` program: subcommands only; each lives in its own source file.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "moco/error.h"
#include "moco/version.h"

static void print_usage() {
  std::printf(
      "moco %s: MoCo self-supervised pretraining engine (CPU reference path%s)\n\n"
      "usage: moco <command> [options]\n\n"
      "commands:\n"
      "  info        print build configuration and devices\n"
      "  help        this text\n",
      moco::kVersion, moco::kHaveCuda ? " + CUDA backend" : "");
}

int main(int argc, char** argv) {
  try {
    std::string cmd = argc > 1 ? argv[1] : "help";
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      print_usage();
      return 0;
    }
    if (cmd == "info") {
      std::printf("moco %s\ncuda backend compiled: %s\n", moco::kVersion, moco::kHaveCuda ? "yes" : "no");
      return 0;
    }
    moco::fail("unknown command '", cmd, "'; expected one of: info, help (run `moco help`)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moco: error: %s\n", e.what());
    return 2;
  }
}
