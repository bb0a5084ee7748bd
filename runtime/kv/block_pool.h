// runtime/kv/block_pool.h: ids of fixed-size KV-cache blocks, their reference counts, and the
// free queue. Pure host logic: it knows nothing about where the bytes live.
//
// Invariants: every id in [0, n_blocks) is either free (refcount 0, in the free queue exactly once)
// or used (refcount >= 1, not in the queue); n_free() + n_used() == n_blocks(). Running out is a
// normal outcome (allocate returns false), never an exception. Freed blocks go to the back of the
// queue, so the queue is in eviction order (oldest freed first) for the prefix cache to come.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace eli {

class BlockPool {
 public:
  explicit BlockPool(int64_t n_blocks);

  int64_t n_blocks() const { return static_cast<int64_t>(refcount_.size()); }
  int64_t n_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t n_used() const { return n_blocks() - n_free(); }

  // Appends `n` fresh blocks (refcount 1) to `out`; returns false and changes nothing if fewer
  // than n are free.
  bool allocate(int64_t n, std::vector<int32_t>* out);
  // Adds a reference to a used block (prefix sharing).
  void retain(int32_t block);
  // Drops one reference per id; a block reaching 0 goes back to the free queue.
  void release(const std::vector<int32_t>& blocks);
  int32_t refcount(int32_t block) const { return refcount_.at(static_cast<size_t>(block)); }
  // Checks the invariants above; throws eli::Error(kInternal) when broken (tests, debug builds).
  void check_invariants() const;

 private:
  std::vector<int32_t> refcount_;  // (n_blocks)
  std::deque<int32_t> free_;       // ids in eviction order
};

}  // namespace eli
