// runtime/device/host_memory.h: host RAM figures (/proc/meminfo) and the aligned-RAM pool backend
// that the CPU device memory and the default pinned pool use.
//
// Invariants: the figures never throw (0 when they cannot be read); AlignedHostBackend returns
// 64-byte aligned blocks or nullptr (never throws for out-of-memory), and is only given sizes that
// are multiples of 64 (SizeClassPool rounds to multiples of 512).
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/device/size_class_pool.h"

namespace eli {

// Available host RAM in bytes: /proc/meminfo MemAvailable, else sysconf (0 if neither works).
uint64_t host_available_bytes();
// Total host RAM: /proc/meminfo MemTotal, else sysconf (0 if neither works).
uint64_t host_total_bytes();

class AlignedHostBackend final : public PoolBackend {
 public:
  explicit AlignedHostBackend(const char* name = "cpu") : name_(name) {}
  void* alloc(size_t bytes) override;
  void free(void* ptr, size_t bytes) override;
  uint64_t free_bytes() const override { return host_available_bytes(); }
  const char* name() const override { return name_; }

 private:
  const char* name_;
};

}  // namespace eli
