// runtime/device/pooled_device.h: PooledDevice, the common base of eli's own devices (CPU, CUDA,
// and the fakes of the tests): device memory from a caching SizeClassPool, pinned host memory from
// a second pool, Buffers over both, the host thread pool, and immediate streams and host events
// (what a device whose work completes within each call needs; CUDA overrides them).
//
// Invariants: every allocate() and kDevice buffer goes through pool(), tagged with
// default_stream(); every kPinnedHost buffer through pinned_pool(). properties_ is filled by the
// derived constructor. The thread pool is made on first use (a device that never runs host
// kernels starts no threads).
#pragma once

#include <memory>
#include <mutex>

#include "runtime/device/device.h"
#include "runtime/device/host_memory.h"
#include "runtime/device/host_stream.h"
#include "runtime/device/size_class_pool.h"

namespace eli {

class PooledDevice : public Device {
 public:
  explicit PooledDevice(const DeviceOptions& options = {});
  ~PooledDevice() override;

  virtual SizeClassPool& pool() = 0;
  // Page-locked host memory for this device's copies. Default: a pool of 64-byte aligned RAM.
  virtual SizeClassPool& pinned_pool() { return *host_pinned_pool_; }

  const DeviceProperties& properties() const override { return properties_; }
  void* allocate(size_t bytes) override;
  void free(void* ptr) override;
  Buffer allocate_buffer(uint64_t bytes, BufferType type = BufferType::kDevice) override;
  MemoryStats memory_stats() const override;
  MemoryStats pinned_memory_stats() const override;
  void set_memory_budget(uint64_t bytes) override;
  uint64_t release_cached(BufferType type = BufferType::kDevice) override;
  uint64_t allocation_size(uint64_t bytes) const override;
  const Stream& default_stream() const override { return immediate_stream_; }
  std::unique_ptr<Stream> create_stream(int priority = 0) const override;
  std::unique_ptr<Event> create_event(bool timing = false) const override;
  void make_current() const override {}
  ThreadPool& thread_pool() const override;

 protected:
  // const access to the pools for the const queries (the pools are internally synchronized).
  SizeClassPool& pool_of(BufferType type) const;

  DeviceProperties properties_;

 private:
  DeviceOptions options_;
  ImmediateStream immediate_stream_{this};
  AlignedHostBackend host_pinned_backend_{"cpu (pinned)"};  // outlives host_pinned_pool_
  std::unique_ptr<SizeClassPool> host_pinned_pool_;
  mutable std::once_flag threads_once_;
  mutable std::unique_ptr<ThreadPool> threads_;
};

// The PooledDevice behind `device`, or nullptr if it is some other implementation.
inline PooledDevice* as_pooled(Device& device) { return dynamic_cast<PooledDevice*>(&device); }

}  // namespace eli
