// tests/fuzz/fuzz_sharded_index.cc: libFuzzer harness of the sharded safetensors index
// (model.safetensors.index.json, opened through open_safetensors(dir)).
//
// Setup (once per process): <tmpfs scratch>/model/ receives the seven valid shards of
// tests/data/models/llama_sharded, plus traps for the path rules: sub/inner.safetensors (a valid
// shard one level down), link.safetensors (a symlink to ../outside.safetensors, outside the model
// directory), and a directory named dir.safetensors. Each input is written as
// model/model.safetensors.index.json. Accepted outcomes: a WeightSource whose every tensor lies in
// a file inside model/, or eli::Error(kModelLoad).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/model/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

#ifndef ELI_FUZZ_DATA_DIR
#define ELI_FUZZ_DATA_DIR "tests/data"
#endif

namespace {

std::string model_dir() {
  static const std::string dir = [] {
    const char* env = std::getenv("ELI_TEST_DATA_DIR");
    std::string data = env ? env : ELI_FUZZ_DATA_DIR;
    std::string src = data + "/models/llama_sharded";
    std::string root = eli_fuzz::scratch_dir();
    std::string d = root + "/model";
    std::string cmd = "set -e; mkdir -p '" + d + "/sub' '" + d + "/dir.safetensors'; "
                      "cp '" + src + "'/model-0000*-of-00007.safetensors '" + d + "'/; "
                      "cp '" + src + "/model-00001-of-00007.safetensors' '" + d + "/sub/inner.safetensors'; "
                      "cp '" + src + "/model-00001-of-00007.safetensors' '" + root + "/outside.safetensors'; "
                      "ln -sf ../outside.safetensors '" + d + "/link.safetensors'";
    if (std::system(cmd.c_str()) != 0) eli_fuzz::report("setup", ("cannot stage shards from " + src).c_str());
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = model_dir();
  eli_fuzz::write_file(dir + "/model.safetensors.index.json", data, size);
  eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] {
    auto src = eli::open_safetensors(dir);
    for (const auto& [name, t] : src->tensors()) {
      if (t.file.compare(0, dir.size() + 1, dir + "/") != 0 || t.file.find("..") != std::string::npos ||
          t.file.find("link.safetensors") != std::string::npos)
        eli_fuzz::report("sharded_index", ("tensor read from outside the model directory: " + t.file).c_str());
      (void)eli_fuzz::touch(t.data, t.nbytes);
    }
  });
  return 0;
}
