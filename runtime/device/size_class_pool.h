// runtime/device/size_class_pool.h: eli's caching allocator bookkeeping, independent of CUDA.
//
// A SizeClassPool sits on a PoolBackend (cudaMalloc, cudaHostAlloc, aligned_alloc, or a fake in
// tests). Requests are rounded to a size class: small ones (< large_threshold) to multiples of
// small_granularity, large ones to multiples of large_granularity. A freed block goes to the free
// list of its (stream, size class) and is handed out again without calling the backend; this is
// what lets a warmed-up decode loop run with zero driver allocations (see stats().n_driver_allocs).
//
// Stream ordering: a block is tagged with the stream it was allocated for. It is reused only for
// an allocation on the same stream, so work queued by its previous owner is ordered before the new
// owner's work. Using a block on another stream needs an event (the caller's job).
//
// Invariants: reserved == in_use + cached; every pointer handed out is in live_ and came from the
// backend; allocate() never returns null: it throws eli::Error(kOutOfMemory) naming requested,
// in use, reserved, budget and the backend's free bytes. Thread-safe (one mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/device/device.h"

namespace eli {

// Where the pool gets its memory. alloc returns nullptr on failure (never throws for OOM).
class PoolBackend {
 public:
  virtual ~PoolBackend() = default;
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* ptr, size_t bytes) = 0;
  // Free memory the backend could still give (device free memory, available RAM).
  virtual uint64_t free_bytes() const = 0;
  virtual const char* name() const = 0;
};

struct SizeClassPoolOptions {
  size_t small_granularity = 512;          // small sizes round up to this multiple
  size_t large_threshold = 1u << 20;       // sizes >= this are "large"
  size_t large_granularity = 2u << 20;     // large sizes round up to this multiple
  // A cached large block up to this factor (in percent) of the rounded request may be reused.
  unsigned large_reuse_slack_percent = 125;
  uint64_t budget_bytes = 0;               // 0: no budget; else reserved never exceeds it
};

struct PoolStats {
  uint64_t reserved_bytes = 0;      // held from the backend (live + cached)
  uint64_t in_use_bytes = 0;        // live blocks (rounded sizes)
  uint64_t peak_in_use_bytes = 0;
  uint64_t peak_reserved_bytes = 0;
  uint64_t requested_bytes = 0;     // live blocks, sizes as requested
  uint64_t n_driver_allocs = 0;     // backend alloc calls that succeeded
  uint64_t n_driver_frees = 0;
  uint64_t n_allocs = 0;            // allocate() calls served
  uint64_t n_cache_hits = 0;        // allocate() calls served from a free list
  uint64_t n_live_blocks = 0;
  uint64_t n_cached_blocks = 0;
  uint64_t budget_bytes = 0;
  MemoryStats to_memory_stats() const;
};

class SizeClassPool {
 public:
  // The backend must outlive the pool.
  SizeClassPool(PoolBackend* backend, SizeClassPoolOptions options = {});
  ~SizeClassPool();  // returns every block (live and cached) to the backend
  SizeClassPool(const SizeClassPool&) = delete;
  SizeClassPool& operator=(const SizeClassPool&) = delete;

  // A block of at least `bytes` (0 is treated as 1) usable on `stream`.
  void* allocate(size_t bytes, void* stream = nullptr);
  // Returns a block to its free list. Throws kInvalidArgument for a pointer this pool never gave.
  void free(void* ptr);
  // Pre-allocates `count` blocks of the size class of `bytes` into the free list of `stream`
  // (the memory planner's warm-up). Counts against the budget; all or nothing: on kOutOfMemory
  // nothing stays reserved by this call.
  void reserve(size_t bytes, size_t count = 1, void* stream = nullptr);
  // Returns all cached (free) blocks to the backend; returns the bytes released.
  uint64_t release_cached();
  // 0 removes the budget. Lowering it below reserved releases cached blocks; it never fails.
  void set_budget(uint64_t budget_bytes);

  PoolStats stats() const;
  // Resets peak counters to the current values (for measuring one phase).
  void reset_peak();
  bool owns(const void* ptr) const;
  // Rounded size of a live block; 0 if the pointer is not live in this pool.
  size_t block_size(const void* ptr) const;
  size_t round_size(size_t bytes) const;
  const SizeClassPoolOptions& options() const { return options_; }

 private:
  struct Block {
    size_t size;       // rounded size held from the backend
    size_t requested;  // size asked for by the current owner
    void* stream;
  };
  using FreeKey = std::pair<void*, size_t>;  // (stream, size): stream-major order

  // A cached block for `rounded` on `stream` (its true size in *size), or nullptr.
  void* take_cached_locked(size_t rounded, void* stream, size_t* size);
  void* backend_alloc_locked(size_t rounded, size_t requested);
  uint64_t release_cached_locked();
  [[noreturn]] void throw_oom_locked(size_t requested, size_t rounded, const char* why) const;

  PoolBackend* backend_;
  SizeClassPoolOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::map<FreeKey, std::vector<void*>> free_;  // free lists per (stream, size class)
  PoolStats stats_;
};

}  // namespace eli
