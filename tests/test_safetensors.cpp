// safetensors (SPEC 7): round trips, the exact bytes of a small file written out by hand, every rejection
// of the reader on a crafted file, and the atomic write keeping the old file when writing fails.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "moco/safetensors.h"
#include "file_size_limit.h"
#include "temp_dir.h"

using namespace moco;
using moco::test::read_bytes;
using moco::test::TempDir;
using moco::test::write_bytes;

namespace {

// The 8-byte little-endian length followed by `json` and `data`; `len` overrides the length field.
std::string craft(const std::string& json, const std::string& data, int64_t len = -1) {
  uint64_t n = len >= 0 ? (uint64_t)len : json.size();
  std::string out(8, '\0');
  for (int b = 0; b < 8; ++b) out[b] = (char)((n >> (8 * b)) & 0xFF);
  return out + json + data;
}

// The error read_safetensors throws for `bytes` written to a file; "(accepted)" when it throws none.
std::string rejection(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("crafted.safetensors");
  write_bytes(path, bytes);
  try {
    read_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

#define EXPECT_REJECTED(bytes, needle)                                                              \
  do {                                                                                              \
    const std::string msg_ = rejection(dir, bytes);                                                 \
    EXPECT_NE(msg_.find("crafted.safetensors"), std::string::npos) << "error must name the file: " << msg_; \
    EXPECT_NE(msg_.find(needle), std::string::npos) << "expected \"" << (needle) << "\" in: " << msg_; \
  } while (0)

}  // namespace

TEST(SafeTensors, RoundTripOfSeveralDtypesAndShapes) {
  TempDir dir;
  const float f32[6] = {1.5f, -2.f, 0.f, 3.25f, -0.f, 1e-30f};          // (2, 3)
  const int64_t i64 = -1234567890123;                                    // ()
  const double f64[4] = {1.0, -1e300, 0.5, 3.0};                         // (4)
  const uint8_t u8[5] = {0, 1, 127, 128, 255};                           // (5)
  const uint16_t bf16[3] = {0x3F80, 0xC000, 0x7FC0};                     // (1, 3, 1): 1, -2, nan
  std::vector<SafeTensorView> views = {{"w", "F32", {2, 3}, f32},       {"layer.num_batches_tracked", "I64", {}, &i64},
                                       {"d", "F64", {4}, f64},          {"bytes", "U8", {5}, u8},
                                       {"empty", "I32", {0, 4}, nullptr}, {"b", "BF16", {1, 3, 1}, bf16}};
  const std::string path = dir.file("rt.safetensors");
  write_safetensors(path, views);

  SafeTensorsFile f = read_safetensors(path);
  ASSERT_EQ(f.tensors.size(), views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    const SafeTensor& t = f.tensors[i];  // file order = written order
    EXPECT_EQ(t.name, views[i].name);
    EXPECT_EQ(t.dtype, views[i].dtype);
    EXPECT_EQ(t.shape, views[i].shape);
    ASSERT_EQ(t.bytes.size(), (size_t)shape_numel(views[i].shape) * safetensors_dtype_size(views[i].dtype));
    if (!t.bytes.empty()) {
      EXPECT_EQ(std::memcmp(t.bytes.data(), views[i].data, t.bytes.size()), 0) << t.name;
    }
  }
  EXPECT_EQ(f.find("layer.num_batches_tracked")->numel(), 1);
  EXPECT_EQ(f.find("nope"), nullptr);
  ASSERT_EQ(f.metadata.size(), 1u);
  EXPECT_EQ(f.metadata[0], (std::pair<std::string, std::string>{"format", "pt"}));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafeTensors, ExactBytesOfATinyFile) {
  TempDir dir;
  const float a[2] = {1.f, -2.f};
  const int64_t n = 7;
  const std::string path = dir.file("tiny.safetensors");
  write_safetensors(path, {{"a", "F32", {2}, a}, {"n", "I64", {}, &n}});

  // Written out by hand from SPEC 7: 138 bytes of JSON + 6 spaces = 144 = 0x90, then 8 + 8 bytes of data.
  const std::string expected =
      std::string("\x90\0\0\0\0\0\0\0", 8) +
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("n":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})"
      "      " +
      std::string("\x00\x00\x80\x3f"   // 1.0f
                  "\x00\x00\x00\xc0"   // -2.0f
                  "\x07\x00\x00\x00\x00\x00\x00\x00",  // 7
                  16);
  EXPECT_EQ(read_bytes(path), expected);
}

TEST(SafeTensors, NoMetadataAndNoTensors) {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  write_safetensors(path, {}, {});
  EXPECT_EQ(read_bytes(path), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  SafeTensorsFile f = read_safetensors(path);
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_TRUE(f.metadata.empty());
}

TEST(SafeTensors, WriterRefusesBadTensors) {
  TempDir dir;
  const float x[1] = {0.f};
  const std::string path = dir.file("bad.safetensors");
  EXPECT_THROW(write_safetensors(path, {{"x", "F33", {1}, x}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"x", "F32", {1}, x}, {"x", "F32", {1}, x}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"x", "F32", {-1}, x}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"", "F32", {1}, x}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"x", "F32", {1}, nullptr}}), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafeTensors, ReaderRejectsMalformedFiles) {
  TempDir dir;
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\x11');

  // the length field
  EXPECT_REJECTED(std::string("\x01\0\0", 3), "too short");
  EXPECT_REJECTED(craft("{}", "", 100'000'001), "exceeds the limit");
  EXPECT_REJECTED(craft("{}", "", 1000), "runs past the end of the file");
  // the JSON
  EXPECT_REJECTED(craft("", ""), "starting with '{'");
  EXPECT_REJECTED(craft("[1, 2]  ", ""), "starting with '{'");
  EXPECT_REJECTED(craft("{" + a, eight), "bad JSON header");
  EXPECT_REJECTED(craft("{\"a\": 1.5}", ""), "bad JSON header");
  EXPECT_REJECTED(craft("{" + a + "," + a + "}", eight + eight), "duplicate key \"a\"");
  // entries
  EXPECT_REJECTED(craft(R"({"a":[1]})", ""), "expected an object");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight), "unknown dtype \"F33\"");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[2]}})", ""), "data_offsets");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", eight), "unknown field \"x\"");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight), ">= 0");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight), "needs 12");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight), "end before they begin");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", eight),
                  "too large");
  EXPECT_REJECTED(craft(R"({"__metadata__":{"format":1}})", ""), "expected a string");
  // the data section
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight), "run past the data section");
  EXPECT_REJECTED(craft("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", eight + "1234"),
                  "overlap tensor \"a\"");
  EXPECT_REJECTED(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                        eight + "1234"),
                  "gap of 4 bytes before tensor \"b\"");
  EXPECT_REJECTED(craft("{" + a + "}", eight + "xyz"), "3 trailing bytes");

  // Offsets may list the tensors in any order; the same file with the entries swapped is fine.
  const std::string ok = craft(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[8,10]},)" + a + "}", eight + "zz");
  EXPECT_EQ(rejection(dir, ok), "(accepted)");
}

