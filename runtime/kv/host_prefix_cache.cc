// runtime/kv/host_prefix_cache.cc: see host_prefix_cache.h.
#include "runtime/kv/host_prefix_cache.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/kv/prefix_cache.h"

namespace eli {

HostPrefixCache::HostPrefixCache(HostKvTier& tier) : tier_(tier), meta_(static_cast<size_t>(tier.n_slots())) {}

void HostPrefixCache::drop(int32_t slot) {
  Meta& m = meta_[static_cast<size_t>(slot)];
  map_.erase(m.hash);
  lru_.erase(m.lru);
  tier_.release(0, {slot});
  m = Meta();
}

bool HostPrefixCache::offer(int32_t block, uint64_t hash, uint64_t serial, uint64_t parent_serial,
                            const std::vector<int32_t>& tokens) {
  if (map_.count(hash) != 0) return false;
  std::vector<int32_t> slot;
  if (!tier_.allocate(0, 1, &slot)) {
    auto victim = std::find_if(lru_.begin(), lru_.end(), [&](int32_t s) { return meta_[static_cast<size_t>(s)].pins == 0; });
    if (victim == lru_.end()) return false;
    drop(*victim);
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
  }
}

}  // namespace eli
