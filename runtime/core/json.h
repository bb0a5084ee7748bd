// runtime/core/json.h: a strict, bounded JSON reader with a small DOM, for model files
// (safetensors headers, config.json, sharded indexes) and anything else that comes from outside.
//
// Strictness (RFC 8259, no extensions): no NaN/Infinity, no leading zeros, no trailing commas,
// no comments, no control characters inside strings, valid UTF-8 only (no overlong forms, no
// encoded surrogates), no lone \u surrogates, no duplicate object keys, nothing after the value
// but whitespace. Numbers that overflow a double are rejected.
// Bounds: input size, nesting depth and value count are capped by JsonLimits; the parser is
// iterative (an explicit stack), so deep input cannot exhaust the C++ stack.
// Invariants of JsonValue: objects keep insertion order and have unique keys; a number keeps an
// exact int64 when its literal is an integer that fits (is_int64()), and always a double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "eli/error.h"

namespace eli {

struct JsonLimits {
  size_t max_bytes = size_t{100} << 20;  // input size cap
  int max_depth = 64;                    // nesting of arrays/objects (capped at 1024)
  size_t max_values = size_t{4} << 20;   // total values in the document (bounds DOM memory)
};

struct JsonMember;

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  JsonValue() = default;
  static JsonValue make_bool(bool v);
  static JsonValue make_number(double d, bool has_int, int64_t i);
  static JsonValue make_string(std::string s);
  static JsonValue make_array();
  static JsonValue make_object();

  Type type() const { return type_; }
  const char* type_name() const;
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_int64() const { return type_ == Type::kNumber && has_int_; }  // integer literal that fits
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Typed accessors: throw eli::Error(kInvalidArgument) "expected X, got Y" on a mismatch.
  bool as_bool() const;
  int64_t as_int64() const;   // integer literal only (1.0 and 1e3 are not integers)
  double as_double() const;   // any number
  const std::string& as_string() const;
  const std::vector<JsonValue>& array() const;
  const std::vector<JsonMember>& items() const;  // object members, insertion order

  // Object lookup: nullptr if absent (throws if this is not an object).
  const JsonValue* find(std::string_view key) const;
  size_t size() const;  // elements of an array or members of an object; throws otherwise

  // Building (used by the parser; keys must be unique, the caller checks).
  void push_back(JsonValue v);
  void add_member(std::string key, JsonValue v);

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool has_int_ = false;
  int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  std::vector<JsonValue> array_;
  std::vector<JsonMember> members_;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

// Parses one JSON document. Throws eli::Error(kInvalidArgument) "invalid JSON at byte N: why".
JsonValue parse_json(std::string_view text, const JsonLimits& limits = {});

// As parse_json, but a failure is re-thrown as eli::Error(`kind`) "CONTEXT: invalid JSON at ...",
// e.g. parse_json_as(text, "model.safetensors.index.json", ErrorKind::kModelLoad).
JsonValue parse_json_as(std::string_view text, const std::string& context, ErrorKind kind,
                        const JsonLimits& limits = {});

// Reads and parses a whole file (size checked against limits.max_bytes before reading). Every
// failure (missing file, too large, bad JSON) throws eli::Error(kModelLoad) naming the path.
JsonValue read_json_file(const std::string& path, const JsonLimits& limits = {});

}  // namespace eli
