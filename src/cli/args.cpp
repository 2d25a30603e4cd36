#include "moco/args.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "moco/error.h"

namespace moco {

static std::vector<std::string> split_names(const std::string& names) {
  std::vector<std::string> out;
  std::stringstream ss(names);
  std::string n;
  while (std::getline(ss, n, ',')) out.push_back(n);
  // the first long name is the canonical one
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].rfind("--", 0) == 0) {
      std::swap(out[0], out[i]);
      break;
    }
  return out;
}

void Args::flag(const std::string& names, const std::string& help) {
  opts_.push_back({split_names(names), help, "", Opt::Switch, {}, false});
}
void Args::option(const std::string& names, const std::string& def, const std::string& help) {
  opts_.push_back({split_names(names), help, def, Opt::Value, {def}, false});
}
void Args::list(const std::string& names, const std::string& def, const std::string& help) {
  Opt o{split_names(names), help, def, Opt::List, {}, false};
  std::stringstream ss(def);
  for (std::string v; ss >> v;) o.values.push_back(v);
  opts_.push_back(o);
}
void Args::positional(const std::string& name, const std::string& help) {
  positional_name_ = name;
  positional_help_ = help;
}

Args::Opt& Args::find(const std::string& name) {
  for (Opt& o : opts_)
    for (const std::string& n : o.names)
      if (n == name) return o;
  std::string known;
  for (const Opt& o : opts_) known += " " + o.names[0];
  fail("unknown option '", name, "' for `", program_, "`; run `", program_, " --help` for the list:", known);
}

const Args::Opt& Args::get(const std::string& name) const {
  for (const Opt& o : opts_)
    if (o.names[0] == name || o.names[0] == "--" + name) return o;
  fail("internal: option '", name, "' was not declared");
}

bool Args::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(help_text().c_str(), stdout);
      return false;
    }
    if (a.size() < 2 || a[0] != '-' || (a[1] >= '0' && a[1] <= '9')) {
      MOCO_CHECK(!positional_name_.empty(), "unexpected argument '", a, "' for `", program_, "`");
      MOCO_CHECK(!has(positional_name_), "more than one ", positional_name_, " given: '", str(positional_name_),
                 "' and '", a, "'");
      Opt o{{positional_name_}, positional_help_, "", Opt::Value, {a}, true};
      opts_.push_back(o);
      continue;
    }
    std::string value;
    bool inline_value = false;
    const size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      inline_value = true;
    }
    Opt& o = find(a);
    o.given = true;
    if (o.kind == Opt::Switch) {
      MOCO_CHECK(!inline_value, "option ", a, " is a switch and takes no value, got '", value, "'");
      o.values = {"1"};
    } else if (o.kind == Opt::Value) {
      if (!inline_value) {
        MOCO_CHECK(i + 1 < argc, "option ", a, " needs a value");
        value = argv[++i];
      }
      o.values = {value};
    } else {
      o.values.clear();
      if (inline_value) o.values.push_back(value);
      while (i + 1 < argc && !(argv[i + 1][0] == '-' && !(argv[i + 1][1] >= '0' && argv[i + 1][1] <= '9')))
        o.values.push_back(argv[++i]);
    }
  }
  return true;
}

void Args::set_default(const std::string& name, const std::string& value) {
  Opt& o = find(name);
  if (!o.given) o.values = {value};
}

bool Args::has(const std::string& name) const {
  for (const Opt& o : opts_)
    if (o.names[0] == name || o.names[0] == "--" + name) return o.given;
  return false;
}

bool Args::on(const std::string& name) const { return !get(name).values.empty() && get(name).values[0] == "1"; }

std::string Args::str(const std::string& name) const {
  for (const Opt& o : opts_)
    if (o.names[0] == name || o.names[0] == "--" + name) return o.values.empty() ? "" : o.values[0];
  if (name == positional_name_) return "";
  fail("internal: option '", name, "' was not declared");
}

static std::string flag_label(const std::string& name) { return name.rfind("-", 0) == 0 ? name : "--" + name; }

int64_t Args::integer(const std::string& name, int64_t lo, int64_t hi) const {
  const std::string s = str(name);
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  MOCO_CHECK(!s.empty() && *end == '\0' && errno == 0, flag_label(name), " expects an integer, got '", s, "'");
  MOCO_CHECK(v >= lo && v <= hi, flag_label(name), " must be in [", lo, ", ", hi, "], got ", v);
  return v;
}

double Args::real(const std::string& name, double lo, double hi) const {
  const std::string s = str(name);
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  MOCO_CHECK(!s.empty() && *end == '\0' && errno == 0 && v == v, flag_label(name), " expects a number, got '", s, "'");
  MOCO_CHECK(v >= lo && v <= hi, flag_label(name), " must be in [", lo, ", ", hi, "], got ", s);
  return v;
}

std::vector<int64_t> Args::integers(const std::string& name) const {
  std::vector<int64_t> out;
  for (const std::string& s : get(name).values) {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    MOCO_CHECK(!s.empty() && *end == '\0' && errno == 0, flag_label(name), " expects integers, got '", s, "'");
    out.push_back(v);
  }
  return out;
}

std::vector<int64_t> Args::integers(const std::string& name, int64_t lo, int64_t hi) const {
  std::vector<int64_t> out = integers(name);
  for (int64_t v : out) MOCO_CHECK(v >= lo && v <= hi, flag_label(name), " values must be in [", lo, ", ", hi, "], got ", v);
  return out;
}

std::string Args::help_text() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [options]" << (positional_name_.empty() ? "" : " [" + positional_name_ + "]")
     << "\n\n" << summary_ << "\n\n";
  if (!positional_name_.empty()) os << "  " << positional_name_ << "\n      " << positional_help_ << "\n";
  for (const Opt& o : opts_) {
    if (o.names[0] == positional_name_) continue;
    std::string names;
    for (size_t i = o.names.size(); i-- > 0;) names += o.names[i] + (i ? ", " : "");
    os << "  " << names;
    if (o.kind == Opt::Value) os << " VALUE";
    if (o.kind == Opt::List) os << " V [V ...]";
    os << "\n      " << o.help;
    if (o.kind != Opt::Switch) os << " (default: " << (o.def.empty() ? "none" : o.def) << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace moco
