// runtime/model/model_files.cc: see model_files.h.
#include "runtime/model/model_files.h"

#include <sys/stat.h>

#include <cstring>
#include <dirent.h>
#include <unordered_map>
#include <vector>

#include "eli/error.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_spec.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model_spec_check.h"
#include "runtime/model/safetensors.h"

namespace eli {
namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool ends_with(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}
std::vector<std::string> gguf_files_in(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (ends_with(name, ".gguf")) out.push_back(dir + "/" + name);
    }
    ::closedir(d);
  }
  return out;
}

ModelFiles open_gguf(const std::string& path) {
  ModelFiles m;
  m.path = path;
  m.format = "gguf";
  std::shared_ptr<GgufFile> f(GgufFile::open(path).release());
  m.spec = spec_from_gguf(*f);
  validate_model_spec(m.spec, path);
  // llama.cpp permutes Q/K rows for its interleaved RoPE only in llama-architecture files.
  m.gguf_llama_permuted = f->get_string("general.architecture", "") == "llama" ||
                          f->get_string("general.architecture", "") == "mistral";
  auto hf_to_gguf = std::make_shared<std::unordered_map<std::string, std::string>>();
  for (const auto& [name, info] : f->tensors()) {
    std::string hf = hf_name_for_gguf_tensor(name);
    if (!hf.empty()) (*hf_to_gguf)[hf] = name;
  }
  m.name_of = [hf_to_gguf](const std::string& hf) {
    auto it = hf_to_gguf->find(hf);
    return it == hf_to_gguf->end() ? std::string() : it->second;
  };
  m.gguf = f;
  m.weights = f;
  return m;
}

}  // namespace

ModelFiles open_model_files(const std::string& path) {
  ELI_CHECK_KIND(kModelLoad, !path.empty(), "empty model path");
  if (is_file(path)) {
    if (ends_with(path, ".gguf")) return open_gguf(path);
    if (ends_with(path, ".safetensors")) {
      ELI_THROW(kModelLoad, path, ": a bare .safetensors file has no config; pass the model directory "
                "(config.json + safetensors)");
    }
    if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth")) {
      ELI_THROW(kModelLoad, path, ": pickle checkpoints are never loaded (unpickling runs code); convert the "
                "model to safetensors");
    }
    // Unknown extension: sniff the GGUF magic.
    return open_gguf(path);
  }
  ELI_CHECK_KIND(kModelLoad, is_dir(path), path, ": no such file or directory");
  const std::string config = path + "/config.json";
  if (is_file(config)) {
    ModelFiles m;
    m.path = path;
    m.format = "safetensors";
    m.spec = parse_hf_config(config);  // validates the spec too
    m.weights = std::shared_ptr<WeightSource>(open_safetensors(path).release());
    m.name_of = [](const std::string& hf) { return hf; };
    return m;
  }
  std::vector<std::string> ggufs = gguf_files_in(path);
  ELI_CHECK_KIND(kModelLoad, ggufs.size() <= 1, path, ": holds ", ggufs.size(), " .gguf files; name one of them");
  if (ggufs.size() == 1) return open_gguf(ggufs[0]);
  ELI_THROW(kModelLoad, path, ": not a model directory (no config.json and no .gguf file)");
}

}  // namespace eli
