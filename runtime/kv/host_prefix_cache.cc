// runtime/kv/host_prefix_cache.cc: see host_prefix_cache.h.
#include "runtime/kv/host_prefix_cache.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/kv/prefix_cache.h"

namespace eli {

HostPrefixCache::HostPrefixCache(HostKvTier& tier) : tier_(tier), meta_(static_cast<size_t>(tier.n_slots())) {}

HostPrefixCache::~HostPrefixCache() {
  if (staging_.size() == 0) return;
  try {
    tier_.wait();
  } catch (...) {  // a broken device context: nothing more to wait for
  }
}

void HostPrefixCache::drop(int32_t slot) {
  Meta& m = meta_[static_cast<size_t>(slot)];
  map_.erase(m.hash);
  lru_.erase(m.lru);
  tier_.release(0, {slot});
  m = Meta();
}

void HostPrefixCache::set_disk(DiskKvTier* disk) {
  ELI_CHECK_KIND(kInternal, disk == nullptr || disk->slot_bytes() == tier_.slot_bytes(0),
                 "disk KV tier slots differ from the host tier's");
  disk_ = disk;
  max_staged_ = disk == nullptr ? 0 : std::max<int64_t>(1, static_cast<int64_t>(kMaxStagingBytes / disk->slot_bytes()));
}

void HostPrefixCache::demote(int32_t slot) {
  if (disk_ != nullptr) {
    const Meta& m = meta_[static_cast<size_t>(slot)];
    tier_.wait();  // the copy that filled the slot may still be queued
    disk_->put(m.hash, m.serial, m.parent_serial, m.tokens, tier_.host_slot(0, slot));  // false: lost, counted
  }
  drop(slot);
}

bool HostPrefixCache::offer(int32_t block, uint64_t hash, uint64_t serial, uint64_t parent_serial,
                            const std::vector<int32_t>& tokens) {
  if (map_.count(hash) != 0 || (disk_ != nullptr && disk_->contains(hash))) return false;
  std::vector<int32_t> slot;
  if (!tier_.allocate(0, 1, &slot)) {
    auto victim = std::find_if(lru_.begin(), lru_.end(), [&](int32_t s) { return meta_[static_cast<size_t>(s)].pins == 0; });
    if (victim == lru_.end()) return false;
    demote(*victim);
    ELI_CHECK_KIND(kInternal, tier_.allocate(0, 1, &slot), "host KV slot vanished");
  }
  const int32_t s = slot[0];
  bytes_to_host_ += tier_.copy_out(0, {block}, {s});
  Meta& m = meta_[static_cast<size_t>(s)];
  m.hash = hash;
  m.serial = serial;
  m.parent_serial = parent_serial;
  m.tokens = tokens;
  m.pins = 0;
  m.used = true;
  m.lru = lru_.insert(lru_.end(), s);
  map_.emplace(hash, s);
  return true;
}

int32_t HostPrefixCache::find(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const {
  auto it = map_.find(hash);
  if (it == map_.end()) return -1;
  const Meta& m = meta_[static_cast<size_t>(it->second)];
  return cached_entry_matches(m.parent_serial, m.tokens, parent_serial, tokens, n) ? it->second : -1;
}

HostPrefixCache::Ref HostPrefixCache::lookup(uint64_t hash, uint64_t parent_serial, const int32_t* tokens,
                                             int64_t n) const {
  Ref r;
  r.slot = find(hash, parent_serial, tokens, n);
  if (r.slot >= 0) {
    r.serial = serial(r.slot);
  } else if (disk_ != nullptr && (r.slot = disk_->find(hash, parent_serial, tokens, n)) >= 0) {
    r.on_disk = true;
    r.serial = disk_->serial(r.slot);
  }
  return r;
}

int64_t HostPrefixCache::stage_from_disk(const std::vector<int32_t>& slots) {
  ELI_CHECK_KIND(kInternal, disk_ != nullptr || slots.empty(), "disk hits without a disk tier");
  if (slots.empty()) return 0;
  ELI_CHECK_KIND(kInternal, static_cast<int64_t>(slots.size()) <= max_staged_, "too many disk entries to stage");
  const uint64_t sb = tier_.slot_bytes(0), want = sb * slots.size();
  tier_.wait();  // queued copies may still read the staging buffer
  if (staging_.size() < want) {
    const uint64_t grown = std::max<uint64_t>(want, 2 * staging_.size());
    staging_ = Buffer();  // the old one goes first
    staging_ = tier_.allocate_pinned(grown);
  }
  uint8_t* dst = static_cast<uint8_t*>(staging_.mutable_data());
  for (size_t k = 0; k < slots.size(); ++k) {
    if (!disk_->read(slots[k], dst + sb * k)) return static_cast<int64_t>(k);
  }
  return static_cast<int64_t>(slots.size());
}

uint64_t HostPrefixCache::copy_in_staged(int64_t k, int32_t block) {
  const uint64_t sb = tier_.slot_bytes(0);
  ELI_CHECK_KIND(kInternal, k >= 0 && sb * static_cast<uint64_t>(k + 1) <= staging_.size(), "staged disk entry ", k,
                 " out of range");
  return tier_.copy_in_from(0, static_cast<const uint8_t*>(staging_.data()) + sb * static_cast<uint64_t>(k), block);
}

uint64_t HostPrefixCache::copy_in(int32_t slot, int32_t block) {
  Meta& m = meta_.at(static_cast<size_t>(slot));
  ELI_CHECK_KIND(kInternal, m.used, "copy from an empty host prefix-cache slot ", slot);
  lru_.splice(lru_.end(), lru_, m.lru);  // most recently used
  const uint64_t n = tier_.copy_in(0, {slot}, {block});
  bytes_from_host_ += n;
  return n;
}

void HostPrefixCache::check_invariants() const {
  ELI_CHECK_KIND(kInternal, map_.size() == lru_.size(), "host prefix cache: map and LRU list differ");
  ELI_CHECK_KIND(kInternal, static_cast<int64_t>(map_.size()) + tier_.n_free(0) == tier_.n_slots(),
                 "host prefix cache: entries and free slots do not add up");
  for (const auto& [hash, s] : map_) {
    const Meta& m = meta_.at(static_cast<size_t>(s));
    ELI_CHECK_KIND(kInternal, m.used && m.hash == hash && m.pins >= 0 && !m.tokens.empty(),
                   "host prefix cache: slot ", s, " is inconsistent");
    ELI_CHECK_KIND(kInternal, disk_ == nullptr || !disk_->contains(hash), "host prefix cache: hash ", hash,
                   " is on the host and on disk");
  }
  if (disk_ != nullptr) disk_->check_invariants();
}

}  // namespace eli
