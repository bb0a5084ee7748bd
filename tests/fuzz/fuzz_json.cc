// tests/fuzz/fuzz_json.cc: libFuzzer harness of parse_json (runtime/core/json.h), in memory.
//
// Each input is parsed twice: with the default JsonLimits and with tight ones. Accepted outcomes:
// a document, or eli::Error(kInvalidArgument). Cross-checks: a document accepted under the tight
// limits is accepted under the defaults; the DOM of an accepted document can be walked with every
// typed accessor that its type admits (none of them may throw); depth never exceeds max_depth;
// parse_json_as re-throws with the kind it is given.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/core/json.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

// Returns the nesting depth of v (scalars: 0) after reading every value through its accessor.
int walk(const eli::JsonValue& v, size_t* count) {
  ++*count;
  switch (v.type()) {
    case eli::JsonValue::Type::kNull: return 0;
    case eli::JsonValue::Type::kBool: (void)v.as_bool(); return 0;
    case eli::JsonValue::Type::kNumber:
      (void)v.as_double();
      if (v.is_int64()) (void)v.as_int64();
      return 0;
    case eli::JsonValue::Type::kString: (void)v.as_string().size(); return 0;
    case eli::JsonValue::Type::kArray: {
      int depth = 0;
      for (const auto& e : v.array()) depth = std::max(depth, walk(e, count));
      if (v.size() != v.array().size()) eli_fuzz::report("json", "array size() mismatch");
      return depth + 1;
    }
    case eli::JsonValue::Type::kObject: {
      int depth = 0;
      for (const auto& m : v.items()) {
        if (v.find(m.key) != &m.value) eli_fuzz::report("json", "find() does not return the member");
        depth = std::max(depth, walk(m.value, count));
      }
      if (v.size() != v.items().size()) eli_fuzz::report("json", "object size() mismatch");
      return depth + 1;
    }
  }
  eli_fuzz::report("json", "unknown type");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  eli::JsonLimits tight;
  tight.max_bytes = 4096;
  tight.max_depth = 8;
  tight.max_values = 64;
  bool tight_ok = eli_fuzz::expect_only(eli::ErrorKind::kInvalidArgument, [&] {
    eli::JsonValue v = eli::parse_json(text, tight);
    size_t count = 0;
    int depth = walk(v, &count);
    if (depth > tight.max_depth) eli_fuzz::report("json", "depth above max_depth was accepted");
    if (count > tight.max_values) eli_fuzz::report("json", "more values than max_values accepted");
  });

  eli::JsonLimits defaults;
  bool default_ok = eli_fuzz::expect_only(eli::ErrorKind::kInvalidArgument, [&] {
    eli::JsonValue v = eli::parse_json(text, defaults);
    size_t count = 0;
    int depth = walk(v, &count);
    if (depth > defaults.max_depth) eli_fuzz::report("json", "depth above max_depth was accepted");
  });
  if (tight_ok && !default_ok) eli_fuzz::report("json", "accepted under tight limits only");

  // parse_json_as must convert a failure to the requested kind, and agree with parse_json.
  bool as_ok = eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] {
    (void)eli::parse_json_as(text, "fuzz.json", eli::ErrorKind::kModelLoad, defaults);
  });
  if (as_ok != default_ok) eli_fuzz::report("json", "parse_json_as disagrees with parse_json");
  return 0;
}
