// runtime/device/cuda/pinned_host_pool.h: a caching pool of page-locked host memory
// (cudaHostAlloc, portable across devices) for staging copies and KV offload. Same bookkeeping as
// the device pool (SizeClassPool): size classes, free lists, budget, stats. Plain C++ header.
//
// Invariants: a block may be freed only after the async copies that read or write it are done
// (synchronize their stream or an event first); the pool cannot see host-side use. Pinned memory
// is scarce: set a budget (kOutOfMemory beyond it) rather than letting it eat the host.
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/device/size_class_pool.h"

namespace eli {

class PinnedHostPool {
 public:
  explicit PinnedHostPool(SizeClassPoolOptions options = {});
  ~PinnedHostPool();
  PinnedHostPool(const PinnedHostPool&) = delete;
  PinnedHostPool& operator=(const PinnedHostPool&) = delete;

  void* allocate(size_t bytes) { return pool_->allocate(bytes, nullptr); }
  void free(void* ptr) { pool_->free(ptr); }
  void reserve(size_t bytes, size_t count) { pool_->reserve(bytes, count, nullptr); }
  uint64_t release_cached() { return pool_->release_cached(); }
  void set_budget(uint64_t bytes) { pool_->set_budget(bytes); }
  PoolStats stats() const { return pool_->stats(); }
  SizeClassPool& pool() { return *pool_; }

 private:
  std::unique_ptr<PoolBackend> backend_;  // outlives pool_ (declared first)
  std::unique_ptr<SizeClassPool> pool_;
};

}  // namespace eli
