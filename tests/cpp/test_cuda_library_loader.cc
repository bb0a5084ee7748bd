// tests/cpp/test_cuda_library_loader.cc: the run-time search for CUDA libraries
// (runtime/device/cuda_library_loader.h), with stand-in libraries: it needs no GPU and no toolkit,
// so it runs in the CPU-only test build. Each test uses its own override variable name.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "eli/error.h"
#include "runtime/device/cuda_library_loader.h"

namespace eli {
namespace {

CudaLibrarySpec spec_for(const char* soname, const char* env) {
  return CudaLibrarySpec{"TestLib", soname, env, {"nvidia/cu99/lib", "nvidia/testlib/lib"}, "nvidia-testlib",
                         "CUDA 99"};
}

// The file the loader found for libm.so.6.
std::string libm_path() {
  void* h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
  struct link_map* lm = nullptr;
  if (h == nullptr || dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || lm == nullptr) return "";
  return lm->l_name;
}

std::string make_temp_dir() {
  char tmpl[] = "/tmp/eli_loader_test_XXXXXX";
  const char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d != nullptr ? d : "/tmp";
}

TEST(CudaLibraryLoader, CandidatesInOrder) {
  unsetenv("ELI_TEST_LIB_ORDER");
  const auto c = cuda_library_candidates(spec_for("libtest.so.99", "ELI_TEST_LIB_ORDER"));
  const std::string module_dir = loaded_module_dir();
  ASSERT_FALSE(module_dir.empty());
  const std::string site = module_dir.substr(0, module_dir.find_last_of('/'));
  ASSERT_GE(c.size(), 4u);
  EXPECT_EQ(c[0], site + "/nvidia/cu99/lib/libtest.so.99");
  EXPECT_EQ(c[1], site + "/nvidia/testlib/lib/libtest.so.99");
  EXPECT_EQ(c[2], "");  // the dynamic loader's own search
  bool toolkit = false;
  for (const std::string& s : c) toolkit = toolkit || s == "/usr/local/cuda/lib64/libtest.so.99";
  EXPECT_TRUE(toolkit);
}

TEST(CudaLibraryLoader, OverrideIsTheOnlyPlaceTried) {
  setenv("ELI_TEST_LIB_ONLY", "/some/dir/libx.so", 1);
  auto c = cuda_library_candidates(spec_for("libtest.so.99", "ELI_TEST_LIB_ONLY"));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], "/some/dir/libx.so");
  const std::string dir = make_temp_dir();
  setenv("ELI_TEST_LIB_ONLY", dir.c_str(), 1);  // a folder: the soname inside it
  c = cuda_library_candidates(spec_for("libtest.so.99", "ELI_TEST_LIB_ONLY"));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], dir + "/libtest.so.99");
  unsetenv("ELI_TEST_LIB_ONLY");
  rmdir(dir.c_str());
}

TEST(CudaLibraryLoader, LoadsThroughTheLoaderPathAndTheOverride) {
  unsetenv("ELI_TEST_LIB_LOAD");
  // libm is on every Linux loader path: found by step 3.
  EXPECT_NE(load_cuda_library(spec_for("libm.so.6", "ELI_TEST_LIB_LOAD")), nullptr);
  // A folder holding the library under the wanted name, given as the override.
  const std::string dir = make_temp_dir();
  const std::string link = dir + "/libstandin.so.99";
  ASSERT_EQ(symlink(libm_path().c_str(), link.c_str()), 0) << libm_path();
  setenv("ELI_TEST_LIB_LOAD", dir.c_str(), 1);
  EXPECT_NE(load_cuda_library(spec_for("libstandin.so.99", "ELI_TEST_LIB_LOAD")), nullptr);
  unsetenv("ELI_TEST_LIB_LOAD");
  std::remove(link.c_str());
  rmdir(dir.c_str());
}

TEST(CudaLibraryLoader, MissingLibraryNamesWhatToInstallAndWhereItLooked) {
  unsetenv("ELI_TEST_LIB_MISSING");
  try {
    load_cuda_library(spec_for("libeli_no_such_library.so.99", "ELI_TEST_LIB_MISSING"));
    FAIL() << "expected eli::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kDevice);
    const std::string msg = e.what();
    for (const char* want : {"TestLib (libeli_no_such_library.so.99) is needed for CUDA devices",
                             "pip install nvidia-testlib", "CUDA 99", "ELI_TEST_LIB_MISSING",
                             "nvidia/cu99/lib/libeli_no_such_library.so.99: no such file",
                             "libeli_no_such_library.so.99 (the loader's search path)",
                             "/usr/local/cuda/lib64/libeli_no_such_library.so.99"}) {
      EXPECT_NE(msg.find(want), std::string::npos) << "missing '" << want << "' in: " << msg;
    }
  }
  // A bad override fails without looking elsewhere, and says so.
  setenv("ELI_TEST_LIB_MISSING", "/nonexistent/libm.so.6", 1);
  try {
    load_cuda_library(spec_for("libm.so.6", "ELI_TEST_LIB_MISSING"));
    FAIL() << "expected eli::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("from ELI_TEST_LIB_MISSING=/nonexistent/libm.so.6"), std::string::npos) << msg;
  }
  unsetenv("ELI_TEST_LIB_MISSING");
}

}  // namespace
}  // namespace eli
