// runtime/model/model_files.cc: see model_files.h.
#include "runtime/model/model_files.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "eli/error.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_spec.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model_dir.h"
#include "runtime/model/model_spec_check.h"
#include "runtime/model/safetensors.h"

namespace eli {
namespace {

bool ends_with(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Names of the entries of `dir` ending in .gguf (sorted); throws kModelLoad when it cannot be read.
std::vector<std::string> gguf_entries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  ELI_CHECK_KIND(kModelLoad, d != nullptr, dir, ": cannot list the directory: ", std::strerror(errno));
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (ends_with(name, ".gguf")) out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// open_path: the file to map (resolved); shown: its name in messages and ModelFiles::path.
ModelFiles open_gguf(const std::string& open_path, const std::string& shown) {
  ModelFiles m;
  m.path = shown;
  m.format = "gguf";
  std::shared_ptr<GgufFile> f(GgufFile::open(open_path, GgufLimits(), shown).release());
  m.spec = spec_from_gguf(*f);
  validate_model_spec(m.spec, shown);
  check_tensor_names(m.spec, *f, TensorNaming::kGguf, shown);
  // llama.cpp permutes Q/K rows for its interleaved RoPE only in llama-architecture files.
  m.gguf_llama_permuted = f->get_string("general.architecture", "") == "llama" ||
                          f->get_string("general.architecture", "") == "mistral";
  auto hf_to_gguf = std::make_shared<std::unordered_map<std::string, std::string>>();
  for (const auto& [name, info] : f->tensors()) {
    std::string hf = hf_name_for_gguf_tensor(name, m.spec.architecture);
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

// A file the user named: the user's choice where it lives; it must still be a regular file.
ModelFiles open_named_file(const std::string& path) {
  if (ends_with(path, ".safetensors")) {
    ELI_THROW(kModelLoad, path, ": a bare .safetensors file has no config; pass the model directory "
              "(config.json + safetensors)");
  }
  if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth")) {
    ELI_THROW(kModelLoad, path, ": pickle checkpoints are never loaded (unpickling runs code); convert the "
              "model to safetensors");
  }
  // .gguf, or an unknown extension: the GGUF reader checks the magic.
  return open_gguf(path, path);
}

ModelFiles open_directory(const std::string& path) {
  const ModelRoot root = model_root(path);
  if (entry_exists(root, "config.json")) {
    const std::string config = path + "/config.json";
    ModelFiles m;
    m.path = path;
    m.format = "safetensors";
    m.spec = parse_hf_config(contained_path(root, "config.json"), config, &m.quant);  // validates the spec too
    m.weights = std::shared_ptr<WeightSource>(open_safetensors(path).release());
    check_tensor_names(m.spec, *m.weights, TensorNaming::kHuggingFace, path);
    m.name_of = [](const std::string& hf) { return hf; };
    return m;
  }
  const std::vector<std::string> ggufs = gguf_entries(path);
  if (ggufs.size() > 1) {
    std::string names;
    for (size_t i = 0; i < ggufs.size() && i < 8; ++i) names += (i ? ", " : "") + ggufs[i];
    ELI_THROW(kModelLoad, path, ": holds ", ggufs.size(), " .gguf files (", names, ggufs.size() > 8 ? ", ..." : "",
              "); name one of them");
  }
  if (ggufs.size() == 1) {
    const std::string shown = path + "/" + ggufs[0];
    return open_gguf(contained_path(root, ggufs[0]), shown);
  }
  if (has_safetensors(path)) {
    ELI_THROW(kModelLoad, path, ": has safetensors weights but no config.json (a Hugging Face model directory "
              "needs both)");
  }
  ELI_THROW(kModelLoad, path, ": not a model directory: it holds neither a config.json (Hugging Face layout: "
            "config.json + model.safetensors) nor a .gguf file");
}

}  // namespace

ModelFiles open_model_files(const std::string& path) {
  ELI_CHECK_KIND(kModelLoad, !path.empty(), "empty model path");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) ELI_THROW(kModelLoad, path, ": no such file or directory");
    ELI_THROW(kModelLoad, path, ": cannot access: ", std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) return open_directory(path);
  ELI_CHECK_KIND(kModelLoad, S_ISREG(st.st_mode), path,
                 ": not a regular file or a directory (a FIFO, device or socket)");
  return open_named_file(path);
}

}  // namespace eli
