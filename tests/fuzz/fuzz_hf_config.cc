// tests/fuzz/fuzz_hf_config.cc: libFuzzer harness of the Hugging Face config reader
// (runtime/model/hf_config.h), in memory: parse_json with parse_hf_config's limits, then
// hf_config_to_spec. Every 16th input also goes through parse_hf_config from a tmpfs file, so
// the file path is covered too.
//
// Accepted outcomes: a ModelSpec that passes validate_model_spec again, or eli::Error(kModelLoad)
// from hf_config_to_spec (kInvalidArgument is the documented kind of a JSON syntax error from
// parse_json; parse_hf_config must turn everything into kModelLoad).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/core/json.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model_spec_check.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  eli::JsonLimits limits;
  limits.max_bytes = size_t{16} << 20;  // as parse_hf_config

  eli::JsonValue config;
  bool parsed = eli_fuzz::expect_only(eli::ErrorKind::kInvalidArgument,
                                      [&] { config = eli::parse_json(text, limits); });
  bool spec_ok = false;
  if (parsed) {
    spec_ok = eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] {
      eli::ModelSpec spec = eli::hf_config_to_spec(config, "fuzz/config.json");
      eli::validate_model_spec(spec, "fuzz/config.json");  // the invariant hf_config.h promises
    });
  }

  static unsigned n = 0;
  if ((n++ & 15) == 0) {
    const std::string path = eli_fuzz::scratch_dir() + "/config.json";
    eli_fuzz::write_file(path, data, size);
    bool file_ok = eli_fuzz::expect_only(eli::ErrorKind::kModelLoad,
                                         [&] { (void)eli::parse_hf_config(path); });
    if (file_ok != spec_ok) eli_fuzz::report("hf_config", "file and in-memory paths disagree");
  }
  return 0;
}
