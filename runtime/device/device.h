// runtime/device/device.h: the Device interface every backend implements, and its factory.
//
// Invariants: allocate() never returns null (it throws eli::Error(kOutOfMemory) with the numbers);
// memory from one device is freed by the same device; copies are ordered on the given stream
// (nullptr: the device's default stream) and synchronize() waits for all of them. A CPU-only build
// still knows DeviceKind::kCUDA: creating one throws eli::Error(kNotCompiled).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "eli/device.h"

namespace eli {

// MemoryStats (the allocator's counters) is declared in eli/device.h.

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceId id() const = 0;
  virtual void* allocate(size_t bytes) = 0;
  virtual void free(void* ptr) = 0;
  virtual void copy_host_to_device(void* dst, const void* src, size_t bytes, void* stream = nullptr) = 0;
  virtual void copy_device_to_host(void* dst, const void* src, size_t bytes, void* stream = nullptr) = 0;
  virtual void copy_device_to_device(void* dst, const void* src, size_t bytes, void* stream = nullptr) = 0;
  virtual void memset_zero(void* dst, size_t bytes, void* stream = nullptr) = 0;
  virtual void synchronize() = 0;
  virtual MemoryStats memory_stats() const = 0;
  // Bytes the device can still give (free device memory; for the CPU, available RAM).
  virtual uint64_t available_bytes() const = 0;
  // The device's whole memory (cudaMemGetInfo's total; for the CPU, MemTotal).
  virtual uint64_t total_bytes() const = 0;
};

std::unique_ptr<Device> create_cpu_device();
// Throws eli::Error(kNotCompiled) in a CPU-only build, kDevice if the index does not exist.
std::unique_ptr<Device> create_cuda_device(int index);
std::unique_ptr<Device> create_device(DeviceId id);
// Number of CUDA devices visible; 0 in a CPU-only build or when the driver is absent.
int cuda_device_count();
bool cuda_compiled();

}  // namespace eli
