// Record files (record_file.h): the container of training and linear-probe checkpoints.
#include "moco/record_file.h"

#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "moco/error.h"

namespace moco {

void RecordWriter::add(const std::string& name, const void* data, uint64_t nbytes) {
  const uint32_t len = (uint32_t)name.size();
  payload_.append((const char*)&len, 4);
  payload_ += name;
  payload_.append((const char*)&nbytes, 8);
  payload_.append((const char*)data, nbytes);
}

std::string RecordWriter::file(const char (&magic)[8], uint32_t version) const {
  std::string file(magic, 8);
  const uint64_t n = payload_.size();
  file.append((const char*)&version, 4);
  file.append((const char*)&n, 8);
  file += payload_;
  const uint32_t crc = (uint32_t)crc32(0L, (const Bytef*)payload_.data(), (uInt)payload_.size());
  file.append((const char*)&crc, 4);
  return file;
}

std::map<std::string, std::string> read_record_file(const std::string& path, const char (&magic)[8], uint32_t version,
                                                    const RecordFileKind& kind) {
  const std::string noun = kind.noun;
  struct stat st;
  MOCO_CHECK(::stat(path.c_str(), &st) == 0, "cannot read ", noun, " ", path, ": ", std::strerror(errno));
  MOCO_CHECK(S_ISREG(st.st_mode), noun, " ", path, " is not a file; expected ", kind.expected);
  std::ifstream in(path, std::ios::binary);
  MOCO_CHECK(in.good(), "cannot read ", noun, " ", path, ": ", std::strerror(errno));
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  MOCO_CHECK(file.size() >= 24 && std::memcmp(file.data(), magic, 8) == 0, noun, " ", path, " is not a moco ", noun,
             " (", file.size(), " bytes, expected the ", std::string(magic, 8), " header)");
  uint32_t file_version;
  uint64_t n;
  std::memcpy(&file_version, file.data() + 8, 4);
  std::memcpy(&n, file.data() + 12, 8);
  MOCO_CHECK(file_version == version, noun, " ", path, " has format version ", file_version, ", expected ", version);
  MOCO_CHECK(n <= file.size() && file.size() == 20 + n + 4, noun, " ", path, " is truncated or padded: ",
             file.size(), " bytes, its header says ", 20 + n + 4);
  uint32_t crc;
  std::memcpy(&crc, file.data() + 20 + n, 4);
  const uint32_t actual = (uint32_t)crc32(0L, (const Bytef*)file.data() + 20, (uInt)n);
  MOCO_CHECK(crc == actual, noun, " ", path, " fails its checksum (stored ", crc, ", computed ", actual,
             "): the file is corrupt");

  std::map<std::string, std::string> rec;  // record name -> bytes
  const size_t end = 20 + n;
  for (size_t o = 20; o < end;) {
    uint32_t len = 0;
    uint64_t bytes = 0;
    MOCO_CHECK(o + 4 <= end, noun, " ", path, ": record header out of bounds at byte ", o);
    std::memcpy(&len, file.data() + o, 4);
    MOCO_CHECK(o + 12 + (uint64_t)len <= end, noun, " ", path, ": record name out of bounds at byte ", o);
    const std::string name = file.substr(o + 4, len);
    std::memcpy(&bytes, file.data() + o + 4 + len, 8);
    MOCO_CHECK(bytes <= end - (o + 12 + len), noun, " ", path, ": record '", name, "' out of bounds");
    rec[name] = file.substr(o + 12 + len, bytes);
    o += 12 + len + bytes;
  }
  return rec;
}

}  // namespace moco
