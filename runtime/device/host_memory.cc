// runtime/device/host_memory.cc: see host_memory.h. Plain stdio, no iostreams, so this works even
// where the C++ runtime's locale machinery is unusable.
#include "runtime/device/host_memory.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace eli {
namespace {

// `key` ("MemAvailable") of /proc/meminfo in bytes, or 0.
uint64_t meminfo_bytes(const char* format) {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kib = 0;
  bool found = false;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, format, &kib) == 1) {
      found = true;
      break;
    }
  }
  std::fclose(f);
  return found ? static_cast<uint64_t>(kib) * 1024 : 0;
}

uint64_t sysconf_bytes(int pages_name) {
  const long pages = sysconf(pages_name);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  return 0;
}

}  // namespace

uint64_t host_available_bytes() {
  // MemAvailable: what the kernel can give without swapping.
  const uint64_t b = meminfo_bytes("MemAvailable: %llu kB");
  return b != 0 ? b : sysconf_bytes(_SC_AVPHYS_PAGES);
}

uint64_t host_total_bytes() {
  const uint64_t b = meminfo_bytes("MemTotal: %llu kB");
  return b != 0 ? b : sysconf_bytes(_SC_PHYS_PAGES);
}

void* AlignedHostBackend::alloc(size_t bytes) {
  // The pool rounds to multiples of 512, so bytes is a multiple of the alignment as required.
  return std::aligned_alloc(64, bytes);
}

void AlignedHostBackend::free(void* ptr, size_t) { std::free(ptr); }

}  // namespace eli
