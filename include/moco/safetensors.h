// The safetensors format (SPEC 7), written and read without a library:
//   u64 little-endian N | N bytes of UTF-8 JSON, starting with '{', space-padded to a multiple of 8 | data
// The JSON maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, offsets
// relative to the data section, which the tensors tile exactly (no gaps, no overlap, no trailing bytes),
// row-major little-endian. An optional "__metadata__" maps strings to strings; we write {"format": "pt"} so
// that safetensors.torch.load_file and transformers accept the file.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moco/tensor.h"

namespace moco {

using SafeTensorsMetadata = std::vector<std::pair<std::string, std::string>>;

// Bytes per element of a safetensors dtype ("F32", "I64", "BF16", "BOOL", ...), or 0 for a name the format
// does not define.
size_t safetensors_dtype_size(const std::string& dtype);
// The safetensors name of one of our dtypes ("F32" for DType::F32, ...).
const char* safetensors_dtype(DType t);

// What the writer stores: a name, a dtype, a shape and numel * dtype size bytes at `data` (not owned).
struct SafeTensorView {
  std::string name;
  std::string dtype;  // safetensors name, e.g. "F32"
  Shape shape;        // [] for a scalar
  const void* data = nullptr;
};

// What the reader returns: the same, owning its bytes.
struct SafeTensor {
  std::string name;
  std::string dtype;
  Shape shape;
  std::vector<uint8_t> bytes;  // (numel * dtype size), row-major little-endian
  int64_t numel() const { return shape_numel(shape); }
};

struct SafeTensorsFile {
  std::vector<SafeTensor> tensors;  // in the order of their data in the file
  SafeTensorsMetadata metadata;     // "__metadata__", empty when absent
  const SafeTensor* find(const std::string& name) const;  // nullptr when absent
};

// The header as it goes to disk: the 8-byte length followed by the padded JSON. Tensors appear in the JSON
// and in the data section in the order given; "__metadata__" comes first when not empty. Throws on an
// empty or duplicate name, an unknown dtype or a negative dimension.
std::string safetensors_header(const std::vector<SafeTensorView>& tensors, const SafeTensorsMetadata& metadata);

// Writes atomically: to "<path>.tmp" in the same folder, flushed and fsync'ed, then renamed over `path`.
// On any error the temporary file is removed, an existing `path` is left as it was, and moco::Error says
// which file and what failed.
void write_safetensors(const std::string& path, const std::vector<SafeTensorView>& tensors,
                       const SafeTensorsMetadata& metadata = {{"format", "pt"}});

// Reads and validates a file that may come from anywhere. Rejects, with an error naming the file and the
// problem: a header length over 100 MB or past the end of the file, a header that is not a JSON object, an
// entry without dtype/shape/data_offsets or with extra fields, an unknown dtype, a negative dimension, a
// byte size that disagrees with the shape, offsets out of range, overlapping or leaving a gap, bytes after
// the last tensor, and duplicate names.
SafeTensorsFile read_safetensors(const std::string& path);

// Upper bound on the JSON header, as in the reference implementation: a header this large is either
// corrupt or hostile, and it would be read into memory whole.
constexpr uint64_t kSafeTensorsMaxHeader = 100'000'000;

}  // namespace moco
