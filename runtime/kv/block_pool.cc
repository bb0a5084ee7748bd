// runtime/kv/block_pool.cc: see block_pool.h.
#include "runtime/kv/block_pool.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/kv/prefix_cache.h"

namespace eli {

BlockPool::BlockPool(int64_t n_blocks, bool foreign_parent_keys) : foreign_parent_keys_(foreign_parent_keys) {
  ELI_CHECK(n_blocks > 0 && n_blocks < (int64_t{1} << 31) - 1, "KV block count ", n_blocks, " out of range");
  const size_t n = static_cast<size_t>(n_blocks);
  refcount_.assign(n, 0);
  meta_.resize(n);
  prev_.assign(n + 1, 0);
  next_.assign(n + 1, 0);
  const int32_t sentinel = static_cast<int32_t>(n_blocks);
  prev_[n] = next_[n] = sentinel;
  for (int64_t i = 0; i < n_blocks; ++i) push_back_free(static_cast<int32_t>(i));
}

void BlockPool::unlink(int32_t b) {
  const size_t i = static_cast<size_t>(b);
  next_[static_cast<size_t>(prev_[i])] = next_[i];
  prev_[static_cast<size_t>(next_[i])] = prev_[i];
  prev_[i] = next_[i] = -1;
  --n_free_;
}

void BlockPool::push_back_free(int32_t b) {
  const size_t s = refcount_.size();
  const int32_t last = prev_[s];
  next_[static_cast<size_t>(last)] = b;
  prev_[static_cast<size_t>(b)] = last;
  next_[static_cast<size_t>(b)] = static_cast<int32_t>(s);
  prev_[s] = b;
  ++n_free_;
}

void BlockPool::evict(int32_t b) {
  Meta& m = meta_[static_cast<size_t>(b)];
  if (m.serial == 0) return;
  map_.erase(m.hash);
  m.hash = m.serial = m.parent_serial = 0;
  m.tokens.clear();
}

bool BlockPool::allocate(int64_t n, std::vector<int32_t>* out) {
  if (n < 0 || n > n_free()) return false;
  const size_t s = refcount_.size();
  if (evict_hook_) {  // first, so that a throwing hook leaves the pool unchanged
    int32_t b = next_[s];
    for (int64_t i = 0; i < n; ++i, b = next_[static_cast<size_t>(b)]) {
      if (cached(b)) evict_hook_(b);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t b = next_[s];
    unlink(b);
    evict(b);
    refcount_[static_cast<size_t>(b)] = 1;
    out->push_back(b);
  }
  return true;
}

void BlockPool::retain(int32_t block) {
  ELI_CHECK_KIND(kInternal, block >= 0 && block < n_blocks() && refcount_[static_cast<size_t>(block)] > 0,
                 "retain of free or invalid KV block ", block);
  ++refcount_[static_cast<size_t>(block)];
}

void BlockPool::release(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) {
    ELI_CHECK_KIND(kInternal, b >= 0 && b < n_blocks() && refcount_[static_cast<size_t>(b)] > 0,
                   "release of free or invalid KV block ", b);
    if (--refcount_[static_cast<size_t>(b)] == 0) push_back_free(b);
  }
}

int32_t BlockPool::find_cached(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const {
  auto it = map_.find(hash);
  if (it == map_.end()) return -1;
  const Meta& m = meta_[static_cast<size_t>(it->second)];
  return cached_entry_matches(m.parent_serial, m.tokens, parent_serial, tokens, n) ? it->second : -1;
}

void BlockPool::acquire_cached(int32_t block) {
  ELI_CHECK_KIND(kInternal, block >= 0 && block < n_blocks() && cached(block), "acquire of uncached KV block ", block);
  if (refcount_[static_cast<size_t>(block)]++ == 0) unlink(block);
}

bool BlockPool::cache_block(int32_t block, uint64_t hash, uint64_t parent_serial, const int32_t* tokens,
                            int64_t n) {
  ELI_CHECK_KIND(kInternal, block >= 0 && block < n_blocks() && refcount_[static_cast<size_t>(block)] > 0 &&
                 !cached(block) && n > 0, "cannot cache KV block ", block);
  if (map_.count(hash) != 0) return false;
  Meta& m = meta_[static_cast<size_t>(block)];
  m.hash = hash;
  m.serial = next_serial_++;
  m.parent_serial = parent_serial;
  m.tokens.assign(tokens, tokens + n);
  map_.emplace(hash, block);
  return true;
}

std::vector<int32_t> BlockPool::free_queue() const {
  std::vector<int32_t> out;
  const size_t s = refcount_.size();
  for (int32_t b = next_[s]; b != static_cast<int32_t>(s); b = next_[static_cast<size_t>(b)]) out.push_back(b);
  return out;
}

void BlockPool::check_invariants() const {
  const size_t s = refcount_.size();
  std::vector<char> seen(s, 0);
  int64_t count = 0;
  for (int32_t b = next_[s]; b != static_cast<int32_t>(s); b = next_[static_cast<size_t>(b)]) {
    ELI_CHECK_KIND(kInternal, b >= 0 && b < n_blocks(), "free queue holds invalid block ", b);
    ELI_CHECK_KIND(kInternal, !seen[static_cast<size_t>(b)], "block ", b, " twice in the free queue");
    ELI_CHECK_KIND(kInternal, refcount_[static_cast<size_t>(b)] == 0, "free block ", b, " has references");
    ELI_CHECK_KIND(kInternal, next_[static_cast<size_t>(prev_[static_cast<size_t>(b)])] == b,
                   "free queue links broken at block ", b);
    seen[static_cast<size_t>(b)] = 1;
    ++count;
  }
  ELI_CHECK_KIND(kInternal, count == n_free_, "free queue holds ", count, " blocks, counter says ", n_free_);
  for (size_t b = 0; b < s; ++b) {
    ELI_CHECK_KIND(kInternal, seen[b] || refcount_[b] > 0, "block ", b, " is neither free nor used");
    ELI_CHECK_KIND(kInternal, refcount_[b] >= 0, "block ", b, " has a negative refcount");
    const Meta& m = meta_[b];
    if (m.serial != 0) {
      auto it = map_.find(m.hash);
      ELI_CHECK_KIND(kInternal, it != map_.end() && it->second == static_cast<int32_t>(b), "cached block ", b,
                     " is not in the cache map under its hash");
      ELI_CHECK_KIND(kInternal, !m.tokens.empty() && m.serial < next_serial_ &&
                                                          (foreign_parent_keys_ || m.parent_serial < m.serial),
                     "cached block ", b, " has inconsistent metadata");
    }
  }
  for (const auto& [hash, b] : map_) {
    ELI_CHECK_KIND(kInternal, b >= 0 && b < n_blocks() && cached(b) && cache_hash(b) == hash,
                   "cache map entry points at block ", b, " which does not hold that hash");
  }
}

}  // namespace eli
