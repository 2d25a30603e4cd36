// The subcommands of the `moco` program; each parses its own flags (argv[2..]) and returns the exit code.
#pragma once

namespace moco {

int cmd_train(int argc, char** argv);
int cmd_knn(int argc, char** argv);
int cmd_lincls(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_bench(int argc, char** argv);

}  // namespace moco
