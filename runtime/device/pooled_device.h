// runtime/device/pooled_device.h: the internal extension of Device that eli's own backends (CPU,
// CUDA) implement: access to the caching pool (budget, reserve, release_cached, detailed stats)
// and to the device's default stream.
//
// Invariants: every allocate() of a PooledDevice goes through pool(); default_stream() is the
// stream that nullptr means in copies, and the stream pool blocks are tagged with (so kernels that
// use freed-and-reused blocks must run on it, or be ordered after it with an event).
#pragma once

#include "runtime/device/device.h"
#include "runtime/device/size_class_pool.h"

namespace eli {

class PooledDevice : public Device {
 public:
  virtual SizeClassPool& pool() = 0;
  // cudaStream_t on CUDA; nullptr on the CPU.
  virtual void* default_stream() const { return nullptr; }
};

// Available host RAM in bytes: /proc/meminfo MemAvailable, else sysconf (0 if neither works).
uint64_t host_available_bytes();

// The PooledDevice behind `device`, or nullptr if it is some other implementation.
inline PooledDevice* as_pooled(Device& device) { return dynamic_cast<PooledDevice*>(&device); }

}  // namespace eli
