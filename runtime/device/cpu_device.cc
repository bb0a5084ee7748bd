// runtime/device/cpu_device.cc: the CPU Device: 64-byte aligned host memory through the same
// caching SizeClassPool as the GPU (so stats and "no allocations in the decode loop" read alike).
//
// Invariants: every block is 64-byte aligned (sizes are rounded to >= 512 B multiples); copies are
// plain memcpy and complete before returning; synchronize() is a no-op.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "eli/error.h"
#include "runtime/device/pooled_device.h"

namespace eli {

uint64_t host_available_bytes() {
  // /proc/meminfo's MemAvailable (what the kernel can give without swapping); plain stdio, no
  // iostreams, so this works even where the C++ runtime's locale machinery is unusable.
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
        found = true;
        break;
      }
    }
    std::fclose(f);
    if (found) return static_cast<uint64_t>(kib) * 1024;
  }
  long pages = sysconf(_SC_AVPHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  return 0;
}

namespace {

// /proc/meminfo's MemTotal, else sysconf (0 if neither works).
uint64_t host_total_bytes() {
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
        found = true;
        break;
      }
    }
    std::fclose(f);
    if (found) return static_cast<uint64_t>(kib) * 1024;
  }
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  return 0;
}

class AlignedHostBackend : public PoolBackend {
 public:
  void* alloc(size_t bytes) override {
    // The pool rounds to multiples of 512, so bytes is a multiple of the alignment as required.
    return std::aligned_alloc(64, bytes);
  }
  void free(void* ptr, size_t) override { std::free(ptr); }
  uint64_t free_bytes() const override { return host_available_bytes(); }
  const char* name() const override { return "cpu"; }
};

class CpuDevice final : public PooledDevice {
 public:
  CpuDevice() : pool_(&backend_) {}
  DeviceId id() const override { return DeviceId{DeviceKind::kCPU, 0}; }
  void* allocate(size_t bytes) override { return pool_.allocate(bytes); }
  void free(void* ptr) override { pool_.free(ptr); }
  void copy_host_to_device(void* dst, const void* src, size_t bytes, void*) override { copy(dst, src, bytes); }
  void copy_device_to_host(void* dst, const void* src, size_t bytes, void*) override { copy(dst, src, bytes); }
  void copy_device_to_device(void* dst, const void* src, size_t bytes, void*) override { copy(dst, src, bytes); }
  void memset_zero(void* dst, size_t bytes, void*) override {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr, "memset_zero of ", bytes, " bytes to null");
    std::memset(dst, 0, bytes);
  }
  void synchronize() override {}
  MemoryStats memory_stats() const override { return pool_.stats().to_memory_stats(); }
  uint64_t available_bytes() const override { return host_available_bytes(); }
  uint64_t total_bytes() const override { return host_total_bytes(); }
  SizeClassPool& pool() override { return pool_; }

 private:
  static void copy(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr && src != nullptr, "copy of ", bytes, " bytes with a null pointer");
    std::memmove(dst, src, bytes);
  }
  AlignedHostBackend backend_;  // declared before pool_: destroyed after it
  SizeClassPool pool_;
};

}  // namespace

std::unique_ptr<Device> create_cpu_device() { return std::make_unique<CpuDevice>(); }

}  // namespace eli
