// runtime/kv/block_pool.cc: see block_pool.h.
#include "runtime/kv/block_pool.h"

#include "eli/error.h"

namespace eli {

BlockPool::BlockPool(int64_t n_blocks) {
  ELI_CHECK(n_blocks > 0 && n_blocks < (int64_t{1} << 31), "KV block count ", n_blocks, " out of range");
  refcount_.assign(static_cast<size_t>(n_blocks), 0);
  for (int64_t i = 0; i < n_blocks; ++i) free_.push_back(static_cast<int32_t>(i));
}

bool BlockPool::allocate(int64_t n, std::vector<int32_t>* out) {
  if (n < 0 || n > n_free()) return false;
  for (int64_t i = 0; i < n; ++i) {
    int32_t b = free_.front();
    free_.pop_front();
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
    if (--refcount_[static_cast<size_t>(b)] == 0) free_.push_back(b);
  }
}

void BlockPool::check_invariants() const {
  std::vector<char> seen(refcount_.size(), 0);
  for (int32_t b : free_) {
    ELI_CHECK_KIND(kInternal, b >= 0 && b < n_blocks(), "free queue holds invalid block ", b);
    ELI_CHECK_KIND(kInternal, !seen[static_cast<size_t>(b)], "block ", b, " twice in the free queue");
    ELI_CHECK_KIND(kInternal, refcount_[static_cast<size_t>(b)] == 0, "free block ", b, " has references");
    seen[static_cast<size_t>(b)] = 1;
  }
  for (size_t b = 0; b < refcount_.size(); ++b) {
    ELI_CHECK_KIND(kInternal, seen[b] || refcount_[b] > 0, "block ", b, " is neither free nor used");
    ELI_CHECK_KIND(kInternal, refcount_[b] >= 0, "block ", b, " has a negative refcount");
  }
}

}  // namespace eli
