// runtime/core/json.cc: the strict, bounded JSON parser and DOM of json.h.
//
// The parser is a loop over an explicit stack of open containers (no recursion), so its C++
// stack use does not depend on the input. Every error names the byte offset where it was found.
#include "runtime/core/json.h"

#include <sys/stat.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <unordered_set>
#include <utility>

namespace eli {

// ---- JsonValue ------------------------------------------------------------------------------

JsonValue JsonValue::make_bool(bool v) {
  JsonValue j;
  j.type_ = Type::kBool;
  j.bool_ = v;
  return j;
}
JsonValue JsonValue::make_number(double d, bool has_int, int64_t i) {
  JsonValue j;
  j.type_ = Type::kNumber;
  j.double_ = d;
  j.has_int_ = has_int;
  j.int_ = i;
  return j;
}
JsonValue JsonValue::make_string(std::string s) {
  JsonValue j;
  j.type_ = Type::kString;
  j.string_ = std::move(s);
  return j;
}
JsonValue JsonValue::make_array() {
  JsonValue j;
  j.type_ = Type::kArray;
  return j;
}
JsonValue JsonValue::make_object() {
  JsonValue j;
  j.type_ = Type::kObject;
  return j;
}

const char* JsonValue::type_name() const {
  switch (type_) {
    case Type::kNull: return "null";
    case Type::kBool: return "boolean";
    case Type::kNumber: return has_int_ ? "integer" : "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "?";
}

bool JsonValue::as_bool() const {
  ELI_CHECK_ARG(is_bool(), "JSON: expected a boolean, got ", type_name());
  return bool_;
}
int64_t JsonValue::as_int64() const {
  ELI_CHECK_ARG(is_int64(), "JSON: expected an integer, got ",
                is_number() ? "a non-integer or out-of-range number" : type_name());
  return int_;
}
double JsonValue::as_double() const {
  ELI_CHECK_ARG(is_number(), "JSON: expected a number, got ", type_name());
  return double_;
}
const std::string& JsonValue::as_string() const {
  ELI_CHECK_ARG(is_string(), "JSON: expected a string, got ", type_name());
  return string_;
}
const std::vector<JsonValue>& JsonValue::array() const {
  ELI_CHECK_ARG(is_array(), "JSON: expected an array, got ", type_name());
  return array_;
}
const std::vector<JsonMember>& JsonValue::items() const {
  ELI_CHECK_ARG(is_object(), "JSON: expected an object, got ", type_name());
  return members_;
}
const JsonValue* JsonValue::find(std::string_view key) const {
  ELI_CHECK_ARG(is_object(), "JSON: expected an object, got ", type_name());
  for (const JsonMember& m : members_) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}
size_t JsonValue::size() const {
  if (is_array()) return array_.size();
  if (is_object()) return members_.size();
  ELI_CHECK_ARG(false, "JSON: expected an array or object, got ", type_name());
  return 0;
}
void JsonValue::push_back(JsonValue v) {
  ELI_CHECK_KIND(kInternal, is_array(), "push_back on a JSON ", type_name());
  array_.push_back(std::move(v));
}
void JsonValue::add_member(std::string key, JsonValue v) {
  ELI_CHECK_KIND(kInternal, is_object(), "add_member on a JSON ", type_name());
  members_.push_back(JsonMember{std::move(key), std::move(v)});
}

// ---- parser ---------------------------------------------------------------------------------

namespace {

constexpr int kMaxDepthCap = 1024;

class Parser {
 public:
  Parser(std::string_view text, const JsonLimits& limits) : s_(text), limits_(limits) {}

  JsonValue parse() {
    if (s_.size() > limits_.max_bytes) {
      fail_at(0, "input of ", s_.size(), " bytes exceeds the limit of ", limits_.max_bytes);
    }
    const int max_depth = std::min(std::max(limits_.max_depth, 0), kMaxDepthCap);
    JsonValue root;
    // Each frame is an open container; `key` is the member name awaiting its value (objects).
    struct Frame {
      JsonValue value;
      std::string key;
      std::unordered_set<std::string> keys;
    };
    std::vector<Frame> stack;
    for (;;) {
      // Expecting a value.
      skip_ws();
      JsonValue v;
      bool have_value = false;
      char c = peek("a value");
      if (c == '{' || c == '[') {
        if (static_cast<int>(stack.size()) >= max_depth) {
          fail("nesting deeper than the limit of ", max_depth);
        }
        count_value();
        ++pos_;
        stack.push_back(Frame{c == '{' ? JsonValue::make_object() : JsonValue::make_array(), {}, {}});
        skip_ws();
        char close = c == '{' ? '}' : ']';
        if (peek(c == '{' ? "a key or '}'" : "a value or ']'") == close) {
          ++pos_;
          v = std::move(stack.back().value);
          stack.pop_back();
          have_value = true;
        } else if (c == '{') {
          read_key(&stack.back().key, &stack.back().keys);
          continue;
        } else {
          continue;
        }
      }
      if (!have_value) v = parse_scalar();
      // Attach `v` to its parent; close every container that ends here.
      for (;;) {
        if (stack.empty()) {
          root = std::move(v);
          skip_ws();
          if (pos_ != s_.size()) fail("unexpected trailing characters after the JSON value");
          return root;
        }
        Frame& top = stack.back();
        const bool is_obj = top.value.is_object();
        if (is_obj) {
          top.value.add_member(std::move(top.key), std::move(v));
          top.key.clear();
        } else {
          top.value.push_back(std::move(v));
        }
        skip_ws();
        char d = peek(is_obj ? "',' or '}'" : "',' or ']'");
        ++pos_;
        if (d == ',') {
          if (is_obj) {
            skip_ws();
            read_key(&top.key, &top.keys);
          }
          break;  // next value
        }
        if (d != (is_obj ? '}' : ']')) {
          --pos_;
          fail("expected ", is_obj ? "',' or '}'" : "',' or ']'", ", got ", describe(d));
        }
        v = std::move(top.value);
        stack.pop_back();
      }
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail_at(size_t at, const Args&... parts) {
    throw Error(ErrorKind::kInvalidArgument,
                detail::concat("invalid JSON at byte ", at, ": ", parts...));
  }
  template <typename... Args>
  [[noreturn]] void fail(const Args&... parts) {
    fail_at(pos_, parts...);
  }
  static std::string describe(char c) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
    return detail::concat("byte 0x", "0123456789abcdef"[u >> 4], "0123456789abcdef"[u & 15]);
  }
  char peek(const char* expected) {
    if (pos_ >= s_.size()) fail("unexpected end of input, expected ", expected);
    return s_[pos_];
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  void count_value() {
    if (++n_values_ > limits_.max_values) fail("more than ", limits_.max_values, " values");
  }
  void expect_literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal (expected a value)");
    pos_ += word.size();
  }

  void read_key(std::string* key, std::unordered_set<std::string>* keys) {
    size_t at = pos_;
    if (peek("a string key") != '"') fail("expected a string key, got ", describe(s_[pos_]));
    *key = read_string();
    if (!keys->insert(*key).second) fail_at(at, "duplicate key \"", *key, "\"");
    skip_ws();
    if (peek("':'") != ':') fail("expected ':' after a key, got ", describe(s_[pos_]));
    ++pos_;
  }

  JsonValue parse_scalar() {
    char c = s_[pos_];
    count_value();
    switch (c) {
      case '"': return JsonValue::make_string(read_string());
      case 't': expect_literal("true"); return JsonValue::make_bool(true);
      case 'f': expect_literal("false"); return JsonValue::make_bool(false);
      case 'n': expect_literal("null"); return JsonValue();
      default: break;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return read_number();
    if (c == 'N' || c == 'I') fail("NaN and Infinity are not JSON");
    fail("expected a value, got ", describe(c));
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  JsonValue read_number() {
    const size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) {
      if (pos_ < s_.size() && s_[pos_] == 'I') fail("NaN and Infinity are not JSON");
      fail("expected a digit");
    }
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && is_digit(s_[pos_])) fail_at(start, "leading zeros are not JSON");
    } else {
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) fail("expected a digit after '.'");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) fail("expected a digit in the exponent");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    double d = 0.0;
    auto rd = std::from_chars(first, last, d);
    if (rd.ec != std::errc() || rd.ptr != last || !std::isfinite(d)) {
      fail_at(start, "number out of range");
    }
    int64_t i = 0;
    bool has_int = false;
    if (integral) {
      auto ri = std::from_chars(first, last, i);
      has_int = ri.ec == std::errc() && ri.ptr == last;
    }
    return JsonValue::make_number(d, has_int, has_int ? i : 0);
  }

  int hex4() {
    if (s_.size() - pos_ < 4) fail("truncated \\u escape");
    int v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail_at(pos_ - 1, "bad hex digit in \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Validates one raw UTF-8 sequence starting at pos_ (first byte >= 0x80) and copies it.
  void copy_utf8(std::string* out) {
    const size_t at = pos_;
    auto b = [&](size_t k) -> uint32_t { return static_cast<unsigned char>(s_[at + k]); };
    uint32_t c0 = b(0);
    size_t len = 0;
    uint32_t cp = 0;
    if (c0 >= 0xC2 && c0 <= 0xDF) { len = 2; cp = c0 & 0x1F; }
    else if (c0 >= 0xE0 && c0 <= 0xEF) { len = 3; cp = c0 & 0x0F; }
    else if (c0 >= 0xF0 && c0 <= 0xF4) { len = 4; cp = c0 & 0x07; }
    else fail_at(at, "invalid UTF-8: ", describe(s_[at]));
    if (s_.size() - at < len) fail_at(at, "invalid UTF-8: truncated sequence");
    for (size_t k = 1; k < len; ++k) {
      if ((b(k) & 0xC0) != 0x80) fail_at(at + k, "invalid UTF-8 continuation byte");
      cp = (cp << 6) | (b(k) & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len]) fail_at(at, "invalid UTF-8: overlong encoding");
    if (cp >= 0xD800 && cp <= 0xDFFF) fail_at(at, "invalid UTF-8: encoded surrogate");
    if (cp > 0x10FFFF) fail_at(at, "invalid UTF-8: code point past U+10FFFF");
    out->append(s_.data() + at, len);
    pos_ = at + len;
  }

  std::string read_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("control character ", describe(s_[pos_]), " in a string");
      if (c >= 0x80) {
        copy_utf8(&out);
        continue;
      }
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      const size_t esc = pos_++;
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = static_cast<uint32_t>(hex4());
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(esc, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.size() - pos_ < 6 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
              fail_at(esc, "lone high surrogate in \\u escape");
            }
            pos_ += 2;
            uint32_t lo = static_cast<uint32_t>(hex4());
            if (lo < 0xDC00 || lo > 0xDFFF) fail_at(esc, "lone high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(&out, cp);
          break;
        }
        default: fail_at(esc, "invalid escape \\", describe(e));
      }
    }
  }

  std::string_view s_;
  JsonLimits limits_;
  size_t pos_ = 0;
  size_t n_values_ = 0;
};

}  // namespace

