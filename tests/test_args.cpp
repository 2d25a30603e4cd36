// Command-line parsing: the authors' flag spellings, aliases, lists, defaults, and errors that name the
// bad flag or value.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moco/args.h"
#include "moco/error.h"

using namespace moco;

namespace {
struct Argv {  // owns argv strings for a parse
  std::vector<std::string> s;
  std::vector<char*> p;
  explicit Argv(std::vector<std::string> a) : s(std::move(a)) {
    for (auto& x : s) p.push_back(x.data());
  }
  int argc() { return (int)p.size(); }
  char** argv() { return p.data(); }
};

Args declare() {
  Args a("moco train", "test");
  a.positional("DATA", "data");
  a.option("-b,--batch-size", "256", "batch");
  a.option("--wd,--weight-decay", "1e-4", "wd");
  a.option("--lr", "0.03", "lr");
  a.list("--schedule", "120 160", "milestones");
  a.flag("--cos", "cosine");
  return a;
}

std::string error_of(std::vector<std::string> argv, const char* get = nullptr) {
  Argv v(std::move(argv));
  Args a = declare();
  try {
    a.parse(v.argc(), v.argv(), 2);
    if (get) a.integer(get, 1, 1000);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Args, DefaultsAliasesListsAndPositional) {
  Argv v({"moco", "train", "/data/imagenet", "-b", "32", "--weight-decay=5e-4", "--schedule", "10", "20", "30", "--cos"});
  Args a = declare();
  ASSERT_TRUE(a.parse(v.argc(), v.argv(), 2));
  EXPECT_EQ(a.str("DATA"), "/data/imagenet");
  EXPECT_EQ(a.integer("--batch-size", 1, 1000), 32);
  EXPECT_DOUBLE_EQ(a.real("--wd", 0, 1), 5e-4);
  EXPECT_DOUBLE_EQ(a.real("--lr", 0, 1), 0.03);  // default
  EXPECT_FALSE(a.has("--lr"));
  EXPECT_EQ(a.integers("--schedule"), (std::vector<int64_t>{10, 20, 30}));
  EXPECT_TRUE(a.on("--cos"));
  a.set_default("--lr", "0.06");
  a.set_default("--batch-size", "512");  // given on the command line: stays 32
  EXPECT_DOUBLE_EQ(a.real("--lr", 0, 1), 0.06);
  EXPECT_EQ(a.integer("--batch-size", 1, 1000), 32);
}

TEST(Args, ErrorsNameTheFlagAndTheValue) {
  const std::string unknown = error_of({"moco", "train", "--batch", "3"});
  EXPECT_NE(unknown.find("'--batch'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("--batch-size"), std::string::npos) << unknown;  // lists the known ones
  const std::string bad = error_of({"moco", "train", "-b", "12x"}, "--batch-size");
  EXPECT_NE(bad.find("'12x'"), std::string::npos) << bad;
  EXPECT_NE(bad.find("--batch-size"), std::string::npos) << bad;
  const std::string range = error_of({"moco", "train", "-b", "0"}, "--batch-size");
  EXPECT_NE(range.find("[1, 1000]"), std::string::npos) << range;
  const std::string missing = error_of({"moco", "train", "--lr"});
  EXPECT_NE(missing.find("needs a value"), std::string::npos) << missing;
  const std::string two = error_of({"moco", "train", "a", "b"});
  EXPECT_NE(two.find("'a'"), std::string::npos) << two;
  const std::string sw = error_of({"moco", "train", "--cos=1"});
  EXPECT_NE(sw.find("--cos"), std::string::npos) << sw;
}

TEST(Args, CheckedListsNameTheValueOutOfRange) {
  Argv v({"moco", "train", "--schedule", "10", "0", "99999999999999999999"});
  Args a = declare();
  ASSERT_TRUE(a.parse(v.argc(), v.argv(), 2));
  try {  // an integer that overflows int64 is not read as some other number
    a.integers("--schedule");
    ADD_FAILURE() << "no error for 99999999999999999999";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'99999999999999999999'"), std::string::npos) << e.what();
  }
  Argv w({"moco", "train", "--schedule", "10", "0", "30"});
  Args b = declare();
  ASSERT_TRUE(b.parse(w.argc(), w.argv(), 2));
  EXPECT_EQ(b.integers("--schedule", 0, 100), (std::vector<int64_t>{10, 0, 30}));
  try {
    b.integers("--schedule", 1, 100);
    ADD_FAILURE() << "no error for 0 outside [1, 100]";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--schedule"), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 100]"), std::string::npos) << m;
    EXPECT_NE(m.find("got 0"), std::string::npos) << m;
  }
}
