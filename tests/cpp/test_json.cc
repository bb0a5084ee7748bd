// tests/cpp/test_json.cc: the strict JSON reader (runtime/core/json.h): what it accepts, what it
// must refuse (RELIABILITY items 1 and 11), its limits and its DOM accessors.
#include <gtest/gtest.h>

#include <string>

#include "runtime/core/json.h"

namespace eli {
namespace {

std::string error_of(std::string_view text, const JsonLimits& limits = {}) {
  try {
    parse_json(text, limits);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(JsonParse, ScalarsAndContainers) {
  JsonValue v = parse_json(R"( {"b": [1, -2.5, true, false, null, "x"], "a": {}, "c": []} )");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.items().size(), 3u);
  EXPECT_EQ(v.items()[0].key, "b");  // insertion order kept
  EXPECT_EQ(v.items()[1].key, "a");
  const JsonValue* b = v.find("b");
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->size(), 6u);
  EXPECT_EQ(b->array()[0].as_int64(), 1);
  EXPECT_DOUBLE_EQ(b->array()[1].as_double(), -2.5);
  EXPECT_FALSE(b->array()[1].is_int64());
  EXPECT_TRUE(b->array()[2].as_bool());
  EXPECT_FALSE(b->array()[3].as_bool());
  EXPECT_TRUE(b->array()[4].is_null());
  EXPECT_EQ(b->array()[5].as_string(), "x");
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(v.find("a")->size(), 0u);
  EXPECT_TRUE(v.find("c")->is_array());
}

TEST(JsonParse, IntegersAreExact) {
  EXPECT_EQ(parse_json("9007199254740993").as_int64(), 9007199254740993LL);
  EXPECT_EQ(parse_json("9223372036854775807").as_int64(), INT64_MAX);
  EXPECT_EQ(parse_json("-9223372036854775808").as_int64(), INT64_MIN);
  JsonValue big = parse_json("9223372036854775808");  // does not fit: a double only
  EXPECT_TRUE(big.is_number());
  EXPECT_FALSE(big.is_int64());
  EXPECT_THROW(big.as_int64(), Error);
  EXPECT_FALSE(parse_json("1.0").is_int64());
  EXPECT_FALSE(parse_json("1e3").is_int64());
  EXPECT_DOUBLE_EQ(parse_json("1e3").as_double(), 1000.0);
  EXPECT_EQ(parse_json("-0").as_int64(), 0);
  EXPECT_DOUBLE_EQ(parse_json("0.5E-2").as_double(), 0.005);
}

TEST(JsonParse, StringEscapesAndUtf8) {
  EXPECT_EQ(parse_json(R"("a\"\\\/\b\f\n\r\t")").as_string(), "a\"\\/\b\f\n\r\t");
  EXPECT_EQ(parse_json(R"("\u00e9")").as_string(), "\xc3\xa9");
  EXPECT_EQ(parse_json(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");
  EXPECT_EQ(parse_json("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"").as_string(), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  EXPECT_EQ(parse_json(R"("\u0000")").as_string(), std::string(1, '\0'));
}

struct BadCase {
  const char* text;
  const char* expect;
};

TEST(JsonParse, RejectsMalformed) {
  const BadCase cases[] = {
      {"", "unexpected end"},
      {"   ", "unexpected end"},
      {"{", "unexpected end"},
      {"[1,]", "expected a value"},
      {"{\"a\":1,}", "expected a string key"},
      {"{a:1}", "expected a string key"},
      {"{\"a\" 1}", "expected ':'"},
      {"[1 2]", "expected ',' or ']'"},
      {"01", "leading zeros"},
      {"-01", "leading zeros"},
      {"-", "expected a digit"},
      {"1.", "digit after '.'"},
      {".5", "expected a value"},
      {"1e", "exponent"},
      {"+1", "expected a value"},
      {"NaN", "NaN and Infinity"},
      {"Infinity", "NaN and Infinity"},
      {"-Infinity", "NaN and Infinity"},
      {"1e400", "out of range"},
      {"tru", "invalid literal"},
      {"nul", "invalid literal"},
      {"'a'", "expected a value"},
      {"1 2", "trailing characters"},
      {"[1] x", "trailing characters"},
      {"{} {}", "trailing characters"},
      {"// c\n1", "expected a value"},
      {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
      {"\"abc", "unterminated string"},
      {"\"\\x\"", "invalid escape"},
      {"\"\\u12xy\"", "bad hex digit"},
      {"\"\\u12\"", "truncated \\u escape"},
      {"\"\\ud800\"", "lone high surrogate"},
      {"\"\\ud800\\u0041\"", "lone high surrogate"},
      {"\"\\udc00\"", "lone low surrogate"},
      {"\"a\x01\"", "control character"},
      {"\"a\nb\"", "control character"},
      {"\"\xff\"", "invalid UTF-8"},
      {"\"\x80\"", "invalid UTF-8"},
      {"\"\xc0\xaf\"", "invalid UTF-8"},          // overlong '/'
      {"\"\xe0\x80\xaf\"", "overlong"},           // overlong 3-byte
      {"\"\xed\xa0\x80\"", "encoded surrogate"},  // U+D800 as UTF-8
      {"\"\xf4\x90\x80\x80\"", "past U+10FFFF"},
      {"\"\xe2\x82\"", "invalid UTF-8"},          // truncated sequence
      {"\"\xe2(\xa1\"", "continuation"},
  };
  for (const BadCase& c : cases) {
    std::string err = error_of(c.text);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "input: " << c.text << "\nerror: " << err;
    EXPECT_NE(err.find("invalid JSON at byte"), std::string::npos) << err;
  }
  std::string with_nul("[1]\0", 4);
  EXPECT_NE(error_of(with_nul).find("trailing"), std::string::npos);
}

TEST(JsonParse, ErrorNamesByteOffset) {
  EXPECT_NE(error_of("[1, 2, x]").find("at byte 7"), std::string::npos) << error_of("[1, 2, x]");
  EXPECT_NE(error_of("{\"k\":1, \"k\":2}").find("at byte 8"), std::string::npos);
}

TEST(JsonLimits, DepthLimit) {
  auto nested = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  EXPECT_NO_THROW(parse_json(nested(64)));
  EXPECT_NE(error_of(nested(65)).find("nesting deeper than the limit of 64"), std::string::npos);
  // Far past any recursion budget: must fail cleanly, not overflow the stack.
  EXPECT_NE(error_of(std::string(1000000, '[')).find("nesting"), std::string::npos);
  EXPECT_NE(error_of(std::string(500000, '{') ).find("expected a string key"), std::string::npos);
  std::string objs;
  for (int i = 0; i < 70; ++i) objs += "{\"a\":";
  objs += "1" + std::string(70, '}');
  EXPECT_NE(error_of(objs).find("nesting"), std::string::npos);
  JsonLimits shallow;
  shallow.max_depth = 2;
  EXPECT_NO_THROW(parse_json("[[1]]", shallow));
  EXPECT_NE(error_of("[[[1]]]", shallow).find("limit of 2"), std::string::npos);
}

TEST(JsonLimits, SizeAndValueCount) {
  JsonLimits small;
  small.max_bytes = 8;
  EXPECT_NO_THROW(parse_json("[1,2,3]", small));
  EXPECT_NE(error_of("[1,2,3,4,5]", small).find("exceeds the limit of 8"), std::string::npos);
  JsonLimits few;
  few.max_values = 4;
  EXPECT_NO_THROW(parse_json("[1,2,3]", few));
  EXPECT_NE(error_of("[1,2,3,4]", few).find("more than 4 values"), std::string::npos);
}

TEST(JsonAccess, TypeMismatchThrows) {
  JsonValue v = parse_json(R"({"s": "x", "n": 1.5, "a": [1]})");
  try {
    v.find("s")->as_int64();
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("expected an integer, got string"), std::string::npos) << e.what();
  }
  EXPECT_THROW(v.find("n")->as_int64(), Error);
  EXPECT_THROW(v.find("n")->as_string(), Error);
  EXPECT_THROW(v.find("a")->items(), Error);
  EXPECT_THROW(v.find("a")->find("x"), Error);
  EXPECT_THROW(v.array(), Error);
  EXPECT_THROW(v.find("s")->size(), Error);
  EXPECT_THROW(v.as_bool(), Error);
  EXPECT_STREQ(v.find("a")->type_name(), "array");
}

TEST(JsonParse, ParseAsRethrowsWithContext) {
  try {
    parse_json_as("[1,", "config.json", ErrorKind::kModelLoad);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
    EXPECT_EQ(std::string(e.what()).rfind("config.json: invalid JSON at byte", 0), 0u) << e.what();
  }
}

TEST(JsonParse, ReadFileErrors) {
  try {
    read_json_file("/nonexistent/eli/config.json");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/eli/config.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace eli