JsonValue parse_json(std::string_view text, const JsonLimits& limits) {
  return Parser(text, limits).parse();
}

JsonValue parse_json_as(std::string_view text, const std::string& context, ErrorKind kind,
                        const JsonLimits& limits) {
  try {
    return parse_json(text, limits);
  } catch (const Error& e) {
    throw Error(kind, context + ": " + e.what());
  }
}

JsonValue read_json_file(const std::string& path, const JsonLimits& limits) {
  struct stat st {};
  ELI_CHECK_KIND(kModelLoad, ::stat(path.c_str(), &st) == 0, path, ": file not found");
  ELI_CHECK_KIND(kModelLoad, S_ISREG(st.st_mode), path, ": not a regular file");
  ELI_CHECK_KIND(kModelLoad, static_cast<uint64_t>(st.st_size) <= limits.max_bytes, path,
                 ": file of ", st.st_size, " bytes exceeds the JSON limit of ", limits.max_bytes);
  std::ifstream in(path, std::ios::binary);
  ELI_CHECK_KIND(kModelLoad, in.good(), path, ": cannot open");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  ELI_CHECK_KIND(kModelLoad, static_cast<size_t>(in.gcount()) == text.size(), path,
                 ": truncated: expected ", text.size(), " bytes, got ", in.gcount());
  return parse_json_as(text, path, ErrorKind::kModelLoad, limits);
}

}  // namespace eli
