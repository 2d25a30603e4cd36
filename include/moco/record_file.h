// The container of the files that keep a run's state (training and linear-probe checkpoints): named byte
// records behind an 8-byte magic and a version, with a CRC-32 over them, written atomically.
//
// Layout (little-endian): magic[8] u32 version u64 payload_bytes payload u32 crc32(payload);
// payload = records { u32 name_len, name, u64 nbytes, bytes }.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moco {

class RecordWriter {
 public:
  void add(const std::string& name, const void* data, uint64_t nbytes);
  template <class T>
  void add_vector(const std::string& name, const std::vector<T>& v) {
    add(name, v.data(), v.size() * sizeof(T));
  }
  // The whole file: header, records, checksum.
  std::string file(const char (&magic)[8], uint32_t version) const;

 private:
  std::string payload_;
};

// What a record file is, for the messages: "checkpoint" and the file the user should have given, e.g. "the
// checkpoint.mocockpt that moco train writes into its --out folder".
struct RecordFileKind {
  const char* noun;
  const char* expected;
};

// The records of `path` (name -> bytes), after checking that it is a file, its magic, version, length and
// checksum. Throws, naming the file and what is wrong with it.
std::map<std::string, std::string> read_record_file(const std::string& path, const char (&magic)[8], uint32_t version,
                                                    const RecordFileKind& kind);

}  // namespace moco
