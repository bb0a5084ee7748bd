// runtime/kv/block_pool.h: ids of fixed-size KV-cache blocks, their reference counts, the free
// queue, and the prefix-cache map (hash -> block). Pure host logic: it knows nothing about where
// the bytes live.
//
// Invariants: every id in [0, n_blocks) is either free (refcount 0, in the free queue exactly once)
// or used (refcount >= 1, not in the queue); n_free() + n_used() == n_blocks(). Running out is a
// normal outcome (allocate returns false), never an exception. Freed blocks go to the back of the
// queue, so the queue is in eviction order (least recently freed first).
//
// Prefix cache: a full block may be made a cache entry (cache_block) with its hash, a copy of its
// tokens and the serial of its parent entry (0 for a sequence's first block). An entry survives
// its block going free: the block stays in the free queue and can be taken back (acquire_cached,
// O(1) through the intrusive list) until allocate() pops it, which evicts the entry. The map holds
// at most one block per hash, every entry's block has cached(b) with that hash, and entry serials
// are never reused, so "parent serial matches" names one exact block content, not just a hash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace eli {

class BlockPool {
 public:
  // foreign_parent_keys: entries' parent serials name entries of another pool (KV group 1 keys its
  // blocks by group 0's entries, runtime/kv/kv_groups.h), so they are not ordered against ours.
  explicit BlockPool(int64_t n_blocks, bool foreign_parent_keys = false);

  int64_t n_blocks() const { return static_cast<int64_t>(refcount_.size()); }
  int64_t n_free() const { return n_free_; }
  int64_t n_used() const { return n_blocks() - n_free(); }
  int64_t n_cached() const { return static_cast<int64_t>(map_.size()); }

  // Appends `n` fresh blocks (refcount 1) to `out`, taken from the front of the free queue (a
  // cached one loses its entry); returns false and changes nothing if fewer than n are free.
  bool allocate(int64_t n, std::vector<int32_t>* out);
  // Adds a reference to a used block (prefix sharing).
  void retain(int32_t block);
  // Drops one reference per id, in order; a block reaching 0 goes to the back of the free queue
  // (a cached one keeps its entry).
  void release(const std::vector<int32_t>& blocks);
  int32_t refcount(int32_t block) const { return refcount_.at(static_cast<size_t>(block)); }

  // ---- prefix cache ----
  // The cached block named `hash` whose stored tokens equal tokens[0, n) and whose parent entry
  // serial is `parent_serial`, or -1. No side effects.
  int32_t find_cached(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const;
  // Takes one reference on a cached block, used or free (a free one leaves the free queue).
  void acquire_cached(int32_t block);
  // Makes a used, not yet cached block an entry. Returns false (nothing changes) when the hash
  // is already taken by another block (a duplicate or a collision).
  bool cache_block(int32_t block, uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n);
  bool cached(int32_t block) const { return meta_.at(static_cast<size_t>(block)).serial != 0; }
  uint64_t cache_hash(int32_t block) const { return meta_.at(static_cast<size_t>(block)).hash; }
  // Unique id of the entry (never reused; 0: not cached).
  uint64_t cache_serial(int32_t block) const { return meta_.at(static_cast<size_t>(block)).serial; }
  uint64_t cache_parent_serial(int32_t block) const { return meta_.at(static_cast<size_t>(block)).parent_serial; }
  const std::vector<int32_t>& cached_tokens(int32_t block) const { return meta_.at(static_cast<size_t>(block)).tokens; }
  // Called by allocate() with a cached block just before its entry is evicted (its bytes and
  // metadata still intact): the host-tier prefix cache copies it out (runtime/kv/host_prefix_cache.h).
  // Must not call back into the pool. Empty (the default): nothing is called.
  void set_evict_hook(std::function<void(int32_t block)> hook) { evict_hook_ = std::move(hook); }
  // Free block ids, front (next to be evicted) to back. O(n_free); for tests.
  std::vector<int32_t> free_queue() const;

  // Checks the invariants above; throws eli::Error(kInternal) when broken (tests, debug builds).
  void check_invariants() const;

 private:
  struct Meta {
    uint64_t hash = 0, serial = 0, parent_serial = 0;
    std::vector<int32_t> tokens;  // (block_size) copy, for verification; empty when not cached
  };
  void unlink(int32_t b);
  void push_back_free(int32_t b);
  void evict(int32_t b);

  std::vector<int32_t> refcount_;  // (n_blocks)
  // Free queue as an intrusive doubly-linked list; index n_blocks is the sentinel.
  std::vector<int32_t> prev_, next_;  // (n_blocks + 1)
  int64_t n_free_ = 0;
  std::vector<Meta> meta_;  // (n_blocks)
  std::unordered_map<uint64_t, int32_t> map_;  // hash -> cached block
  uint64_t next_serial_ = 1;
  bool foreign_parent_keys_ = false;
  std::function<void(int32_t)> evict_hook_;
};

}  // namespace eli
