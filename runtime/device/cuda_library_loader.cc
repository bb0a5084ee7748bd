// runtime/device/cuda_library_loader.cc: see cuda_library_loader.h.
#include "runtime/device/cuda_library_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>

#include "eli/error.h"

namespace eli {

namespace {

bool is_dir(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

const char* env(const char* name) {
  const char* v = name != nullptr ? std::getenv(name) : nullptr;
  return v != nullptr && *v != '\0' ? v : nullptr;
}

#if defined(__aarch64__)
constexpr const char* kTargetsDir = "targets/sbsa-linux/lib";
#else
constexpr const char* kTargetsDir = "targets/x86_64-linux/lib";
#endif

}  // namespace

std::string loaded_module_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&loaded_module_dir), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string path = info.dli_fname;
  if (path.find('/') == std::string::npos) return "";  // the main program found through PATH
  char* real = realpath(path.c_str(), nullptr);
  if (real != nullptr) {
    path = real;
    std::free(real);
  }
  return parent(path);
}

std::vector<std::string> cuda_library_candidates(const CudaLibrarySpec& spec) {
  std::vector<std::string> out;
  if (const char* o = env(spec.env_override)) {
    const std::string path = o;
    out.push_back(is_dir(path) ? path + "/" + spec.soname : path);
    return out;
  }
  // The module lives in <site-packages>/eli/; NVIDIA's wheels unpack beside it.
  const std::string module_dir = loaded_module_dir();
  if (!module_dir.empty()) {
    const std::string site = parent(module_dir);
    for (const char* sub : spec.pip_subdirs) out.push_back(site + "/" + sub + "/" + spec.soname);
  }
  out.push_back("");  // the dynamic loader's search
  std::vector<std::string> roots;
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* v = env(var)) roots.push_back(v);
  }
  roots.push_back("/usr/local/cuda");
  for (const std::string& root : roots) {
    for (const char* lib : {"lib64", kTargetsDir}) {
      const std::string cand = root + "/" + lib + "/" + spec.soname;
      bool seen = false;
      for (const std::string& c : out) seen = seen || c == cand;
      if (!seen) out.push_back(cand);
    }
  }
  return out;
}

void* load_cuda_library(const CudaLibrarySpec& spec) {
  std::string tried;
  for (const std::string& cand : cuda_library_candidates(spec)) {
    if (!cand.empty()) {
      struct stat st {};
      if (stat(cand.c_str(), &st) != 0) {
        tried += "\n  " + cand + ": no such file";
        continue;
      }
    }
    void* h = dlopen(cand.empty() ? spec.soname : cand.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h != nullptr) return h;
    const char* why = dlerror();
    tried += "\n  " + (cand.empty() ? std::string(spec.soname) + " (the loader's search path)" : cand) + ": " +
             (why != nullptr ? why : "dlopen failed");
  }
  const char* o = env(spec.env_override);
  ELI_THROW(kDevice, spec.what, " (", spec.soname, ") is needed for CUDA devices but could not be loaded",
            o != nullptr ? std::string(" from ") + spec.env_override + "=" + o : std::string(),
            ". Install NVIDIA's package with `pip install ", spec.pip_package,
            "` (the [cuda] extra of eli's CUDA wheel brings it), or the ", spec.toolkit,
            " toolkit, or set ", spec.env_override, " to the library file. Tried:", tried);
}

}  // namespace eli
