// safetensors writer and validating reader (SPEC 7). The header JSON is built by hand and parsed with
// moco/json.h; tensor bytes go to disk exactly as they sit in memory, which is the format's little-endian
// row-major layout on every host we build for.
#include "moco/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "moco/checkpoint.h"
#include "moco/json.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this writer copies memory as is");

namespace moco {

namespace {

struct DTypeInfo {
  const char* name;
  size_t size;
};
// Every dtype the format defines (safetensors 0.4); bytes per element.
constexpr DTypeInfo kDTypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                 {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
                                 {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDTypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// numel * elem_size in bytes, or -1 when a dimension is negative or the product overflows int64.
int64_t checked_nbytes(const Shape& shape, size_t elem_size) {
  int64_t n = (int64_t)elem_size;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  }
  return n;
}

std::string errno_text() { return std::strerror(errno); }

// Closes the file and removes the temporary on every path out of write_safetensors except success.
struct TempFile {
  std::string path;
  FILE* f = nullptr;
  bool keep = false;
  ~TempFile() {
    if (f) std::fclose(f);
    if (!keep) std::remove(path.c_str());
  }
};

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDTypes)
    if (dtype == d.name) return d.size;
  return 0;
}

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  fail("dtype ", (int)t, " has no safetensors name");
}

