// eli/device.h: device identity (kind + index) and the allocator's memory counters. The Device
// interface itself lives in runtime/device/ and is not part of the public API.
#pragma once

#include <cstdint>
#include <string>

namespace eli {

enum class DeviceKind : int { kCPU = 1, kCUDA = 2 };  // values match DLPack's DLDeviceType

struct DeviceId {
  DeviceKind kind = DeviceKind::kCPU;
  int index = 0;
  bool operator==(const DeviceId& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const DeviceId& o) const { return !(*this == o); }
};

// Counters of a device's caching allocator (Device::memory_stats(), Engine::memory_stats()).
struct MemoryStats {
  uint64_t reserved_bytes = 0;   // held from the driver / OS (including cached free blocks)
  uint64_t in_use_bytes = 0;     // handed out to callers now
  uint64_t peak_in_use_bytes = 0;
  uint64_t n_driver_allocs = 0;  // calls into the driver allocator (cudaMalloc, aligned_alloc)
  uint64_t n_allocs = 0;         // allocate() calls served
};

// "cpu", "cuda", "cuda:1". Throws eli::Error(kInvalidArgument) on anything else.
DeviceId parse_device(const std::string& name);
std::string device_name(DeviceId id);

}  // namespace eli