TEST(SafeTensors, FailedWriteLeavesTheOldFileIntact) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const float old_value[1] = {42.f};
  write_safetensors(path, {{"old", "F32", {1}, old_value}});
  const std::string before = read_bytes(path);

  // Fail mid-write: no bytes past 4 KiB (works as root too, unlike a read-only directory).
  std::vector<float> big(64 * 1024, 1.f);  // (65536) = 256 KiB
  std::string msg;
  try {
    test::FileSizeLimit limit(4096);
    write_safetensors(path, {{"big", "F32", {(int64_t)big.size()}, big.data()}});
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("cannot write " + path), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(read_safetensors(path).tensors.at(0).name, "old");

  // Fail at open: the temporary's name is taken by a directory, which must survive.
  std::filesystem::create_directory(path + ".tmp");
  EXPECT_THROW(write_safetensors(path, {{"new", "F32", {1}, old_value}}), Error);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TRUE(std::filesystem::is_directory(path + ".tmp"));
  std::filesystem::remove(path + ".tmp");

  // Fail at rename: the target is a non-empty directory; the temporary is cleaned up.
  const std::string dir_target = dir.file("taken");
  std::filesystem::create_directories(dir_target + "/inside");
  EXPECT_THROW(write_safetensors(dir_target, {{"new", "F32", {1}, old_value}}), Error);
  EXPECT_TRUE(std::filesystem::is_directory(dir_target + "/inside"));
  EXPECT_FALSE(std::filesystem::exists(dir_target + ".tmp"));

  // Fail in a folder that does not exist: nothing is created anywhere.
  EXPECT_THROW(write_safetensors(dir.file("no/such/dir/x.safetensors"), {}), Error);
}
