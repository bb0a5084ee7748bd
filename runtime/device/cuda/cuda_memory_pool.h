// runtime/device/cuda/cuda_memory_pool.h: eli's caching, stream-ordered device allocator: the
// SizeClassPool bookkeeping (size classes, per-(stream, class) free lists, budget, stats) over
// cudaMalloc/cudaFree on one device. Plain C++ header (no CUDA includes).
//
// Invariants: blocks come from cudaMalloc on `device` (256-byte aligned); a freed block is reused
// only on the stream it was allocated for; release_cached() calls cudaFree, which synchronizes the
// device, so it never frees memory still in use by queued work.
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/device/size_class_pool.h"

namespace eli {

class CudaMemoryPool {
 public:
  explicit CudaMemoryPool(int device, SizeClassPoolOptions options = {});
  ~CudaMemoryPool();
  CudaMemoryPool(const CudaMemoryPool&) = delete;
  CudaMemoryPool& operator=(const CudaMemoryPool&) = delete;

  // stream: the cudaStream_t the block will be used on (nullptr: legacy default stream).
  void* allocate(size_t bytes, void* stream) { return pool_->allocate(bytes, stream); }
  void free(void* ptr) { pool_->free(ptr); }
  void reserve(size_t bytes, size_t count, void* stream) { pool_->reserve(bytes, count, stream); }
  uint64_t release_cached() { return pool_->release_cached(); }
  void set_budget(uint64_t bytes) { pool_->set_budget(bytes); }
  PoolStats stats() const { return pool_->stats(); }
  SizeClassPool& pool() { return *pool_; }
  int device() const { return device_; }
  // Free memory on the device (cudaMemGetInfo), including memory other processes could take.
  uint64_t device_free_bytes() const;

 private:
  int device_;
  std::unique_ptr<PoolBackend> backend_;  // outlives pool_ (declared first)
  std::unique_ptr<SizeClassPool> pool_;
};

}  // namespace eli
