// Command-line flags: a declared set of options per subcommand, parsed with errors that name the bad flag or
// value and what was expected. Accepts `--name value`, `--name=value`, short aliases (`-b 256`), boolean
// switches (`--mlp`), lists (`--schedule 120 160`) and positional arguments. `--help` prints every option
// with its default.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moco {

class Args {
 public:
  Args(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  // Declarations. `names` is "--long" or "-s,--long" (extra long aliases after more commas: "--wd,--weight-decay").
  void flag(const std::string& names, const std::string& help);  // boolean switch, default off
  void option(const std::string& names, const std::string& def, const std::string& help);
  void list(const std::string& names, const std::string& def, const std::string& help);  // values until the next flag
  void positional(const std::string& name, const std::string& help);                     // optional, at most one

  // Parses argv[first..]; returns false when --help was given (the help text is already printed).
  bool parse(int argc, char** argv, int first);

  // Replaces the default of an option the command line did not give (defaults that depend on other values).
  void set_default(const std::string& name, const std::string& value);
  bool has(const std::string& name) const;  // given on the command line (not just defaulted)
  bool on(const std::string& name) const;   // a switch's value
  std::string str(const std::string& name) const;
  int64_t integer(const std::string& name, int64_t lo, int64_t hi) const;  // checked against [lo, hi]
  double real(const std::string& name, double lo, double hi) const;
  std::vector<int64_t> integers(const std::string& name) const;
  std::vector<int64_t> integers(const std::string& name, int64_t lo, int64_t hi) const;  // each checked
  std::string help_text() const;

 private:
  struct Opt {
    std::vector<std::string> names;  // as declared, long name first
    std::string help, def;
    enum Kind { Switch, Value, List } kind;
    std::vector<std::string> values;
    bool given = false;
  };
  Opt& find(const std::string& name);
  const Opt& get(const std::string& name) const;
  std::string program_, summary_;
  std::vector<Opt> opts_;
  std::string positional_name_, positional_help_;
};

}  // namespace moco
