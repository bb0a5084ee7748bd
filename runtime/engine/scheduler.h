// runtime/engine/scheduler.h: iteration-level continuous batching. Each step takes, under a token
// budget and a sequence cap, one token of every running decode, the next chunk of every running
// prefill, then new prefills from the waiting queue (first come, first served), allocating KV blocks
// as it goes. When blocks run out for a running sequence, the newest running sequence is preempted
// (its blocks freed, its tokens recomputed later from the front of the queue).
//
// Automatic prefix caching (enable_prefix_caching): when a waiting sequence is admitted (it has
// nothing computed: new or preempted) the longest verified chain of cached full blocks of its
// tokens is taken by reference and counted as computed, always leaving at least one token to run
// (the last one must produce logits). After each step the caller registers the blocks that became
// full (cache_full_blocks). Sequences release their blocks tail first, so a chain is evicted from
// its end.
//
// KV groups (runtime/kv/kv_groups.h): with a sliding-window group, each group has its own pool and
// block table; blocks are allocated in every group together, and a windowed group's blocks that no
// future query can read are released as the sequence advances (once offered to the prefix cache,
// while caching is on). Group 1's cache entries are keyed by the verified group-0 entry of the
// same block (its hash and serial), so a hit needs group 0's chain and group 1's blocks of the
// window before the first token to compute.
//
// Swap preemption (set_host_tier, option swap_space_gb): a preempted sequence whose KV fits in the
// host tier's free slots, and for which SchedulerConfig::swap_cost favours copying over
// recomputing (runtime/kv/swap_cost.h), is swapped out instead: the KV of the blocks it holds
// (those of its computed tokens; a windowed group's dropped entries are not copied) goes to host
// slots, its device references are dropped, and it waits at the front of the queue keeping
// num_computed. Admission swaps it back in: fresh device blocks, the slots copied into them and
// freed. Copy-on-swap rule for shared blocks: a block shared with the prefix cache or another
// sequence is copied like any other and only this sequence's reference is dropped (the block and
// its cache entry stay for the others); after swap-in the sequence's blocks are private copies, and
// its registration restarts at block 0 (a copy whose hash is still held by the original is not
// registered, which ends the chain: correct, at most a lost sharing opportunity). Otherwise the
// victim is recomputed as before. With no host tier nothing changes.
//
// Host-tier prefix cache (set_host_prefix_cache, option kv_offload_gb; one full-attention group
// only): group 0's pool hands every cached block it is about to evict to the host cache
// (runtime/kv/host_prefix_cache.h). At admission, where the device chain of hits ends, the chain
// continues through host entries; those blocks get fresh device blocks, are copied back (pinned
// meanwhile, so that evictions the allocation causes cannot drop them), count as hits, and are
// registered in the device cache again like blocks the sequence filled.
// With a disk tier behind the host cache (kv_offload_disk_gb) the chain goes on through disk
// entries too; once a sequence is known to fit, its disk hits are read (before anything else
// changes); a read that fails ends the hit before that block (those blocks are recomputed: the
// request loses nothing, and the fit is checked again). Then they are copied like host hits.
//
// Host logic, deterministic given its inputs (the host tier's copies are its only device work).
// Invariants: a sequence is in exactly one of
// waiting_ / running_ or neither (finished); running_ is in admission order; every used block's
// refcount is the number of sequences in running_ holding it; a block held by two sequences is a
// full prefix-cache entry at the same index of both block tables, with identical tokens.
#pragma once

#include <climits>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "runtime/engine/sequence.h"
#include "runtime/kv/block_pool.h"
#include "runtime/kv/host_kv_tier.h"
#include "runtime/kv/host_prefix_cache.h"
#include "runtime/kv/kv_groups.h"
#include "runtime/kv/prefix_cache.h"
#include "runtime/kv/swap_cost.h"

namespace eli {

struct SchedulerConfig {
  int64_t block_size = 16;
  int64_t max_num_seqs = 64;
  int64_t max_num_batched_tokens = 2048;
  bool enable_chunked_prefill = true;
  bool enable_prefix_caching = true;
  BlockHashFn block_hash = hash_kv_block;  // injectable for tests (forced collisions)
  KvGroups kv_groups;                       // one full-attention group unless the model has windows
  KvSwapCost swap_cost;                     // swap or recompute a victim (only with a host tier)
};

struct ScheduledSeq {
  Sequence* seq;
  int64_t n_new;   // tokens computed this step, starting at seq->num_computed
  bool sample;     // this step reaches the end of the sequence's tokens: sample the next one
};

class Scheduler {
 public:
  // pool1: group 1's pool, exactly when config.kv_groups has two groups.
  Scheduler(const SchedulerConfig& config, BlockPool& pool, BlockPool* pool1 = nullptr);

