// The decode tests' Pillow fixtures: a file saved by Pillow under tests/fixtures/<folder>/, and beside it the
// raw (H, W, 3) bytes PIL.Image.open(f).convert("RGB") gave for it.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "moco/data.h"

namespace moco::test {

// The bytes of tests/fixtures/<folder>/<name>; `script` is the tool that writes them, named when one is missing.
inline std::vector<uint8_t> pillow_fixture(const std::string& folder, const std::string& name, const char* script) {
  std::ifstream f(std::string(MOCO_FIXTURE_DIR) + "/" + folder + "/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing fixture " << folder << "/" << name << "; run " << script;
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Every byte of the decoded image equals Pillow's; else how many differ, and the first.
inline void expect_pillow_bytes(const Image& img, const std::vector<uint8_t>& want) {
  ASSERT_EQ(img.pixels.size(), want.size()) << img.w << " x " << img.h;
  size_t differ = 0, first = want.size();
  for (size_t k = 0; k < want.size(); ++k)
    if (img.pixels[k] != want[k]) {
      ++differ;
      if (first == want.size()) first = k;
    }
  EXPECT_EQ(differ, 0u) << "first at byte " << first << ": " << (int)img.pixels[first] << ", Pillow "
                        << (int)want[first];
}

}  // namespace moco::test
