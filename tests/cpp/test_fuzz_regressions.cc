// tests/cpp/test_fuzz_regressions.cc: replays every input of tests/data/malformed/fuzz/manifest.json
// (found by the fuzzers in tests/fuzz and tests/python/test_fuzz_python.py, plus variants) through
// the C++ reader of its harness; each must throw eli::Error(kModelLoad) containing `expect`.
#include <gtest/gtest.h>

#include <string>

#include "eli/error.h"
#include "runtime/core/json.h"
#include "runtime/model/gguf.h"
#include "runtime/model/safetensors.h"

namespace {

const std::string kFuzzDir = std::string(ELI_TEST_DATA_DIR) + "/malformed/fuzz";

TEST(FuzzRegression, EveryCaseIsAModelLoadError) {
  eli::JsonValue manifest = eli::read_json_file(kFuzzDir + "/manifest.json");
  const eli::JsonValue* cases = manifest.find("cases");
  ASSERT_NE(cases, nullptr);
  ASSERT_GE(cases->size(), 1u);
  for (const eli::JsonValue& c : cases->array()) {
    const std::string path = kFuzzDir + "/" + c.find("path")->as_string();
    const std::string harness = c.find("harness")->as_string();
    const std::string expect = c.find("expect")->as_string();
    SCOPED_TRACE(path);
    try {
      if (harness == "gguf") {
        (void)eli::GgufFile::open(path);
      } else if (harness == "safetensors") {
        (void)eli::open_safetensors(path);
      } else {
        FAIL() << "no C++ route for harness " << harness;
      }
      ADD_FAILURE() << "opened without an error";
    } catch (const eli::Error& e) {
      EXPECT_EQ(e.kind(), eli::ErrorKind::kModelLoad) << e.what();
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  }
}

TEST(FuzzRegression, ValidGgufStillOpens) {
  auto f = eli::GgufFile::open(std::string(ELI_TEST_DATA_DIR) + "/gguf/tiny_qwen2.gguf");
  EXPECT_FALSE(f->tensors().empty());
}

}  // namespace