  // The host tier for swap preemption (null: none, every preemption recomputes). Must outlive the
  // scheduler; its groups match the pools.
  void set_host_tier(HostKvTier* tier) { host_ = tier; }
  // The host-tier prefix cache (null: none). Must outlive the scheduler; needs prefix caching and
  // a single full-attention KV group (kInvalidArgument otherwise). Hooks group 0's pool evictions.
  void set_host_prefix_cache(HostPrefixCache* cache);

  void add(Sequence* seq);
  // Removes a sequence at any phase and frees its blocks (abort, finish, error).
  void remove(Sequence* seq);
  std::vector<ScheduledSeq> schedule();
  // Registers the blocks of `seq` that its first min(num_computed, limit) tokens filled as
  // prefix-cache entries. Call after a step's K/V were written (limit: what the completed steps
  // computed, when later ones are still in flight). No-op when caching is off.
  void cache_full_blocks(Sequence* seq, int64_t limit = INT64_MAX);

  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t preemptions() const { return preemptions_; }
  // Tokens looked up in the prefix cache at admission, and those found there.
  int64_t prefix_cache_queries() const { return prefix_cache_queries_; }
  int64_t prefix_cache_hits() const { return prefix_cache_hits_; }
  // Swap preemption: sequences swapped out / back in, and the KV bytes copied each way.
  int64_t swaps_out() const { return swaps_out_; }
  int64_t swaps_in() const { return swaps_in_; }
  // KV bytes copied each way, by swapping and by the host prefix cache together.
  uint64_t kv_bytes_to_host() const;
  uint64_t kv_bytes_from_host() const;
  // Tokens of prefix-cache hits found in the host tier (included in prefix_cache_hits).
  int64_t host_prefix_hits() const { return host_prefix_hits_; }
  // The disk tier behind the host prefix cache: tokens of hits found there (in prefix_cache_hits,
  // not in host_prefix_hits), and the bytes written to and read from it.
  int64_t disk_prefix_hits() const { return disk_prefix_hits_; }
  uint64_t kv_bytes_to_disk() const;
  uint64_t kv_bytes_from_disk() const;
  int64_t blocks_for(int64_t n_tokens) const { return (n_tokens + config_.block_size - 1) / config_.block_size; }
  const SchedulerConfig& config() const { return config_; }

 private:
  BlockPool& pool(int g) { return g == 0 ? pool_ : *pool1_; }
  const BlockPool& pool(int g) const { return g == 0 ? pool_ : *pool1_; }
  int n_groups() const { return config_.kv_groups.n_groups(); }
  bool grow_blocks(Sequence* seq, int64_t n_tokens);
  // Releases the blocks of seq's windowed groups that no future query reads.
  void drop_dead_blocks(Sequence* seq);
  void preempt(Sequence* seq);
  void release_blocks(Sequence* seq);
  // Swaps a victim's KV to the host tier and drops its device blocks; false (nothing changes) when
  // there is no tier, it lacks room, or the cost rule says recompute.
  bool try_swap_out(Sequence* seq);
  // Allocates device blocks for a swapped-out sequence and copies its KV back (blocks must fit).
  void swap_in(Sequence* seq);
  void release_host_slots(Sequence* seq);
  // The longest usable prefix hit of seq's full blocks, at most (n_tokens - 1) / block_size of
  // them: group 0's verified chain, shortened until group 1 has the blocks of the window before
  // it. blocks[g] has one entry per hit block; entries below first_live[g] are not taken (out of
  // the window). No side effects.
  struct PrefixHit {
    int64_t n = 0;
    std::vector<int32_t> blocks[kMaxKvGroups];
    int64_t first_live[kMaxKvGroups] = {0, 0};
    std::vector<int32_t> host;  // host-cache slots of the hits after blocks[0]'s (n counts both)
    std::vector<char> on_disk;  // per host entry: 1 when its slot is a disk-tier slot
  };
  PrefixHit lookup_prefix(const Sequence& seq) const;
  // Reads hit's disk entries into the host cache's staging. true: all read; false: the hit was
  // shortened to end before the first entry that could not be read.
  bool read_disk_hits(PrefixHit* hit);

  SchedulerConfig config_;
  BlockPool& pool_;
  BlockPool* pool1_ = nullptr;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
  int64_t preemptions_ = 0;
  int64_t prefix_cache_queries_ = 0, prefix_cache_hits_ = 0;
  HostKvTier* host_ = nullptr;
  HostPrefixCache* host_prefix_ = nullptr;
  int64_t host_prefix_hits_ = 0, disk_prefix_hits_ = 0;
  int64_t swaps_out_ = 0, swaps_in_ = 0;
  uint64_t kv_bytes_to_host_ = 0, kv_bytes_from_host_ = 0;
  // Fault point preempt_storm only (empty otherwise): n_tokens of a sequence at its last storm
  // preemption; it is not a storm victim again until it has grown (see scheduler.cc).
  std::unordered_map<const Sequence*, int64_t> storm_len_;
};

}  // namespace eli
