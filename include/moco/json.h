// A small JSON reader and string quoting, enough for safetensors headers and the run logs: objects, arrays,
// strings (all escapes, \u surrogate pairs), integers, true/false/null. Numbers with a fraction or exponent
// are rejected: none of our formats carries one, and refusing them keeps integer sizes exact.
// The parser is meant for untrusted input: it bounds nesting depth, checks integer overflow, rejects
// duplicate object keys and invalid UTF-8, and every error names the byte offset and what was expected.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moco::json {

enum class Kind : uint8_t { Null, Bool, Int, String, Array, Object };
const char* kind_name(Kind k);

struct Value {
  Kind kind = Kind::Null;
  bool boolean = false;
  int64_t integer = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in document order; keys are unique

  bool is(Kind k) const { return kind == k; }
  // Member `key` of an object, or nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;
};

// Parses one complete JSON document (surrounding whitespace allowed, nothing else). Throws moco::Error
// "JSON error at byte <offset>: <problem>".
Value parse(std::string_view text);

// `s` as a JSON string literal: quotes added; '"', '\\' and control characters escaped. `s` must be UTF-8
// (it is copied byte for byte otherwise).
std::string quote(std::string_view s);

}  // namespace moco::json
