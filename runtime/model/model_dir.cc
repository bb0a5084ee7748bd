// runtime/model/model_dir.cc: see model_dir.h.
#include "runtime/model/model_dir.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "eli/error.h"

namespace eli {
namespace {

constexpr char kHfRepoPrefix[] = "models--";

std::string parent_of(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string base_of(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// realpath, or "" with errno set.
std::string resolve(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return std::string();
  return std::string(buf);
}

}  // namespace

bool path_under(const std::string& path, const std::string& root) {
  if (root.empty() || path.size() <= root.size() || path.compare(0, root.size(), root) != 0) return false;
  return root.back() == '/' || path[root.size()] == '/';
}

ModelRoot model_root(const std::string& dir) {
  struct stat st {};
  ELI_CHECK_KIND(kModelLoad, ::stat(dir.c_str(), &st) == 0, dir, ": no such file or directory");
  ELI_CHECK_KIND(kModelLoad, S_ISDIR(st.st_mode), dir, ": not a directory");
  ModelRoot root;
  root.dir = dir;
  root.real = resolve(dir);
  ELI_CHECK_KIND(kModelLoad, !root.real.empty(), dir, ": cannot resolve the directory: ", std::strerror(errno));
  // Hugging Face cache: <cache>/models--ORG--NAME/snapshots/REV/FILE -> ../../blobs/HASH.
  const std::string snapshots = parent_of(root.real);
  const std::string repo = parent_of(snapshots);
  if (base_of(snapshots) == "snapshots" && base_of(repo).compare(0, sizeof(kHfRepoPrefix) - 1, kHfRepoPrefix) == 0) {
    root.hf_blobs = resolve(repo + "/blobs");  // "" when the repo has no blobs/ (then nothing extra is allowed)
  }
  return root;
}

bool entry_exists(const ModelRoot& root, const std::string& rel) {
  struct stat st {};
  return ::lstat((root.dir + "/" + rel).c_str(), &st) == 0;
}

std::string contained_path(const ModelRoot& root, const std::string& rel, const std::string& what) {
  const std::string full = root.dir + "/" + rel;
  const std::string& name = what.empty() ? full : what;
  struct stat lst {};
  ELI_CHECK_KIND(kModelLoad, ::lstat(full.c_str(), &lst) == 0, name, ": missing (", full, ")");
  const std::string real = resolve(full);
  if (real.empty()) {
    const int err = errno;
    ELI_THROW(kModelLoad, name, ": cannot be resolved", S_ISLNK(lst.st_mode) ? " (a broken symlink)" : "", ": ",
              std::strerror(err));
  }
  if (!path_under(real, root.real) && !path_under(real, root.hf_blobs)) {
    ELI_THROW(kModelLoad, name, " resolves to ", real, ": outside the model directory (symlink); eli opens only "
              "files inside ", root.dir, root.hf_blobs.empty() ? "" : " or its Hugging Face cache blobs/");
  }
  struct stat st {};
  ELI_CHECK_KIND(kModelLoad, ::stat(real.c_str(), &st) == 0, name, ": cannot stat: ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) ELI_THROW(kModelLoad, name, ": is a directory, not a file");
  ELI_CHECK_KIND(kModelLoad, S_ISREG(st.st_mode), name, ": not a regular file (a FIFO, device or socket)");
  return real;
}

}  // namespace eli