const SafeTensor* SafeTensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::string safetensors_header(const std::vector<SafeTensorView>& tensors, const SafeTensorsMetadata& metadata) {
  std::string js = "{";
  if (!metadata.empty()) {
    js += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i)
      js += (i ? "," : "") + json::quote(metadata[i].first) + ":" + json::quote(metadata[i].second);
    js += "}";
  }
  int64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafeTensorView& t = tensors[i];
    MOCO_CHECK(!t.name.empty() && t.name != "__metadata__", "safetensors: tensor ", i, " has the reserved name '",
               t.name, "'");
    for (size_t j = 0; j < i; ++j) MOCO_CHECK(tensors[j].name != t.name, "safetensors: duplicate tensor name '", t.name, "'");
    const size_t elem = safetensors_dtype_size(t.dtype);
    MOCO_CHECK(elem > 0, "safetensors: tensor '", t.name, "' has unknown dtype '", t.dtype, "'; expected one of ",
               known_dtypes());
    const int64_t nbytes = checked_nbytes(t.shape, elem);
    MOCO_CHECK(nbytes >= 0, "safetensors: tensor '", t.name, "' has invalid shape ", shape_str(t.shape));
    MOCO_CHECK(nbytes == 0 || t.data != nullptr, "safetensors: tensor '", t.name, "' has no data");
    js += (metadata.empty() && i == 0 ? "" : ",") + json::quote(t.name) + ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) js += (d ? "," : "") + std::to_string(t.shape[d]);
    js += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  js += "}";
  // Padding keeps the data section 8-byte aligned so a reader can map it and view I64/F64 tensors in place.
  js.append((8 - js.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = js.size();
  for (int b = 0; b < 8; ++b) out[b] = (char)((n >> (8 * b)) & 0xFF);
  return out + js;
}

void write_safetensors(const std::string& path, const std::vector<SafeTensorView>& tensors,
                       const SafeTensorsMetadata& metadata) {
  const std::string header = safetensors_header(tensors, metadata);  // validates before touching the disk
  TempFile tmp;
  tmp.path = path + ".tmp";
  tmp.f = std::fopen(tmp.path.c_str(), "wb");
  if (!tmp.f) {
    tmp.keep = true;  // not ours: whatever sits at that path stays
    fail("cannot write ", path, ": opening temporary file ", tmp.path, " failed: ", errno_text());
  }
  auto put = [&](const void* p, size_t n, const std::string& what) {
    if (n > 0 && std::fwrite(p, 1, n, tmp.f) != n)
      fail("cannot write ", path, ": writing ", what, " (", n, " bytes) to ", tmp.path, " failed: ", errno_text());
  };
  put(header.data(), header.size(), "the header");
  for (const SafeTensorView& t : tensors)
    put(t.data, (size_t)checked_nbytes(t.shape, safetensors_dtype_size(t.dtype)), "tensor '" + t.name + "'");
  // The data must be on disk before the rename makes it visible under the final name, or a crash could
  // leave a complete-looking but empty file in place of the old one.
  if (std::fflush(tmp.f) != 0 || fsync(fileno(tmp.f)) != 0)
    fail("cannot write ", path, ": flushing ", tmp.path, " failed: ", errno_text());
  const int rc = std::fclose(tmp.f);
  tmp.f = nullptr;
  if (rc != 0) fail("cannot write ", path, ": closing ", tmp.path, " failed: ", errno_text());
  if (std::rename(tmp.path.c_str(), path.c_str()) != 0)
    fail("cannot write ", path, ": renaming ", tmp.path, " over it failed: ", errno_text());
  tmp.keep = true;
  sync_folder_of(path);  // the rename itself persisted
}

SafeTensorsFile read_safetensors(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  MOCO_CHECK(f, "cannot open ", path, ": ", errno_text());
  struct Closer {
    FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  struct stat st;
  MOCO_CHECK(fstat(fileno(f), &st) == 0, "cannot stat ", path, ": ", errno_text());
  MOCO_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  const uint64_t file_size = (uint64_t)st.st_size;
  MOCO_CHECK(file_size >= 8, path, ": file is ", file_size, " bytes, too short for the 8-byte header length");

  unsigned char len_bytes[8];
  MOCO_CHECK(std::fread(len_bytes, 1, 8, f) == 8, path, ": cannot read the header length: ", errno_text());
  uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | len_bytes[b];
  MOCO_CHECK(n <= kSafeTensorsMaxHeader, path, ": header length ", n, " bytes exceeds the limit of ",
             kSafeTensorsMaxHeader, " bytes");
  MOCO_CHECK(n <= file_size - 8, path, ": header length ", n, " bytes runs past the end of the file (",
             file_size, " bytes, so at most ", file_size - 8, ")");
  std::string text(n, '\0');
  MOCO_CHECK(std::fread(text.data(), 1, n, f) == n, path, ": cannot read the ", n, "-byte header: ", errno_text());
  MOCO_CHECK(n > 0 && text[0] == '{', path, ": header must be a JSON object starting with '{'",
             n == 0 ? " (it is empty)" : "");

  json::Value root;
  try {
    root = json::parse(text);
  } catch (const Error& e) {
    fail(path, ": bad JSON header: ", e.what());
  }
  MOCO_CHECK(root.is(json::Kind::Object), path, ": header is a JSON ", json::kind_name(root.kind), ", expected an object");

  SafeTensorsFile out;
  struct Span {
    int64_t begin, end;
    size_t index;  // into out.tensors
  };
  std::vector<Span> spans;
  for (const auto& [name, v] : root.object) {
    if (name == "__metadata__") {
      MOCO_CHECK(v.is(json::Kind::Object), path, ": __metadata__ is a ", json::kind_name(v.kind), ", expected an object of strings");
      for (const auto& [k, s] : v.object) {
        MOCO_CHECK(s.is(json::Kind::String), path, ": __metadata__ value for ", json::quote(k), " is a ",
                   json::kind_name(s.kind), ", expected a string");
        out.metadata.emplace_back(k, s.string);
      }
      continue;
    }
    const std::string where = path + ": tensor " + json::quote(name);
    MOCO_CHECK(v.is(json::Kind::Object), where, " is described by a ", json::kind_name(v.kind), ", expected an object");
    for (const auto& kv : v.object)
      MOCO_CHECK(kv.first == "dtype" || kv.first == "shape" || kv.first == "data_offsets", where, " has unknown field ",
                 json::quote(kv.first), "; expected dtype, shape and data_offsets");
    const json::Value* dtype = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offsets = v.find("data_offsets");
    MOCO_CHECK(dtype && dtype->is(json::Kind::String), where, ": \"dtype\" missing or not a string");
    MOCO_CHECK(shape && shape->is(json::Kind::Array), where, ": \"shape\" missing or not an array");
    MOCO_CHECK(offsets && offsets->is(json::Kind::Array) && offsets->array.size() == 2, where,
               ": \"data_offsets\" missing or not an array [begin, end]");

    SafeTensor t;
    t.name = name;
    t.dtype = dtype->string;
    const size_t elem = safetensors_dtype_size(t.dtype);
    MOCO_CHECK(elem > 0, where, " has unknown dtype ", json::quote(t.dtype), "; expected one of ", known_dtypes());
    for (const auto& d : shape->array) {
      MOCO_CHECK(d.is(json::Kind::Int) && d.integer >= 0, where, ": shape entries must be integers >= 0");
      t.shape.push_back(d.integer);
    }
    const int64_t nbytes = checked_nbytes(t.shape, elem);
    MOCO_CHECK(nbytes >= 0, where, ": shape ", shape_str(t.shape), " is too large");
    for (const auto& o : offsets->array)
      MOCO_CHECK(o.is(json::Kind::Int) && o.integer >= 0, where, ": data_offsets must be integers >= 0");
    const int64_t begin = offsets->array[0].integer, end = offsets->array[1].integer;
    MOCO_CHECK(begin <= end, where, ": data_offsets [", begin, ", ", end, "] end before they begin");
    MOCO_CHECK(end - begin == nbytes, where, ": data_offsets [", begin, ", ", end, "] hold ", end - begin,
               " bytes, but ", t.dtype, " ", shape_str(t.shape), " needs ", nbytes);
    spans.push_back({begin, end, out.tensors.size()});
    out.tensors.push_back(std::move(t));
  }

  // The tensors must tile the data section exactly: sorted by offset, each begins where the previous ended.
  const uint64_t data_size = file_size - 8 - n;
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  int64_t expected = 0;
  const std::string* prev = nullptr;
  for (const Span& s : spans) {
    const std::string& name = out.tensors[s.index].name;
    MOCO_CHECK((uint64_t)s.end <= data_size, path, ": tensor ", json::quote(name), " data_offsets [", s.begin, ", ", s.end,
               "] run past the data section (", data_size, " bytes)");
    MOCO_CHECK(s.begin >= expected, path, ": tensor ", json::quote(name), " data_offsets [", s.begin, ", ", s.end,
               "] overlap tensor ", json::quote(*prev), ", which ends at ", expected);
    MOCO_CHECK(s.begin == expected, path, ": gap of ", s.begin - expected, " bytes before tensor ", json::quote(name),
               " (data_offsets [", s.begin, ", ", s.end, "], previous tensor ends at ", expected, ")");
    expected = s.end;
    prev = &name;
  }
  MOCO_CHECK((uint64_t)expected == data_size, path, ": ", data_size - (uint64_t)expected,
             " trailing bytes after the last tensor (data section is ", data_size, " bytes, tensors end at ", expected, ")");

  // Read the data in file order; the returned tensors follow that order too.
  std::vector<SafeTensor> ordered;
  ordered.reserve(spans.size());
  for (const Span& s : spans) {
    SafeTensor& t = out.tensors[s.index];
    t.bytes.resize((size_t)(s.end - s.begin));
    MOCO_CHECK(std::fread(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size(), path, ": cannot read tensor ",
               json::quote(t.name), " (", t.bytes.size(), " bytes): ", std::ferror(f) ? errno_text() : "file truncated");
    ordered.push_back(std::move(t));
  }
  out.tensors = std::move(ordered);
  return out;
}

}  // namespace moco
