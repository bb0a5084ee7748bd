// runtime/kv/host_prefix_cache.h: the host-tier prefix cache (option kv_offload_gb): full KV
// blocks evicted from the device prefix cache (runtime/kv/block_pool.h) are copied to slots of a
// HostKvTier with their name, and a later prefix lookup that misses on the device but finds them
// here copies them back instead of recomputing.
//
// Names: an entry keeps the hash, the tokens, the serial and the parent serial its block had as a
// device entry. Device serials are never reused and name one exact block content, so a chain can
// continue from a device entry into host entries (parent serial = the device parent's serial, or
// a host entry's original serial) with the same verification as on the device: equal hash, equal
// parent serial, equal tokens; a hash collision costs a miss, never a wrong block.
// At most one entry per hash (an offered block whose hash is present is skipped). When full, the
// least recently used unpinned entry is dropped; pinned entries (hits being copied back) are never
// dropped, and an offer finding every slot pinned is skipped.
// Group 0 only: models with sliding-window layers do not use it (the engine refuses the option).
//
// Disk tier (set_disk, option kv_offload_disk_gb; runtime/kv/disk_kv_tier.h): the entry the host
// drops (least recently used, unpinned) is written to the disk tier with its name instead of being
// lost; at most one entry per hash over host and disk (an offer whose hash is on disk is skipped
// too). lookup() finds an entry in either tier with the same verification. A disk hit is read
// (stage_from_disk) into a pinned staging buffer, then queued to its device block like a host hit
// (copy_in_staged); it stays on disk as the most recently used entry there.
// First version, synchronous on the scheduler thread: a write to disk waits for the default
// stream (a queued copy may still fill the dropped slot) and then pwrites; staging waits for the
// stream too (queued copies may still read the staging buffer), then preads. Neither happens
// unless a host entry is dropped or a disk entry is hit: nothing on the per-token path.
// Failures (disk_kv_tier.h): a failed write loses that entry; a failed read loses it and ends the
// staged run there, and the caller recomputes those blocks.
// Invariants: map_ and the LRU list hold exactly the used slots; every used slot is in the tier's
// held set; no hash is both here and on disk.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "runtime/device/buffer.h"
#include "runtime/kv/disk_kv_tier.h"
#include "runtime/kv/host_kv_tier.h"

namespace eli {

class HostPrefixCache {
 public:
  // `tier` (one group, or group 0 of it) must outlive the cache and be used by nothing else.
  explicit HostPrefixCache(HostKvTier& tier);
  ~HostPrefixCache();  // waits for queued copies that may read the staging buffer
  HostPrefixCache(const HostPrefixCache&) = delete;
  HostPrefixCache& operator=(const HostPrefixCache&) = delete;
  // The disk tier behind the host (null: none, dropped entries are lost). Must outlive the cache,
  // have the host slot's size, and be used by nothing else.
  void set_disk(DiskKvTier* disk);
  const DiskKvTier* disk() const { return disk_; }

  // An entry found in either tier: its slot there, and its original device serial.
  struct Ref {
    int32_t slot = -1;  // -1: not found
    bool on_disk = false;
    uint64_t serial = 0;
  };
  // The entry named `hash` with `parent_serial` and tokens[0, n) in the host tier, else on disk.
  // No side effects.
  Ref lookup(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const;
  // The most disk entries one admission may stage: the staging buffer holds them all at once, so
  // a hit's chain stops after this many disk entries (the rest is recomputed). Default:
  // kMaxStagingBytes of slots, at least one.
  static constexpr uint64_t kMaxStagingBytes = uint64_t{256} << 20;
  int64_t max_staged() const { return max_staged_; }
  void set_max_staged(int64_t n) { max_staged_ = n; }  // tests
  // Reads the disk entries `slots` (in order) into the staging buffer, entry k at position k.
  // Returns how many were read: all of them, or those before the first failed read (that entry is
  // dropped from the disk tier; the caller recomputes it and what follows).
  int64_t stage_from_disk(const std::vector<int32_t>& slots);
  // Queues the copy of staged entry k into device block `block`; the bytes moved.
  uint64_t copy_in_staged(int64_t k, int32_t block);

  // Copies device block `block` (a device entry being evicted: hash, serial, parent serial,
  // tokens) to a slot. Returns false (nothing copied) when the hash is held already or no slot can
  // be freed.
  bool offer(int32_t block, uint64_t hash, uint64_t serial, uint64_t parent_serial, const std::vector<int32_t>& tokens);
  // The slot of the entry named `hash` with `parent_serial` and tokens[0, n), or -1. No side effects.
  int32_t find(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const;
  // The entry's original device serial (what its children's parent serial names).
  uint64_t serial(int32_t slot) const { return meta_.at(static_cast<size_t>(slot)).serial; }
  // Pinned entries are not dropped (counted: pin twice, unpin twice).
  void pin(int32_t slot) { ++meta_.at(static_cast<size_t>(slot)).pins; }
  void unpin(int32_t slot) { --meta_.at(static_cast<size_t>(slot)).pins; }
  // Copies an entry into device block `block` and marks it most recently used; the bytes moved.
  uint64_t copy_in(int32_t slot, int32_t block);

  int64_t n_entries() const { return static_cast<int64_t>(map_.size()); }
  uint64_t bytes_to_host() const { return bytes_to_host_; }
  uint64_t bytes_from_host() const { return bytes_from_host_; }
  // Bytes written to and read from the disk tier (0 without one).
  uint64_t bytes_to_disk() const { return disk_ ? disk_->bytes_written() : 0; }
  uint64_t bytes_from_disk() const { return disk_ ? disk_->bytes_read() : 0; }
  // Checks the invariants above; throws eli::Error(kInternal) when broken (tests).
  void check_invariants() const;

 private:
  struct Meta {
    uint64_t hash = 0, serial = 0, parent_serial = 0;
    std::vector<int32_t> tokens;
    int pins = 0;
    bool used = false;
    std::list<int32_t>::iterator lru;
  };
  void drop(int32_t slot);
  // Writes a slot's entry to the disk tier (if any), then drops it.
  void demote(int32_t slot);

  HostKvTier& tier_;
  std::vector<Meta> meta_;                     // per slot
  std::unordered_map<uint64_t, int32_t> map_;  // hash -> slot
  std::list<int32_t> lru_;                     // used slots, least recently used first
  uint64_t bytes_to_host_ = 0, bytes_from_host_ = 0;
  DiskKvTier* disk_ = nullptr;
  Buffer staging_;  // pinned: disk entries read for the current admission
  int64_t max_staged_ = 0;
};

}  // namespace eli
