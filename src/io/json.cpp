// Recursive-descent JSON parser (RFC 8259 grammar minus fractional numbers) and string quoting.
#include "moco/json.h"

#include <cstdio>

#include "moco/error.h"

namespace moco::json {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Int: return "integer";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "?";
}

const Value* Value::find(std::string_view key) const {
  for (const auto& kv : object)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

// Nesting deeper than this is refused so that a hostile header cannot exhaust the stack.
constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(std::string_view text) : t_(text) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (pos_ != t_.size()) error("unexpected ", describe_here(), " after the end of the document");
    return v;
  }

 private:
  std::string_view t_;
  size_t pos_ = 0;

  template <class... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail("JSON error at byte ", pos_, ": ", parts...);
  }

  std::string describe_here() const {
    if (pos_ >= t_.size()) return "end of input";
    const unsigned char c = (unsigned char)t_[pos_];
    char buf[32];
    if (c >= 0x20 && c < 0x7f)
      std::snprintf(buf, sizeof buf, "'%c'", c);
    else
      std::snprintf(buf, sizeof buf, "byte 0x%02x", c);
    return buf;
  }

  void skip_ws() {
    while (pos_ < t_.size() && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r')) ++pos_;
  }

  void expect(char c) {
    if (pos_ >= t_.size() || t_[pos_] != c) error("expected '", c, "', found ", describe_here());
    ++pos_;
  }

  Value value(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than ", kMaxDepth, " levels");
    if (pos_ >= t_.size()) error("expected a value, found end of input");
    switch (t_[pos_]) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': {
        Value v;
        v.kind = Kind::String;
        v.string = string();
        return v;
      }
      case 't': return literal("true", Kind::Bool, true);
      case 'f': return literal("false", Kind::Bool, false);
      case 'n': return literal("null", Kind::Null, false);
      default:
        if (t_[pos_] == '-' || (t_[pos_] >= '0' && t_[pos_] <= '9')) return number();
        error("expected a value (object, array, string, integer, true, false or null), found ", describe_here());
    }
  }

  Value literal(std::string_view word, Kind kind, bool b) {
    if (t_.substr(pos_, word.size()) != word) error("expected '", word, "', found ", describe_here());
    pos_ += word.size();
    Value v;
    v.kind = kind;
    v.boolean = b;
    return v;
  }

  Value object(int depth) {
    Value v;
    v.kind = Kind::Object;
    expect('{');
    skip_ws();
    if (pos_ < t_.size() && t_[pos_] == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (pos_ >= t_.size() || t_[pos_] != '"') error("expected a string key, found ", describe_here());
      const size_t key_pos = pos_;
      std::string key = string();
      // Duplicate keys are legal JSON but ambiguous (which one wins?); for a file format that is a defect.
      if (v.find(key)) {
        pos_ = key_pos;
        error("duplicate key ", quote(key));
      }
      skip_ws();
      expect(':');
      skip_ws();
      Value member = value(depth + 1);
      v.object.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (pos_ < t_.size() && t_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < t_.size() && t_[pos_] == '}') {
        ++pos_;
        return v;
      }
      error("expected ',' or '}' in object, found ", describe_here());
    }
  }

  Value array(int depth) {
    Value v;
    v.kind = Kind::Array;
    expect('[');
    skip_ws();
    if (pos_ < t_.size() && t_[pos_] == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      v.array.push_back(value(depth + 1));
      skip_ws();
      if (pos_ < t_.size() && t_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < t_.size() && t_[pos_] == ']') {
        ++pos_;
        return v;
      }
      error("expected ',' or ']' in array, found ", describe_here());
    }
  }

  Value number() {
    const size_t start = pos_;
    bool negative = false;
    if (t_[pos_] == '-') {
      negative = true;
      ++pos_;
    }
    if (pos_ >= t_.size() || t_[pos_] < '0' || t_[pos_] > '9') error("expected a digit, found ", describe_here());
    if (t_[pos_] == '0' && pos_ + 1 < t_.size() && t_[pos_ + 1] >= '0' && t_[pos_ + 1] <= '9')
      error("leading zeros are not allowed in numbers");
    // Accumulate as a negative number so that INT64_MIN is representable.
    int64_t acc = 0;
    while (pos_ < t_.size() && t_[pos_] >= '0' && t_[pos_] <= '9') {
      const int d = t_[pos_] - '0';
      if (acc < (INT64_MIN + d) / 10) {
        pos_ = start;
        error("integer ", t_.substr(start, 24), "... does not fit in 64 bits");
      }
      acc = acc * 10 - d;
      ++pos_;
    }
    if (pos_ < t_.size() && (t_[pos_] == '.' || t_[pos_] == 'e' || t_[pos_] == 'E'))
      error("numbers with a fraction or exponent are not supported; expected an integer");
    if (!negative && acc == INT64_MIN) {
      pos_ = start;
      error("integer ", t_.substr(start, 24), " does not fit in 64 bits");
    }
    Value v;
    v.kind = Kind::Int;
    v.integer = negative ? acc : -acc;
    return v;
  }

  unsigned hex4() {
    if (pos_ + 4 > t_.size()) error("truncated \\u escape");
    unsigned u = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = t_[pos_++];
      u <<= 4;
      if (c >= '0' && c <= '9') u |= (unsigned)(c - '0');
      else if (c >= 'a' && c <= 'f') u |= (unsigned)(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') u |= (unsigned)(c - 'A' + 10);
      else {
        --pos_;
        error("expected a hex digit in \\u escape, found ", describe_here());
      }
    }
    return u;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += (char)cp;
    } else if (cp < 0x800) {
      out += (char)(0xC0 | (cp >> 6));
      out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += (char)(0xE0 | (cp >> 12));
      out += (char)(0x80 | ((cp >> 6) & 0x3F));
      out += (char)(0x80 | (cp & 0x3F));
    } else {
      out += (char)(0xF0 | (cp >> 18));
      out += (char)(0x80 | ((cp >> 12) & 0x3F));
      out += (char)(0x80 | ((cp >> 6) & 0x3F));
      out += (char)(0x80 | (cp & 0x3F));
    }
  }

  // One raw (unescaped) UTF-8 sequence starting at pos_, validated: no overlongs, no surrogates, <= U+10FFFF.
  void copy_utf8(std::string& out) {
    const unsigned char c = (unsigned char)t_[pos_];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0) error("invalid UTF-8 lead byte 0x", std::hex, (int)c);
    if (pos_ + len > t_.size()) error("truncated UTF-8 sequence");
    unsigned cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; ++i) {
      const unsigned char cc = (unsigned char)t_[pos_ + i];
      if ((cc >> 6) != 0x2) error("invalid UTF-8 continuation byte 0x", std::hex, (int)cc);
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const unsigned kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error("invalid UTF-8 sequence");
    out.append(t_.data() + pos_, (size_t)len);
    pos_ += (size_t)len;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= t_.size()) error("unterminated string");
      const unsigned char c = (unsigned char)t_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("unescaped control character 0x", std::hex, (int)c, " in string");
      if (c != '\\') {
        copy_utf8(out);
        continue;
      }
      ++pos_;
      if (pos_ >= t_.size()) error("unterminated escape in string");
      const char e = t_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            if (t_.substr(pos_, 2) != "\\u") error("high surrogate \\u", std::hex, cp, " without a low surrogate");
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("expected a low surrogate after \\u", std::hex, cp);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            error("lone low surrogate \\u", std::hex, cp);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          error("invalid escape '\\", e, "' in string");
      }
    }
  }
};

}  // namespace

Value parse(std::string_view text) { return Parser(text).document(); }

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char ch : s) {
    const unsigned char c = (unsigned char)ch;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace moco::json
