// tests/fuzz/fuzz_common.h: shared helpers of the libFuzzer harnesses (tests/fuzz/fuzz_*.cc).
//
// Invariants: every harness runs its parser on untrusted bytes and accepts exactly two outcomes:
// success, or eli::Error of the kind the parser documents (kModelLoad for model files,
// kInvalidArgument for parse_json). Any other exception, or an eli::Error of another kind, is a
// finding: report() prints it and traps, so libFuzzer saves the input as a crash. Files live in a
// per-process directory under /dev/shm (tmpfs), removed at exit.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "eli/error.h"

namespace eli_fuzz {

[[noreturn]] inline void report(const char* what, const char* detail) {
  std::fprintf(stderr, "\n==eli-fuzz== FINDING: %s: %s\n", what, detail);
  std::fflush(stderr);
  __builtin_trap();
}

// A per-process scratch directory, e.g. /dev/shm/eli_fuzz_1234 (falls back to /tmp).
inline const std::string& scratch_dir() {
  // Heap-allocated and never freed: the atexit cleanup below runs after static destructors would.
  static const std::string* dir = [] {
    const char* base = std::getenv("ELI_FUZZ_TMP");
    std::string root = base ? base : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    auto* d = new std::string(root + "/eli_fuzz_" + std::to_string(getpid()));
    std::string cmd = "mkdir -p '" + *d + "'";
    if (std::system(cmd.c_str()) != 0) report("setup", "cannot create the scratch directory");
    std::atexit([] {
      std::string rm = "rm -rf '" + scratch_dir() + "'";
      (void)std::system(rm.c_str());
    });
    return d;
  }();
  return *dir;
}

// Writes `size` bytes to `path` (truncating); traps on an I/O failure (a harness bug, not a finding
// of the parser, but it must not be silent).
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) report("setup", ("cannot write " + path).c_str());
  if (size > 0 && std::fwrite(data, 1, size, f) != size) report("setup", "short write");
  std::fclose(f);
}

// Runs fn(); returns true on success, false on an eli::Error of kind `expected`; traps otherwise.
template <typename Fn>
bool expect_only(eli::ErrorKind expected, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const eli::Error& e) {
    if (e.kind() != expected) {
      std::string msg = std::string("eli::Error of kind ") + eli::error_kind_name(e.kind()) +
                        " (expected " + eli::error_kind_name(expected) + "): " + e.what();
      report("wrong error kind", msg.c_str());
    }
    return false;
  } catch (const std::exception& e) {
    report("non-eli exception", e.what());
  } catch (...) {
    report("non-eli exception", "unknown type");
  }
}

// Reads every byte of [p, p + n) so that an out-of-range view faults under the fuzzer.
inline uint64_t touch(const uint8_t* p, uint64_t n) {
  uint64_t sum = 0;
  if (n == 0) return 0;
  sum += p[0];
  sum += p[n - 1];
  for (uint64_t i = 0; i < n; i += 4096) sum += p[i];
  return sum;
}

}  // namespace eli_fuzz
